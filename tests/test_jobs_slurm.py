"""Jobs from the boss through real parts: munged, slurmctld and slurmd (Debian's Slurm), sshd
with the job service as the boss's forced command, smbd serving the farm share, and Debian's
Blender, all in a network namespace of this test's own (only its loopback).

The "hub" and the "worker" are one namespace: slurmd (node worker0001, which tells Slurm its
Blender as farmhand's timer does, with ``jobs.py features``) reaches the share with smbclient,
as a worker without kernel CIFS does; the boss (this test process, moved into the namespace for
its calls) uploads with smbprotocol and talks to the job service over ssh with its own job key
and the pinned hub key. Jobs run as an unprivileged user (Slurm's DisableRootJobs=YES), made
here if missing.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import hashlib
import itertools
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from farmhand import blender_addon
from farmhand.errors import UsageError
from farmhand.jobs import api, local_api, transfer
from farmhand.jobs.client import HubAccess, JobError
from farmhand.jobs.deadline import DeadlineError, DeadlineFarm
from farmhand.jobs.flamenco import FlamencoFarm
from farmhand.keystore import farm_secrets
from farmhand.keystore.plan import Role
from farmhand.onhost import jobs as service
from farmhand.onhost import leases
from standins import deadline_web_service, http_api
from standins.flamenco_manager_api import StandinManager
from support import scenes

TOOLS = ("slurmctld", "slurmd", "munged", "sbatch", "smbd", "smbclient", "sshd", "blender")
MISSING = [t for t in TOOLS if not shutil.which(t, path="/usr/sbin:/usr/bin:/sbin:/bin")]
NEEDS = f"needs root and {', '.join(MISSING)}" if MISSING or os.geteuid() != 0 else None
pytestmark = pytest.mark.skipif(NEEDS is not None, reason=NEEDS or "")

USER = "farmhand-jobs-t"
LIB = Path(service.__file__)
CLONE_NEWNET = 0x40000000

SCENE_SCRIPT = """
import bpy, sys
out, denoise = sys.argv[-2], sys.argv[-1] == "1"
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.samples = 1
scene.cycles.use_denoising = denoise
scene.render.resolution_x, scene.render.resolution_y = 48, 32
scene.render.resolution_percentage = 100
scene.render.image_settings.file_format = "PNG"
scene.frame_start, scene.frame_end = 1, 6
cube = bpy.data.objects["Cube"]
cube.location = (-3, 0, 0); cube.keyframe_insert("location", frame=1)
cube.location = (3, 0, 0); cube.keyframe_insert("location", frame=6)
bpy.ops.wm.save_as_mainfile(filepath=out)
"""


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
    finally:
        os.close(fd)


@contextlib.contextmanager
def inside(ns: str) -> Iterator[None]:
    """This process in the test's namespace for a while (the boss's calls), then back."""
    home = f"/proc/{os.getpid()}/task/{os.getpid()}/ns/net"
    keep = os.open(home, os.O_RDONLY)
    try:
        _setns(f"/run/netns/{ns}")
        yield
    finally:
        try:
            if ctypes.CDLL(None, use_errno=True).setns(keep, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
        finally:
            os.close(keep)


class Farm:
    def __init__(self, root: Path, ns: str) -> None:
        self.root, self.ns = root, ns
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.procs.append(
            subprocess.Popen(
                ["ip", "netns", "exec", self.ns, *argv],
                stdout=log,
                stderr=log,
                env={**os.environ, **(env or {})},
                start_new_session=True,  # a daemon that signals its group must not hit pytest
            )
        )

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.ns, *argv],
            capture_output=True,
            text=True,
            check=check,
            env={**os.environ, "SLURM_CONF": str(self.root / "slurm.conf")},
        )

    def tell_blender(self) -> str:
        """What the worker's timer runs (as root): its Blender version as node features."""
        told = self.run("/usr/bin/python3", str(LIB), "features", str(self.root / "worker.json"))
        return told.stdout.strip()

    def features(self) -> str:
        return self.run("sinfo", "-h", "-N", "-o", "%f").stdout.strip()

    def restart_slurmctld(self) -> None:
        """slurmctld stopped and started again from its saved state, as a hub reboot does."""
        ctld = next(p for p in self.procs if "slurmctld" in " ".join(map(str, p.args)))
        self.procs.remove(ctld)
        ctld.terminate()
        ctld.wait(30)
        self.start_slurmctld()
        _wait("slurmctld", lambda: self.run("scontrol", "ping", check=False).returncode == 0, 30)

    def start_slurmctld(self) -> None:
        # The controller is named "hub" (as on a farm): its own UTS namespace says so.
        self.start(
            "slurmctld-out",
            ["unshare", "--uts", "sh", "-c", "hostname hub && exec slurmctld -D -i"],
            {"SLURM_CONF": str(self.root / "slurm.conf")},
        )

    def access(self, key: str = "boss.key") -> api.Farm:
        return api.Farm(
            hub=HubAccess(
                hub="127.0.0.1",
                key=self.root / key,
                known_hosts=self.root / "known_hosts",
                user=USER,
                connect_timeout=5,
            ),
            share=transfer.ShareAccess("127.0.0.1", USER, self.password),
        )

    password = ""


def _user() -> pwd.struct_passwd:
    """The jobs' user (made once). Its password is '*', not locked ('!'): sshd without PAM
    refuses a locked account even for a key."""
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/bin/sh", USER],
            check=True,
        )  # fmt: skip
    subprocess.run(["usermod", "-p", "*", USER], check=True)
    return pwd.getpwnam(USER)


def _wait(what: str, probe: Any, seconds: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while not probe():
        if time.monotonic() > deadline:
            text = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise AssertionError(f"{what} did not come up within {seconds} s\n{text}")
        time.sleep(0.3)


def _write(path: Path, text: str | bytes, mode: int = 0o644) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    path.chmod(mode)
    return path


def _slurm_conf(root: Path) -> str:
    return f"""ClusterName=fhjobs
SlurmctldHost=hub(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket.2
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/ctld
SlurmdSpoolDir={root}/slurmd
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobRequeue=1
DisableRootJobs=YES
MpiDefault=none
MailProg=/bin/true
SlurmdTimeout=30
SchedulerParameters=sched_interval=5
NodeName=worker0001 NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=render Nodes=worker0001 Default=YES MaxTime=INFINITE State=UP
"""


def _smb_conf(root: Path) -> str:
    return f"""[global]
server role = standalone server
passdb backend = tdbsam:{root}/samba/passdb.tdb
private dir = {root}/samba/private
lock directory = {root}/samba/lock
state directory = {root}/samba/state
cache directory = {root}/samba/cache
pid directory = {root}/samba/run
ncalrpc dir = {root}/samba/ncalrpc
interfaces = 127.0.0.1
bind interfaces only = yes
smb ports = 445
log file = {root}/smbd.log
load printers = no
disable spoolss = yes
server min protocol = SMB2
[farm]
path = {root}/farm
read only = no
valid users = {USER}
"""


@pytest.fixture(scope="module")
def farm() -> Iterator[Farm]:
    user = _user()
    root = Path(tempfile.mkdtemp(prefix="fhjobs-"))
    root.chmod(0o755)
    ns = f"fhjobs-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    box = Farm(root, ns)
    try:
        box.run("ip", "link", "set", "lo", "up")
        # Slurm resolves its listening address with AI_ADDRCONFIG, which a namespace with
        # loopback alone fails: a veth pair with both ends in the namespace gives it one.
        box.run("ip", "link", "add", "fh0", "type", "veth", "peer", "name", "fh1")
        box.run("ip", "addr", "add", "10.213.77.1/24", "dev", "fh0")
        box.run("ip", "link", "set", "fh0", "up")
        box.run("ip", "link", "set", "fh1", "up")
        for sub in ("munge", "ctld", "slurmd", "samba", "state", "cache", "home"):
            (root / sub).mkdir()
        for sub in ("private", "lock", "state", "cache", "run", "ncalrpc"):
            (root / "samba" / sub).mkdir()
        # The share: scenes/ and renders/, the test user's (boss, service and worker alike).
        for sub in ("farm", f"farm/{service.SCENES}", "farm/renders"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        for path in (root / "farm", root / "state", root / "cache", root / "home"):
            for folder, _, _ in os.walk(path):
                os.chown(folder, user.pw_uid, user.pw_gid)
        (root / "munge").chmod(0o700)
        _write(root / "munge.key", secrets.token_bytes(1024), 0o400)
        box.start(
            "munged",
            ["munged", "-F", "--force", f"--key-file={root}/munge.key",
             f"--socket={root}/munge/munge.socket.2", f"--pid-file={root}/munge/munged.pid",
             f"--log-file={root}/munged.log", f"--seed-file={root}/munge/seed"],
        )  # fmt: skip
        _wait("munged", (root / "munge/munge.socket.2").exists, 10, root / "munged.log")
        (root / "munge").chmod(0o755)  # slurmd's jobs run as the user: it reaches the socket
        _write(root / "slurm.conf", _slurm_conf(root))
        env = {"SLURM_CONF": str(root / "slurm.conf")}
        # `ip netns exec` mounts a fresh /sys without cgroups, which slurmd 22.05 insists on: it
        # gets a tmpfs there with the name=systemd hierarchy (cgroup v1; no controller is used).
        box.start_slurmctld()
        box.start(
            "slurmd-out",
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             "mount -t tmpfs none /sys/fs/cgroup && mkdir /sys/fs/cgroup/systemd && "
             "mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd && "
             "exec slurmd -D -N worker0001"],
            env,
        )  # fmt: skip

        password = secrets.token_urlsafe(12)
        box.password = password
        _write(root / "smb.conf", _smb_conf(root))
        subprocess.run(
            ["smbpasswd", "-c", str(root / "smb.conf"), "-s", "-a", USER],
            input=f"{password}\n{password}\n",
            text=True,
            check=True,
            capture_output=True,
        )
        box.start("smbd-out", ["smbd", "-F", "--no-process-group", "-s", str(root / "smb.conf")])
        creds = _write(root / "worker-smb", f"username={USER}\npassword={password}\n", 0o600)
        os.chown(creds, user.pw_uid, user.pw_gid)

        # The hub's job service and the worker's task config. Its Blender is the real one,
        # through a wrapper that counts the renders (each Blender started with -a, and how).
        runs = root / "blender-runs.log"
        runs.touch(mode=0o666)
        runs.chmod(0o666)
        wrapper = _write(
            root / "blender",
            f'#!/bin/sh\ncase " $* " in *" -a "*) echo "$*" >> {runs};; esac\n'
            'exec /usr/bin/blender "$@"\n',
            0o755,
        )
        worker = {
            "blender": str(wrapper),
            "mount": "",
            "hub": "127.0.0.1",
            "share": "farm",
            "credentials": str(creds),
            "cache": str(root / "cache"),
            "name": "worker0001",
            "lease_state": str(_write(root / "lease.json", '{"name": "worker0001"}')),
            "features_memo": str(root / "blender-features.json"),
            "slurm_conf": str(root / "slurm.conf"),
        }
        _write(root / "worker.json", json.dumps(worker))
        hub = {
            "share_root": str(root / "farm"),
            "state_dir": str(root / "state"),
            "python": "/usr/bin/python3",
            "lib": str(LIB),
            "worker_config": str(root / "worker.json"),
            "slurm_conf": str(root / "slurm.conf"),
            "max_attempts": 2,
            "hourly_price": 0.5,
            "currency": "EUR",
        }
        _write(root / "hub.json", json.dumps(hub))

        # sshd: the lease host key (pinned by the boss), one forced-command line per boss.
        made = farm_secrets.completed({}, (farm_secrets.LEASE_HOST_KEY,))
        _write(root / "host_key", made["lease-host-key"], 0o600)
        host_pub = farm_secrets.for_role(Role.WORKER, made)["lease-host-key.pub"].decode().split()
        _write(root / "known_hosts", f"{leases.HOST_KEY_ALIAS} {host_pub[0]} {host_pub[1]}\n")
        lines = []
        for boss in ("alice", "bob", "carol"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / f"{boss}.key")],
                check=True,
            )
            pub = (root / f"{boss}.key.pub").read_text().strip()
            lines.append(
                f'restrict,command="/usr/bin/python3 {LIB} serve {boss} {root}/hub.json" {pub}'
            )
        shutil.copy(root / "alice.key", root / "boss.key")
        (root / "boss.key").chmod(0o600)
        _write(root / "authorized_keys", "\n".join(lines) + "\n")
        _write(
            root / "sshd_config",
            f"Port 22\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\n"
            f"AuthorizedKeysFile {root / 'authorized_keys'}\nPidFile none\n"
            f"UsePAM no\nStrictModes no\nPasswordAuthentication no\nAllowUsers {USER}\n"
            f"SetEnv HOME={root}/home\n",
        )
        Path("/run/sshd").mkdir(exist_ok=True)
        box.start("sshd", ["/usr/sbin/sshd", "-D", "-e", "-f", str(root / "sshd_config")])

        def node_idle() -> bool:
            out = box.run("sinfo", "-h", "-o", "%T", check=False).stdout.strip()
            return out in ("idle", "idle*") and not out.endswith("*")

        _wait("slurmd (node idle)", node_idle, 60, root / "slurmd-out.log")
        told = box.tell_blender()
        assert told == "features: node worker0001 has blender-3.4,blender-3.4.1", told
        _wait(
            "smbd",
            lambda: (
                box.run("smbclient", "-L", "127.0.0.1", "-N", check=False).returncode == 0
                or "NT_STATUS" in box.run("smbclient", "-L", "127.0.0.1", "-N", check=False).stdout
            ),
            20,
            root / "smbd.log",
        )
        _wait(
            "sshd",
            lambda: box.run("ssh-keyscan", "-T", "2", "127.0.0.1", check=False).stdout != "",
            20,
            root / "sshd.log",
        )
        for denoise, name in (("0", "cube.blend"), ("1", "denoise.blend")):
            subprocess.run(
                ["blender", "-b", "--factory-startup", "--python-expr", SCENE_SCRIPT, "--",
                 str(root / name), denoise],
                check=True,
                capture_output=True,
            )  # fmt: skip
        yield box
    finally:
        for proc in reversed(box.procs):
            proc.terminate()
        for proc in box.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.run(["ip", "netns", "delete", ns], check=False)
        if not os.environ.get("FARMHAND_KEEP_TEST_FARM"):
            shutil.rmtree(root, ignore_errors=True)


def _wait_job(farm: Farm, job: str, seconds: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        with inside(farm.ns):
            details = api.show(farm.access(), job)
        if details["queued"] + details["running"] == 0:
            return details
        if details["running"] and details["state"] != "cancelled":
            assert details["state"] == "running", details  # not "queued" while it renders
        if time.monotonic() > deadline:
            log = (farm.root / "slurmctld.log").read_text(errors="replace")[-2000:]
            raise AssertionError(f"job {job} did not end: {details}\n{log}")
        time.sleep(1)


def test_a_six_frame_job_renders_every_frame_once(farm: Farm) -> None:
    moved: list[int] = []
    with inside(farm.ns):
        answer = api.submit(
            farm.access(), farm.root / "cube.blend", "1-6", chunk=2, progress=moved.append
        )
    job = str(answer["job"])
    assert answer["tasks"] == 3
    assert answer["frames"] == 6
    assert answer["blender"] == "3.4.1"  # no --blender: the one the workers have
    assert sum(moved) == (farm.root / "cube.blend").stat().st_size
    details = _wait_job(farm, job)
    assert details["done"] == 6, details
    assert details["state"] == "done"
    renders = farm.root / "farm" / "renders" / job
    names = sorted(p.name for p in renders.iterdir() if not p.name.startswith("."))
    assert names == [f"frame_{n:04d}.png" for n in range(1, 7)]
    data = [(renders / n).read_bytes() for n in names]
    assert all(d.startswith(b"\x89PNG\r\n\x1a\n") for d in data)
    assert all(a != b for a, b in itertools.pairwise(data))  # the cube moves
    assert not [p for p in renders.iterdir() if p.name.endswith(".part")]
    for frame in details["frame_states"]:
        assert frame["worker"] == "worker0001"
        assert frame["attempts"] == 1
        assert frame["end"] >= frame["start"]
    # One Blender per task renders its chunk (1-2, 3-4, 5-6); the next frame begins as the
    # last is written.
    runs = [ln.split() for ln in (farm.root / "blender-runs.log").read_text().splitlines()]
    mine = sorted(
        r[r.index("-s") + 1 : r.index("-e") + 2] for r in runs if f"/{job}/" in " ".join(r)
    )
    assert mine == [["1", "-e", "2"], ["3", "-e", "4"], ["5", "-e", "6"]], runs
    frames = {f["frame"]: f for f in details["frame_states"]}
    for first in (1, 3, 5):
        assert frames[first + 1]["start"] >= frames[first]["end"] - 0.01
    # The scene reached the worker once for the job, not once per frame or task.
    fetches = (farm.root / "cache" / job / "fetches.log").read_text().splitlines()
    assert len(fetches) == 1
    # Remembered for the next tasks: Blender's version, and that the share folders exist.
    known = json.loads((farm.root / "cache" / "blender-version.json").read_text())
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", known["version"]), known
    assert (farm.root / "cache" / job / ".share-folders").is_file()
    assert details["cost"] is not None
    assert details["cost"] > 0

    with inside(farm.ns):
        listed = {j["job"]: j for j in api.list_jobs(farm.access())}
        target = farm.root / "collected"
        fetched, skipped = api.collect(farm.access(), job, target)
        again, skipped_again = api.collect(farm.access(), job, target)
    assert listed[job]["done"] == 6
    assert sorted(fetched) == names
    assert skipped == []
    assert again == []
    assert sorted(skipped_again) == names
    assert [(target / n).read_bytes() for n in names] == data


def test_a_scene_with_oidn_denoising_fails_with_blenders_reason(farm: Farm) -> None:
    with inside(farm.ns):
        job = str(api.submit(farm.access(), farm.root / "denoise.blend", "1-2")["job"])
    details = _wait_job(farm, job)
    assert details["failed"] == 2
    assert details["state"] == "failed"
    for frame in details["frame_states"]:
        assert frame["error"] == "Error: Build without OpenImageDenoiser"
        assert "denoising off" in frame["hint"]
        assert frame["attempts"] == 2  # max_attempts, then it stops


def test_cancel_stops_a_job(farm: Farm) -> None:
    with inside(farm.ns):
        job = str(api.submit(farm.access(), farm.root / "cube.blend", "1-40")["job"])
        api.cancel(farm.access(), job)
    details = _wait_job(farm, job, 60)
    assert details["state"] == "cancelled"
    assert details["cancelled"] > 0
    squeue = farm.run("squeue", "-h", "-n", f"farmhand-{job}").stdout.strip()
    assert squeue == ""
    # Another boss cannot cancel it (the service knows bosses by their key's line).
    with inside(farm.ns), pytest.raises(UsageError, match=r"no job .* of this boss"):
        api.cancel(farm.access("bob.key"), job)


def test_a_job_needing_a_blender_no_worker_has_is_refused(farm: Farm) -> None:
    with inside(farm.ns), pytest.raises(JobError, match=r"no worker has Blender 4\.2"):
        api.submit(farm.access(), farm.root / "cube.blend", "1-2", blender="4.2")
    leftovers = list((farm.root / "farm" / service.SCENES).iterdir())
    jobs = [j["job"] for j in _list(farm)]
    assert all(p.name in jobs for p in leftovers), leftovers  # nothing half-uploaded left


def _list(farm: Farm) -> list[dict[str, Any]]:
    with inside(farm.ns):
        return api.list_jobs(farm.access())


def test_bad_input_queues_nothing(farm: Farm, tmp_path: Path) -> None:
    before = sorted(os.listdir(farm.root / "state"))
    text = _write(tmp_path / "notes.blend", "not a scene")
    with inside(farm.ns):
        with pytest.raises(UsageError, match="does not start with BLENDER"):
            api.submit(farm.access(), text, "1-2")
        with pytest.raises(UsageError, match="no such scene"):
            api.submit(farm.access(), tmp_path / "gone.blend", "1-2")
        with pytest.raises(UsageError, match="ends before it starts"):
            api.submit(farm.access(), farm.root / "cube.blend", "5-1")
        with pytest.raises(UsageError, match="the hub has no job 999"):
            api.show(farm.access(), "999")
    assert sorted(os.listdir(farm.root / "state")) == before


def test_a_revoked_boss_is_refused(farm: Farm) -> None:
    lines = (farm.root / "authorized_keys").read_text().splitlines()
    with inside(farm.ns):
        assert isinstance(api.list_jobs(farm.access("carol.key")), list)
    # What the hub's authorized_keys is once carol is revoked and the hub deployed again.
    _write(farm.root / "authorized_keys", "\n".join(x for x in lines if " serve carol " not in x))
    with inside(farm.ns), pytest.raises(JobError, match="refused this boss's job key"):
        api.list_jobs(farm.access("carol.key"))


def test_an_unreachable_hub_is_one_line(farm: Farm) -> None:
    access = farm.access()
    dead = api.Farm(
        hub=HubAccess(
            "127.0.0.2", access.hub.key, access.hub.known_hosts, port=2, connect_timeout=2
        ),
        share=access.share,
    )
    with inside(farm.ns), pytest.raises(JobError, match="unreachable") as raised:
        api.list_jobs(dead)
    assert "\n" not in str(raised.value)


def test_a_task_waits_out_a_hub_that_is_away_and_a_refusal_fails_at_once(farm: Farm) -> None:
    """A worker's task meets the hub rebooting (smbd gone for a few seconds): its frame is put
    once smbd answers again instead of being lost; a file the share refuses fails at once."""
    config = service.load_worker_config(str(farm.root / "worker.json"))
    config["share_patience"] = 60
    share = service.Share(config)
    frame = farm.root / "frame.png"
    frame.write_bytes(b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(64))
    smbd = next(p for p in farm.procs if "smbd" in p.args)
    smbd.terminate()
    smbd.wait(10)
    farm.procs.remove(smbd)
    # Its children too, and only this namespace's: never another smbd on this machine.
    for pid in subprocess.run(
        ["ip", "netns", "pids", farm.ns], capture_output=True, text=True, check=True
    ).stdout.split():
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "smbd":
                os.kill(int(pid), signal.SIGKILL)
    restart = threading.Timer(
        8, farm.start, ("smbd-out", ["smbd", "-F", "--no-process-group", "-s",
                                     str(farm.root / "smb.conf")])
    )  # fmt: skip
    started = time.monotonic()
    restart.start()
    try:
        with inside(farm.ns):
            share.put(str(frame), "renders/away.png")
    finally:
        restart.join()
    assert time.monotonic() - started >= 8  # it waited for smbd, and then it worked
    assert (farm.root / "farm" / "renders" / "away.png").read_bytes() == frame.read_bytes()
    started = time.monotonic()
    with inside(farm.ns), pytest.raises(OSError, match="NT_STATUS_OBJECT_NAME_NOT_FOUND"):
        share.get("renders/no-such-frame.png", str(farm.root / "nothing"))
    assert time.monotonic() - started < 10  # not retried: the hub answered


def test_a_workers_scene_cache_keeps_recent_jobs_and_drops_old_ones(farm: Farm) -> None:
    user = _user()
    cache = farm.root / "cache"
    for old_or_new, age in (("77", 2 * 86400), ("78", 600)):
        folder = cache / old_or_new
        folder.mkdir()
        (folder / "scene.blend").write_bytes(b"BLENDER old scene")
        for path in (folder, folder / "scene.blend"):
            os.chown(path, user.pw_uid, user.pw_gid)
        stamp = time.time() - age
        os.utime(folder, (stamp, stamp))
    with inside(farm.ns):
        job = str(api.submit(farm.access(), farm.root / "cube.blend", "1")["job"])
    assert _wait_job(farm, job)["done"] == 1
    assert not (cache / "77").exists()  # no task of job 77 for two days: its scene went
    assert (cache / "78" / "scene.blend").is_file()  # ten minutes ago: kept
    assert (cache / job / "scene.blend").is_file()


def test_a_job_waits_out_a_slurmctld_that_forgot_the_blender_features(farm: Farm) -> None:
    """Slurm keeps features set with scontrol only until slurmctld restarts: a queued task
    that needs them waits (BadConstraints) until the worker's timer tells Slurm again, then
    runs. A job may ask for MAJOR.MINOR as well as the full version."""
    assert farm.features() == "blender-3.4,blender-3.4.1"
    assert farm.tell_blender() == ""  # Slurm shows them already: nothing changes
    node = ("scontrol", "update", "NodeName=worker0001")
    farm.run(*node, "State=DRAIN", "Reason=farmhand-test")
    try:
        with inside(farm.ns):
            answer = api.submit(farm.access(), farm.root / "cube.blend", "1-2", blender="3.4")
        job = str(answer["job"])
        assert answer["blender"] == "3.4"
        farm.restart_slurmctld()
        assert farm.features() == "(null)"
        # The drain outlives the restart; it can be undone once slurmd registers again. Then
        # only the missing features keep the job waiting.
        reason = ""
        deadline = time.monotonic() + 60
        while reason != "BadConstraints":
            assert time.monotonic() < deadline, f"job {job}: {reason!r}"
            time.sleep(1)
            farm.run(*node, "State=RESUME", check=False)
            reason = farm.run("squeue", "-h", "-n", f"farmhand-{job}", "-o", "%r").stdout.strip()
        told = farm.tell_blender()
        assert told == "features: node worker0001 has blender-3.4,blender-3.4.1", told
    finally:
        farm.run(*node, "State=RESUME", check=False)
    details = _wait_job(farm, job, 120)
    assert details["done"] == 2, details


def test_a_scene_packed_with_its_texture_renders_in_the_textures_colour(farm: Farm) -> None:
    scene = scenes.textured(farm.root / "artist", "textured.blend")
    texture = farm.root / "artist" / scenes.TEXTURE
    with inside(farm.ns):
        answer = api.submit(farm.access(), scene, "1-1")
    job = str(answer["job"])
    details = _wait_job(farm, job)
    assert details["done"] == 1, details
    frame = farm.root / "farm" / "renders" / job / "frame_0001.png"
    colour, wanted = scenes.pixel(frame), scenes.pixel(texture)
    assert scenes.same_colour(colour, wanted), (colour, wanted)
    # The texture sits in the share's file store once, under its sha256; the job folder on the
    # worker has it where the rewritten scene looks (outside the scene's folder: packed under
    # _outside_project/).
    digest = hashlib.sha256(texture.read_bytes()).hexdigest()
    stored = farm.root / "farm" / service.FILES / digest
    assert stored.read_bytes() == texture.read_bytes()
    cached = list((farm.root / "cache" / job).rglob("solid.png"))
    assert len(cached) == 1
    assert "_outside_project" in cached[0].parts
    # The same texture again, in another job: not uploaded twice.
    before = stored.stat()
    again = scenes.textured(farm.root / "artist", "textured-again.blend")
    assert hashlib.sha256(texture.read_bytes()).hexdigest() == digest
    with inside(farm.ns):
        second = str(api.submit(farm.access(), again, "1-1")["job"])
    assert _wait_job(farm, second)["done"] == 1
    after = stored.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_scene_with_a_missing_texture_is_refused_unless_allowed(farm: Farm) -> None:
    scene = scenes.textured(farm.root / "artist", "gone.blend", gone=True)
    jobs_before = sorted(os.listdir(farm.root / "state"))
    with inside(farm.ns), pytest.raises(UsageError) as refused:
        api.submit(farm.access(), scene, "1-1")
    text = str(refused.value)
    assert "\n" not in text
    assert "references 1 missing file(s)" in text
    assert "solid.png.gone" in text
    assert "--allow-missing" in text
    assert sorted(os.listdir(farm.root / "state")) == jobs_before  # nothing reserved
    with inside(farm.ns):
        answer = api.submit(farm.access(), scene, "1-1", allow_missing=True)
    assert [Path(p).name for p in answer["missing"]] == ["solid.png.gone"]
    assert _wait_job(farm, str(answer["job"]))["done"] == 1


def test_the_local_api_submits_lists_shows_and_cancels_on_the_farm(farm: Farm) -> None:
    """`farmhand api`'s routes against the real farm: a scene packed with its texture goes in
    by POST /new_job, GET /jobs and /jobs/ID show it, DELETE /jobs cancels another."""
    scene = scenes.textured(farm.root / "artist", "by-api.blend")
    secret = "k" * 43
    with inside(farm.ns):  # the server's threads (and its ssh and SMB) in the farm's namespace
        server = local_api.make_server(
            local_api.JobApi(lambda: contextlib.nullcontext(farm.access())), secret, 0
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            status, answer = _http(url + "/new_job", "POST", secret,
                                   {"scene": str(scene), "frames": "1"})  # fmt: skip
            assert status == 200, answer
            job = str(answer["data"]["job"])
            assert answer["message"] == f"job {job} queued"
            status, listed = _http(url + "/jobs", "GET", secret)
            assert status == 200
            assert job in [str(j["job"]) for j in listed["data"]]
            status, unknown = _http(url + "/jobs/999999", "GET", secret)
            assert status == 404, unknown
            long = str(api.submit(farm.access(), farm.root / "cube.blend", "1-40")["job"])
            status, cancelled = _http(url + "/jobs", "DELETE", secret, {"job": long})
            assert status == 200, cancelled
            assert cancelled["message"] == f"job {long} cancelled"
        finally:
            server.shutdown()
            server.server_close()
    details = _wait_job(farm, job)
    assert details["done"] == 1, details
    assert _wait_job(farm, long, 60)["state"] == "cancelled"


def _http(
    url: str, method: str, token: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    assert url.startswith("http://127.0.0.1:")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
    request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:  # noqa: S310
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_blender_addon_renders_on_the_farm_through_the_local_api(
    farm: Farm, tmp_path: Path
) -> None:
    """Blender with the add-on installed from `farmhand addon`'s zip, a saved scene open:
    "Render on farm" sends its frame range in chunks through the API; the job renders, and
    "Refresh jobs" lists it."""
    made = blender_addon.build_zip(tmp_path / "addon")
    shutil.copy(farm.root / "cube.blend", tmp_path / "shot.blend")
    token_file = tmp_path / "api-token"
    secret = local_api.token(tmp_path)
    assert token_file.is_file()
    with inside(farm.ns):
        server = local_api.make_server(
            local_api.JobApi(lambda: contextlib.nullcontext(farm.access())), secret, 0
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        out = subprocess.run(
            ["ip", "netns", "exec", farm.ns, "blender", "-b", "--factory-startup",
             str(tmp_path / "shot.blend"), "--python-expr", scenes.ADDON_SUBMIT, "--",
             str(made), url, str(token_file)],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "BLENDER_USER_SCRIPTS": str(tmp_path / "scripts")},
            check=False,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("FARMHAND ")]
    assert lines, out.stdout[-2000:] + out.stderr[-2000:]
    line = lines[0]
    seen = json.loads(line.split(" ", 1)[1])
    assert seen["submit"] == ["FINISHED"], out.stdout[-2000:]
    assert seen["refresh"] == ["FINISHED"]
    job = seen["job"]
    assert job in [str(j["job"]) for j in seen["jobs"]]
    details = _wait_job(farm, job)
    assert details["done"] == 4, details
    assert sorted(f["frame"] for f in details["frame_states"]) == [2, 3, 4, 5]


def test_on_a_flamenco_farm_the_same_commands_go_to_flamencos_api(
    farm: Farm, tmp_path: Path
) -> None:
    """render_manager = "flamenco": submit, jobs, job, cancel and collect through Flamenco
    Manager's REST API, against a STAND-IN manager (tests/standins/flamenco_manager_api.py:
    Flamenco cannot be had here) and this farm's real smbd. The packed scene and its texture
    go into a job folder of their own, where a Linux worker finds them on the share."""
    mount = "/mnt/farmhand/farm"
    manager = StandinManager(mount, farm.root / "farm")
    scene = scenes.textured(farm.root / "artist-flamenco", "flamenco.blend")
    with inside(farm.ns), http_api.serving(manager.handle) as url:
        plain = farm.access()
        boss = dataclasses.replace(plain, manager=FlamencoFarm(url, plain.share, mount))
        answer = api.submit(boss, scene, "1-5", chunk=2)
        job = answer["job"]
        assert (answer["tasks"], answer["frames"]) == (3, 5)
        settings = manager.jobs[job]["settings"]
        assert settings["scene"] == "Scene"
        assert settings["frames"] == "1-5"
        assert settings["chunk_size"] == 2
        blend = manager.local(settings["blendfile"])
        assert blend.read_bytes().startswith(b"BLENDER")
        assert [p.name for p in blend.parent.rglob("solid.png")] == ["solid.png"]
        listed = api.list_jobs(boss)
        assert [(j["job"], j["state"], j["queued"]) for j in listed] == [(job, "queued", 5)]
        manager.render(job)  # the stand-in's workers
        details = api.show(boss, job)
        assert (details["state"], details["done"]) == ("done", 5), details
        assert [f["frame"] for f in details["frame_states"]] == [1, 2, 3, 4, 5]
        fetched, skipped = api.collect(boss, job, tmp_path / "frames")
        assert fetched == [f"{n:06d}.png" for n in range(1, 6)]
        assert skipped == []
        assert (tmp_path / "frames" / "000003.png").read_bytes().startswith(b"\x89PNG")
        other = str(api.submit(boss, scene, "1-4")["job"])
        api.cancel(boss, other)
        assert api.show(boss, other)["state"] == "cancelled"
        with pytest.raises(UsageError, match="the farm has no job"):
            api.show(boss, str(uuid.uuid4()))
        with pytest.raises(UsageError, match="not a Flamenco job id"):
            api.show(boss, "7")
        with pytest.raises(UsageError, match="--blender is the built-in manager's"):
            api.submit(boss, scene, "1", blender="4.2")


def test_on_a_deadline_farm_the_same_commands_go_to_its_web_service(
    farm: Farm, tmp_path: Path
) -> None:
    """render_manager = "deadline": submit, jobs, job, cancel and collect through Deadline's
    Web Service, against a STAND-IN (tests/standins/deadline_web_service.py: Deadline cannot
    be had here) and this farm's real smbd. The stand-in refuses a submit that lacks what
    Deadline's Blender plugin needs; a refusal is one line and leaves nothing on the share."""
    mount = "/mnt/farmhand/farm"
    web = deadline_web_service.StandinWebService(mount, farm.root / "farm")
    scene = scenes.textured(farm.root / "artist-deadline", "deadline.blend")
    jobs_folder = farm.root / "farm" / "scenes" / "farmhand-deadline"
    with inside(farm.ns), http_api.serving(web.handle) as url:
        plain = farm.access()
        boss = dataclasses.replace(plain, manager=DeadlineFarm(url, plain.share, mount))
        answer = api.submit(boss, scene, "1-5", chunk=2, output="shot_####")
        job = answer["job"]
        assert (answer["tasks"], answer["frames"]) == (3, 5)
        submitted = web.requests[-1][2]
        assert submitted["JobInfo"]["Plugin"] == "Blender"
        assert (submitted["JobInfo"]["Frames"], submitted["JobInfo"]["ChunkSize"]) == (
            "1-5", "2",
        )  # fmt: skip
        blend = web.local(submitted["PluginInfo"]["SceneFile"])
        assert blend.read_bytes().startswith(b"BLENDER")
        assert [p.name for p in blend.parent.rglob("solid.png")] == ["solid.png"]
        listed = api.list_jobs(boss)
        assert [(j["job"], j["state"], j["queued"]) for j in listed] == [(job, "queued", 5)]
        web.render(job)  # the stand-in's workers
        details = api.show(boss, job)
        assert (details["state"], details["done"], details["name"]) == (
            "done", 5, "deadline",
        ), details  # fmt: skip
        assert [(f["frame"], f["worker"]) for f in details["frame_states"]] == [
            (n, "worker0001") for n in range(1, 6)
        ]
        fetched, skipped = api.collect(boss, job, tmp_path / "frames")
        assert fetched == [f"shot_{n:04d}.png" for n in range(1, 6)]
        assert skipped == []
        assert api.collect(boss, job, tmp_path / "frames")[1] == fetched  # resumable
        other = str(api.submit(boss, scene, "1-4")["job"])
        api.cancel(boss, other)
        assert web.requests[-1][2] == {"Command": "suspend", "JobID": other}
        assert api.show(boss, other)["state"] == "cancelled"
        with pytest.raises(UsageError, match="the farm has no job"):
            api.show(boss, "0" * 24)
        with pytest.raises(UsageError, match="not a Deadline job id"):
            api.show(boss, "7")
        with pytest.raises(UsageError, match="--blender is the built-in manager's"):
            api.submit(boss, scene, "1", blender="4.2")
        before = sorted(p.name for p in jobs_folder.iterdir())
        web.refuse = "Error: the repository is read-only."
        with pytest.raises(
            DeadlineError,
            match=r"^Deadline's Web Service "
            r"refused POST /api/jobs: 500 Error: the repository is read-only",
        ):
            api.submit(boss, scene, "1-2")
        assert sorted(p.name for p in jobs_folder.iterdir()) == before  # nothing left
        assert len(api.list_jobs(boss)) == 2  # nothing queued
    away = dataclasses.replace(plain, manager=DeadlineFarm(url, plain.share, mount))
    with pytest.raises(DeadlineError, match="cannot reach Deadline's Web Service"):
        api.list_jobs(away)
