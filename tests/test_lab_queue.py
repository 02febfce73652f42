"""The render queue deployed for real on the container lab, with STAND-IN artifacts (issue 5).

One lab (prefix ``fhq``): hub, worker0001, boss1. The plan chooses Deadline; the Deadline,
MongoDB and mongosh archives are the stand-ins of tests/standins/ (they record how they were
called and lay down what a real install leaves), pinned by their sha256 in farm.toml like real
ones. The hub is deployed with ``--artifacts``; the worker is not: it must take the files from
the hub's installers share. Then a real frame: the worker renders a scene from the hub's share
with Debian's Blender into renders/, and boss1 reads the image back over SMB.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import support.lab
from farmhand.keystore.plan import Role
from farmhand.lab import provision as prov
from farmhand.model.paths import QUEUE_ETC
from farmhand.queue import artifacts, deadline

sys.path.insert(0, str(Path(__file__).parent))
from standins.queue_lab import QueueLab, queue_farm

PREFIX = "fhq"
HUB, W1, BOSS = "hub", "worker0001", "boss1"
PORT = deadline.PORT

pytestmark = support.lab.MARKS


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueLab]:
    support.lab.require_lab()
    yield from queue_farm(
        QueueLab, tmp_path_factory, PREFIX, "deadline", None, artifacts.DEADLINE.filename
    )


def test_a_corrupted_artifact_is_refused(lab: QueueLab) -> None:
    report = lab.first["corrupt"]
    assert not report.ok
    message = report.failure_message()
    assert "does not match the sha256" in message, message
    assert artifacts.DEADLINE.filename in message
    assert "[artifacts.deadline]" in message


def test_the_hub_caches_artifacts_and_the_worker_takes_them_from_it(lab: QueueLab) -> None:
    cached = lab.sh(HUB, f"sha256sum {artifacts.DEADLINE.cached} | cut -d' ' -f1")
    taken = lab.sh(W1, f"sha256sum {artifacts.DEADLINE.local} | cut -d' ' -f1")
    assert cached == taken == artifacts.sha256_for(_plan(lab), artifacts.DEADLINE)
    # The worker was given no --artifacts: its copy came over SMB from the hub.
    assert lab.sh(HUB, f"stat -c %U:%a {artifacts.DEADLINE.cached}") == "root:600"


def test_installer_flags_are_exactly_the_documented_ones(lab: QueueLab) -> None:
    (repo,) = lab.records(HUB, deadline.REPOSITORY_INSTALLER)
    hub_ip = prov.overlay_ip(lab.farm, HUB)
    assert repo["argv"] == deadline.repository_args(__import__("ipaddress").IPv4Address(hub_ip))
    assert repo["env_names"] == [deadline.PASSWORD_ENV]  # the password came by environment
    password = lab.sh(HUB, f"cat {QUEUE_ETC}/db.password")
    assert password not in json.dumps(repo)
    (client,) = lab.records(W1, deadline.CLIENT_INSTALLER)
    assert client["argv"] == deadline.client_args("/mnt/farmhand/queue", "farmhand")
    # The installer's leftovers (uid 1000) become root's, writable by nobody else: only the
    # data folders (deadline.REPOSITORY_DATA) belong to the farm user and the workers' group.
    listing = lab.sh(HUB, f"find {deadline.REPOSITORY_DIR} -mindepth 1 -printf '%U %g %m %P\\n'")
    for line in listing.splitlines():
        uid, group, mode, path = line.split(maxsplit=3)
        if path.split("/")[0] in deadline.REPOSITORY_DATA:
            assert (uid, group) == ("2042", "farmhand-workers"), line
        else:
            assert uid == "0", line
            assert not int(mode, 8) & 0o022, line
    ini = lab.sh(HUB, f"cat {deadline.REPOSITORY_DIR}/settings/connection.ini")
    assert f"Hostname={hub_ip}" in ini
    assert f"Port={PORT}" in ini


def test_units_and_configs_are_rendered_and_valid(lab: QueueLab) -> None:
    for name, unit in ((HUB, "farmhand-mongodb.service"), (W1, "farmhand-deadline-worker.service")):
        lab.sh(name, f"systemd-analyze verify /etc/systemd/system/{unit}")
        assert lab.sh(name, f"systemctl is-active {unit}") == "active"
    conf = lab.sh(HUB, f"cat {QUEUE_ETC}/mongod.conf")
    assert f"bindIp: {prov.overlay_ip(lab.farm, HUB)}\n" in conf + "\n"
    assert "mode: requireTLS" in conf
    assert "authorization: enabled" in conf
    modes = lab.sh(HUB, f"stat -c '%a %U %G %n' {QUEUE_ETC}/*")
    assert f"640 root farmhand-mongodb {QUEUE_ETC}/mongod.pem" in modes
    assert f"600 root root {QUEUE_ETC}/db.password" in modes
    (mongosh,) = lab.records(HUB, "mongosh")
    assert mongosh["argv"][-1] == f"{QUEUE_ETC}/create-user.js"
    (mongod,) = lab.records(HUB, "mongod")[:1]
    assert mongod["uid"] != 0, "MongoDB must not run as root"


def test_the_worker_service_runs_as_the_farm_user(lab: QueueLab) -> None:
    records = lab.records(W1, "deadlineworker")
    assert records
    assert records[-1]["argv"] == ["-nogui"]
    assert records[-1]["uid"] == 2042
    pid = lab.sh(W1, "systemctl show -p MainPID --value farmhand-deadline-worker.service")
    assert lab.sh(W1, f"stat -c %u /proc/{pid}") == "2042"


def test_the_database_port_is_reachable_over_the_overlay_only(lab: QueueLab) -> None:
    hub_overlay = prov.overlay_ip(lab.farm, HUB)
    for name in (W1, BOSS):
        assert prov.ping(lab.farm, name, hub_overlay)
        assert prov.tcp_open(lab.farm, name, hub_overlay, PORT), f"{name} cannot reach {PORT}"
    assert not prov.desk_tcp_open(lab.farm, str(lab.farm.address(HUB)), PORT)
    assert not prov.tcp_open(lab.farm, W1, str(lab.farm.address(HUB)), PORT)


def test_a_second_deploy_changes_nothing(lab: QueueLab) -> None:
    hub = lab.deploy(Role.HUB, [HUB], farmhand_artifacts=str(lab.artifacts))
    worker = lab.deploy(Role.WORKER, [W1])
    assert hub.ok
    assert worker.ok
    assert hub.changed == 0, hub.hosts[HUB].changed_ops
    assert worker.changed == 0, worker.hosts[W1].changed_ops


SCENE = """
import bpy
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = 4
scene.cycles.use_denoising = False  # Debian builds Blender without OpenImageDenoise
scene.render.resolution_x, scene.render.resolution_y = 64, 48
scene.render.resolution_percentage = 100
scene.render.image_settings.file_format = "PNG"
bpy.ops.wm.save_as_mainfile(filepath="/tmp/scene.blend")
"""


def test_a_worker_renders_a_frame_from_the_share_and_the_boss_reads_it(lab: QueueLab) -> None:
    # The scene (the factory cube, camera and light) is made once and put on the hub's share.
    lab.sh(W1, "blender -b --factory-startup --python-expr " + _quote(SCENE) + " >/dev/null")
    # Workers may not write scenes (README: who may do what on the shares): the boss puts it
    # there, taking it from where the worker may write (renders/).
    prov.smb(lab.farm, W1, "cd renders; put /tmp/scene.blend made-cube.blend")
    prov.ensure_smbclient(lab.farm, BOSS)
    prov.smb(lab.farm, BOSS, "cd renders; get made-cube.blend /tmp/cube.blend")
    prov.smb(lab.farm, BOSS, "cd scenes; put /tmp/cube.blend cube.blend")
    lab.sh(W1, "rm -f /tmp/scene.blend /tmp/frame*")
    # The render: from the share, with the installed Blender, into renders/.
    prov.smb(lab.farm, W1, "cd scenes; get cube.blend /tmp/cube.blend")
    lab.sh(W1, "blender -b /tmp/cube.blend -o /tmp/frame#### -F PNG -f 1 >/dev/null")
    prov.smb(lab.farm, W1, "cd renders; put /tmp/frame0001.png frame0001.png")
    prov.ensure_smbclient(lab.farm, BOSS)
    prov.smb(lab.farm, BOSS, "cd renders; get frame0001.png /tmp/frame0001.png")
    header = lab.sh(BOSS, "od -An -tx1 -N24 /tmp/frame0001.png | tr -d ' \\n'")
    assert header.startswith("89504e470d0a1a0a"), header  # a PNG
    width, height = int(header[32:40], 16), int(header[40:48], 16)
    assert (width, height) == (64, 48)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _plan(lab: QueueLab) -> object:
    from farmhand.keystore.store import KeyStore

    return KeyStore.open(prov.store_dir(lab.farm)).plan
