"""Least privilege on the hub's shares, with real smbd and smbclient on the container lab
(issue #11 item 3, "Tests that must exist").

The lab is the shared standard farm (tests/support/standard_farm.py): a hub, worker0001,
worker0002 and boss1, provisioned with the real keygen and deploys. Each worker uses its OWN
credentials, the file its picker installed at boot (``/etc/farmhand/smb-credentials``), with
smbclient on the worker itself; boss1 uses the bosses' account. The render queue is not
deployed here (its stand-ins are tests/test_lab_queue.py's): the hub lays out a stand-in
Deadline Repository as the installer leaves it (files of uid 1000) and runs the very commands
its deploy runs after the installer (``repository_permission_commands``).

A worker is refused writing to the installers, the queue's code, a scene and another worker's
render, and can still read a scene, write its renders and the queue's logs; a boss writes
scenes.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

import pytest

import support.lab
from farmhand.deploy.tasks.queue_deadline import repository_permission_commands
from farmhand.lab import LabFarm
from farmhand.lab import provision as prov
from farmhand.model.paths import SMB_CREDENTIALS, SMB_PASSWORD
from farmhand.onhost.jobs import JOBS_USER
from support.standard_farm import BOSS, HUB, W1, W2, StandardFarm

DENIED = ("NT_STATUS_ACCESS_DENIED", "NT_STATUS_MEDIA_WRITE_PROTECTED")

pytestmark = support.lab.MARKS


@dataclass
class Lab:
    farm: LabFarm
    hub_ip: str
    boss_auth: str

    def sh(self, name: str, script: str) -> str:
        return support.lab.sh(self.farm, name, script)

    def smb(self, name: str, share: str, command: str) -> subprocess.CompletedProcess[str]:
        """smbclient on ``name`` against the hub's ``share``: a worker with its own credentials
        file, the boss with the bosses' account."""
        auth = self.boss_auth if name == BOSS else SMB_CREDENTIALS
        argv = ["smbclient", f"//{self.hub_ip}/{share}", "-A", auth, "-m", "SMB3", "-c", command]
        return self.farm.exec(name, argv)

    def allowed(self, name: str, share: str, command: str) -> str:
        result = self.smb(name, share, command)
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{name} //{share} {command}: {output}"
        assert "NT_STATUS_" not in output, f"{name} //{share} {command}: {output}"
        return output

    def refused(self, name: str, share: str, command: str) -> str:
        result = self.smb(name, share, command)
        output = result.stdout + result.stderr
        assert any(status in output for status in DENIED), f"{name} //{share} {command}: {output}"
        return output


@pytest.fixture(scope="module")
def lab(standard_farm: StandardFarm) -> Lab:
    farm = standard_farm.farm
    for name in (W1, W2, BOSS):
        prov.ensure_smbclient(farm, name)
    # A stand-in Repository as Deadline's installer leaves it, then the deploy's own fix.
    layout = "/srv/farmhand/queue"
    support.lab.sh(
        farm,
        HUB,
        f"mkdir -p {layout}/bin {layout}/plugins/Blender {layout}/scripts {layout}/settings "
        f"&& echo 'print(1)' > {layout}/plugins/Blender/Blender.py "
        f"&& echo '#!/bin/sh' > {layout}/bin/deadlinecommand "
        f"&& chown -R 1000:1000 {layout} && chmod -R a+rwX {layout} && "
        + " && ".join(repository_permission_commands("farmhand")),
    )
    auth = prov.smb_auth_file(farm, BOSS)
    return Lab(farm, standard_farm.overlay[HUB], auth)


def test_each_worker_logs_in_with_its_own_account(lab: Lab) -> None:
    for name in (W1, W2):
        credentials = lab.sh(
            name, f"stat -c '%a %U:%G' {SMB_CREDENTIALS}; head -1 {SMB_CREDENTIALS}"
        )
        # Root's, and readable by the render tasks' group (Slurm's jobs reach the share as
        # farmhand-jobs), never by anyone else.
        assert credentials.splitlines() == [f"640 root:{JOBS_USER}", f"username={name}"]
        other = lab.farm.exec(name, ["runuser", "-u", "nobody", "--", "cat", SMB_CREDENTIALS])
        assert other.returncode != 0, other
        assert "Permission denied" in other.stderr, other
        # Workers never hold the bosses' password.
        assert lab.sh(name, f"test -e {SMB_PASSWORD} && echo yes || echo no") == "no"
    lab.allowed(W1, "farm", "ls")


def test_a_boss_writes_a_scene_and_a_worker_reads_it(lab: Lab) -> None:
    lab.sh(BOSS, "echo 'a scene' > /tmp/scene.blend")
    lab.allowed(BOSS, "farm", "cd scenes; put /tmp/scene.blend shot1.blend")
    lab.allowed(W1, "farm", "cd scenes; get shot1.blend /tmp/shot1.blend")
    assert lab.sh(W1, "cat /tmp/shot1.blend") == "a scene"


def test_a_worker_cannot_change_scenes(lab: Lab) -> None:
    lab.allowed(BOSS, "farm", "cd scenes; put /etc/hostname keep.blend")
    lab.sh(W1, "echo 'replaced' > /tmp/evil.blend")
    lab.refused(W1, "farm", "cd scenes; put /tmp/evil.blend keep.blend")
    lab.refused(W1, "farm", "cd scenes; put /tmp/evil.blend new.blend")
    lab.refused(W1, "farm", "cd scenes; del keep.blend")
    lab.refused(W1, "farm", "rename scenes old-scenes")
    assert lab.sh(HUB, "cat /srv/farmhand/farm/scenes/keep.blend") == "boss1"
    assert "new.blend" not in lab.sh(HUB, "ls /srv/farmhand/farm/scenes").split()


def test_a_worker_cannot_write_the_installers(lab: Lab) -> None:
    lab.sh(HUB, "echo pinned > /srv/farmhand/installers/tool.tar && chmod 644 "
           "/srv/farmhand/installers/tool.tar")  # fmt: skip
    lab.sh(W1, "echo evil > /tmp/tool.tar")
    lab.refused(W1, "installers", "put /tmp/tool.tar tool.tar")
    lab.refused(W1, "installers", "put /tmp/tool.tar other.tar")
    lab.refused(W1, "installers", "del tool.tar")
    lab.allowed(W1, "installers", "get tool.tar /tmp/got.tar")
    assert lab.sh(HUB, "cat /srv/farmhand/installers/tool.tar") == "pinned"
    # Nor can a boss: the installers are root's.
    lab.refused(BOSS, "installers", "put /etc/hostname tool.tar")


def test_a_worker_cannot_change_the_queues_code_but_writes_its_data(lab: Lab) -> None:
    lab.sh(W1, "echo 'import os' > /tmp/Blender.py")
    lab.refused(W1, "queue", "cd plugins/Blender; put /tmp/Blender.py Blender.py")
    lab.refused(W1, "queue", "cd bin; put /tmp/Blender.py deadlinecommand")
    lab.refused(W1, "queue", "cd scripts; put /tmp/Blender.py evil.py")
    lab.refused(W1, "queue", "rename plugins plugins.old")
    lab.sh(BOSS, "echo 'import os' > /tmp/Blender.py")
    lab.refused(BOSS, "queue", "cd plugins/Blender; put /tmp/Blender.py Blender.py")
    assert lab.sh(HUB, "cat /srv/farmhand/queue/plugins/Blender/Blender.py") == "print(1)"
    assert lab.sh(HUB, "stat -c %U /srv/farmhand/queue/bin/deadlinecommand") == "root"
    lab.allowed(W1, "queue", "cd reports; put /etc/hostname worker0001.log")
    lab.allowed(BOSS, "queue", "cd jobs; put /etc/hostname job.txt")


def test_a_worker_writes_renders_and_cannot_touch_another_workers(lab: Lab) -> None:
    lab.sh(W1, "echo frame1 > /tmp/frame")
    lab.sh(W2, "echo frame2 > /tmp/frame")
    lab.allowed(W1, "farm", "cd renders; mkdir shot1; cd shot1; put /tmp/frame f0001.png")
    # Another worker adds its own frames to the same job folder...
    lab.allowed(W2, "farm", "cd renders/shot1; put /tmp/frame f0002.png")
    # ...but cannot replace, remove or rename the first one's.
    lab.refused(W2, "farm", "cd renders/shot1; put /tmp/frame f0001.png")
    lab.refused(W2, "farm", "cd renders/shot1; del f0001.png")
    lab.refused(W2, "farm", "cd renders/shot1; rename f0001.png f0001-old.png")
    lab.refused(W2, "farm", "cd renders; rename shot1 shot1-old")
    owners = lab.sh(HUB, "stat -c '%n %U %a' /srv/farmhand/farm/renders/shot1/*")
    assert owners.splitlines() == [
        "/srv/farmhand/farm/renders/shot1/f0001.png worker0001 644",
        "/srv/farmhand/farm/renders/shot1/f0002.png worker0002 644",
    ]
    assert lab.sh(HUB, "cat /srv/farmhand/farm/renders/shot1/f0001.png") == "frame1"
    # The boss reads every render.
    lab.allowed(BOSS, "farm", "cd renders/shot1; get f0002.png /tmp/f2.png")
    assert lab.sh(BOSS, "cat /tmp/f2.png") == "frame2"
