"""Slurm, the default render manager: the version rule, the rendered files, and a real cluster.

The cluster is real: one munged (with the farm's rendered munge key), slurmctld started by the
hub unit's own ExecStart and two slurmd started by the rendered slurmd-start, each in a network
namespace of its own with the overlay address of its certificate, joined by a bridge in a
further namespace (no address in this machine's own namespace, no traffic leaves them). Each
daemon also gets a private mount namespace with its own /run, /var/lib/slurm and the rendered
/etc/slurm, so two slurmd can share this machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from farmhand.hostfiles import host_files
from farmhand.hostfiles.base import HostFile
from farmhand.keystore.bundle import Bundle, open_bundle
from farmhand.keystore.plan import Role
from farmhand.model.distro import distro_from_os_release
from farmhand.model.host import host_model
from farmhand.queue import slurm
from farmhand.queue.slurm import version_rule
from support.cli import PASSPHRASE
from support.session import Farm

DEBIAN = distro_from_os_release({"ID": "debian", "VERSION_ID": "12"})
WORKERS = ("worker0001", "worker0002")


# --- the version rule ------------------------------------------------------------------------


def test_the_version_rule_accepts_equal_releases() -> None:
    assert version_rule("slurm 23.11.4", "slurm 23.11.1") is None
    assert version_rule("22.05.8-4+deb12u3", "slurm-wlm 22.05.8") is None


def test_the_version_rule_accepts_a_newer_controller_within_its_window() -> None:
    assert version_rule("slurm 23.11.4", "slurm 23.02.7") is None
    assert version_rule("slurm 23.11.4", "slurm 22.05.8") is None  # two releases back
    assert version_rule("slurm 24.05.1", "slurm 23.02.7") is None  # 24.05: three back
    assert version_rule("slurm 26.05.0", "slurm 25.11.2") is None  # placed by its number


def test_the_version_rule_refuses_a_node_newer_than_the_controller() -> None:
    line = version_rule("slurm 22.05.8", "slurm 23.11.4")
    assert line is not None
    assert "\n" not in line
    assert "23.11" in line
    assert "22.05" in line
    assert "upgrade the hub" in line
    assert "pin this worker" in line


def test_the_version_rule_refuses_a_node_too_old() -> None:
    line = version_rule("slurm 23.11.4", "slurm 21.08.8")  # three back: before 24.05's window
    assert line is not None
    assert "too old" in line
    assert "21.08" in line
    assert "23.11" in line
    assert version_rule("slurm 24.11.0", "slurm 23.02.7") is None
    assert version_rule("slurm 24.11.0", "slurm 22.05.8") is not None
    assert (
        version_rule("slurm 24.11.0", "no version")
        == "cannot tell the Slurm release from 'no version'"
    )


# --- the rendered files ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundles(farm: Farm) -> dict[Role, Bundle]:
    return {
        Role.HUB: open_bundle(farm.root / "hub.keybundle.age", PASSPHRASE),
        Role.WORKER: open_bundle(farm.root / "workers.keybundle.age", PASSPHRASE),
    }


def rendered(bundle: Bundle, chosen: str = "") -> dict[str, HostFile]:
    model = host_model(bundle, host=chosen, hub_address="hub.example.net", distro=DEBIAN)
    return {f.path: f for f in host_files(model)}


def conf_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_one_slurm_conf_from_the_pool_on_every_host(bundles: dict[Role, Bundle]) -> None:
    hub = rendered(bundles[Role.HUB])
    worker = rendered(bundles[Role.WORKER], WORKERS[0])
    conf = hub[slurm.SLURM_CONF].text
    assert worker[slurm.SLURM_CONF].text == conf
    lines = conf_lines(conf)
    hub_ip = host_model(bundles[Role.HUB], hub_address="x", distro=DEBIAN).overlay_ip
    assert f"SlurmctldHost=hub({hub_ip})" in lines
    pool = {p.name: str(p.ip) for p in bundles[Role.HUB].peers_of(Role.WORKER)}
    nodes = dict(re.findall(r"^NodeName=(\S+) NodeAddr=(\S+) CPUs=1 State=UNKNOWN$", conf, re.M))
    assert nodes == pool
    assert len(pool) == 5
    for setting in (
        "AuthType=auth/munge",
        "JobRequeue=1",
        "ReturnToService=2",
        "SlurmdTimeout=15",
        "AuthInfo=cred_expire=10",
        "SchedulerParameters=sched_interval=5",
        "TreeWidth=65533",
        "DisableRootJobs=YES",
        "SlurmctldPort=6817",
        "SlurmdPort=6818",
        "PartitionName=render Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
    ):
        assert setting in lines
    key = hub[slurm.MUNGE_KEY]
    assert key == worker[slurm.MUNGE_KEY]
    assert (key.mode, key.owner, key.group, key.secret) == (0o400, "munge", "munge", True)
    assert len(key.content.strip()) >= 32
    assert slurm.NODE_START not in hub
    assert slurm.NODE_START in worker


def test_the_units_bind_to_nebula(bundles: dict[Role, Bundle]) -> None:
    hub = rendered(bundles[Role.HUB])[f"/etc/systemd/system/{slurm.CONTROLLER_UNIT}"].text
    node = rendered(bundles[Role.WORKER], WORKERS[0])[f"/etc/systemd/system/{slurm.NODE_UNIT}"]
    for unit in (hub, node.text):
        assert "BindsTo=farmhand-nebula.service" in unit
    assert "unshare --uts" in hub
    assert "hostname hub" in hub
    assert f"ExecStart={slurm.NODE_START}" in node.text


# --- a real cluster --------------------------------------------------------------------------


def need(*binaries: str) -> None:
    missing = [b for b in binaries if not shutil.which(b)]
    if missing:
        pytest.skip(f"not installed: {' '.join(missing)} (tests/run installs slurm and munge)")
    if os.geteuid() != 0:
        pytest.skip("network and mount namespaces need root")


def run(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=timeout)


@dataclass
class Cluster:
    """The namespaces, daemons and folders of one test cluster."""

    top: Path
    prefix: str
    conf: str
    daemons: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)

    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def wrapped(self, name: str, command: str, *, user: str = "") -> list[str]:
        """``command`` in node ``name``'s network namespace, with its own /run (munge's socket
        in it), /var/lib/slurm and the rendered /etc/slurm; as ``user`` if given."""
        home = self.top / name
        as_user = f"setpriv --reuid={user} --regid=nogroup --clear-groups " if user else ""
        script = (
            "set -e; mount -t tmpfs tmpfs /run; mkdir /run/munge; "
            f"mount --bind {self.top}/munge-run /run/munge; "
            f"mount --bind {home}/lib /var/lib/slurm; "
            f"mount --bind {self.top}/etc /etc/slurm; "
            f"exec {as_user}{command}"
        )
        # nsenter, not `ip netns exec`: that mounts a sysfs of its own, without the cgroups.
        return ["nsenter", f"--net=/run/netns/{self.ns(name)}", "unshare", "-m",
                "--propagation", "private", "sh", "-c", script]  # fmt: skip

    def start(self, name: str, command: str) -> None:
        log = open(self.top / f"{name}.log", "ab")  # noqa: SIM115 - the daemon keeps it
        self.daemons[name] = subprocess.Popen(
            self.wrapped(name, command), stdout=log, stderr=subprocess.STDOUT
        )

    def client(self, command: str, *, user: str = "nobody", check: bool = True) -> str:
        result = subprocess.run(
            self.wrapped("hub", command, user=user),
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"{command}: {result.stderr}{result.stdout}\n{self.logs()}")
        return result.stdout

    def kill_node(self, name: str) -> None:
        """Every process of the node (slurmd, its steps, the task): the machine is gone."""
        pids = run("ip", "netns", "pids", self.ns(name)).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        self.daemons.pop(name).wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.top.glob("*.log")
        )


def wait_for(what: str, check: Callable[[], bool], cluster: Cluster, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}\n{cluster.logs()}")


def _network(cluster: Cluster, addresses: dict[str, str], prefix_len: int) -> None:
    bridge = cluster.ns("br")
    run("ip", "netns", "add", bridge)
    cluster.namespaces.append(bridge)
    run("ip", "-n", bridge, "link", "add", "br0", "type", "bridge")
    run("ip", "-n", bridge, "link", "set", "br0", "up")
    for index, (name, address) in enumerate(addresses.items()):
        ns = cluster.ns(name)
        run("ip", "netns", "add", ns)
        cluster.namespaces.append(ns)
        # Made in the bridge's namespace, its peer straight into the node's: never in ours.
        port = f"p{index}"
        run("ip", "-n", bridge, "link", "add", port, "type", "veth", "peer", "name", "eth0",
            "netns", ns)  # fmt: skip
        run("ip", "-n", bridge, "link", "set", port, "master", "br0", "up")
        run("ip", "-n", ns, "addr", "add", f"{address}/{prefix_len}", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")


@pytest.fixture(scope="module")
def cluster(bundles: dict[Role, Bundle]) -> Iterator[Cluster]:
    need("slurmctld", "slurmd", "munged", "sbatch", "ip", "unshare", "setpriv")
    hub = rendered(bundles[Role.HUB])
    workers = {name: rendered(bundles[Role.WORKER], name) for name in WORKERS}
    top = Path(tempfile.mkdtemp(prefix="fh-slurm-", dir="/tmp"))
    top.chmod(0o755)  # the job user (nobody) writes its output under it
    cluster = Cluster(top, f"fhsl{os.getpid() % 100000}", hub[slurm.SLURM_CONF].text)
    munge: subprocess.Popen[bytes] | None = None
    try:
        model = host_model(bundles[Role.HUB], hub_address="x", distro=DEBIAN)
        addresses = {"hub": str(model.overlay_ip)}
        addresses |= {
            name: str(p.ip) for p in bundles[Role.HUB].peers_of(Role.WORKER) for name in WORKERS
            if p.name == name
        }  # fmt: skip
        _network(cluster, addresses, model.plan.network.prefixlen)
        (top / "etc").mkdir()
        (top / "etc/slurm.conf").write_text(cluster.conf)
        # What the worker's deploy writes for this machine's cgroups (v1 or hybrid here).
        fs_type = run("stat", "-fc", "%T", "/sys/fs/cgroup").stdout
        (top / "etc/cgroup.conf").write_bytes(slurm.cgroup_conf(fs_type))
        # munge: the farm's rendered key, munge's own and 0400, one munged for every node.
        for folder in ("munge-run", "munge-lib"):
            (top / folder).mkdir(mode=0o755)
            shutil.chown(top / folder, "munge", "munge")
        key = top / "munge-lib/munge.key"
        key.write_bytes(hub[slurm.MUNGE_KEY].content)
        assert workers[WORKERS[0]][slurm.MUNGE_KEY].content == key.read_bytes()
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
        munge = subprocess.Popen(
            ["setpriv", "--reuid=munge", "--regid=munge", "--clear-groups", "munged", "-F",
             f"--socket={top}/munge-run/munge.socket.2", f"--key-file={key}",
             f"--pid-file={top}/munge-run/munged.pid", f"--log-file={top}/munge-lib/munged.log",
             f"--seed-file={top}/munge-lib/munged.seed"],
        )  # fmt: skip
        for name in addresses:
            (top / name / "lib").mkdir(parents=True)
        for name in WORKERS:  # as the worker's deploy makes it
            (top / name / "lib/slurmd").mkdir()
        state = top / "hub/lib/slurmctld"
        state.mkdir()
        shutil.chown(state, "slurm", "slurm")
        state.chmod(0o700)
        (top / "out").mkdir(mode=0o777)
        (top / "out").chmod(0o1777)
        # slurmctld exactly as the hub's unit starts it.
        unit = hub[f"/etc/systemd/system/{slurm.CONTROLLER_UNIT}"].text
        exec_start = re.search(r"^ExecStart=(.+)$", unit, re.M)
        assert exec_start
        cluster.start("hub", exec_start.group(1))
        # slurmd through the rendered start script, which reads the worker's lease state.
        for name in WORKERS:
            script = top / name / "slurmd-start"
            script.write_bytes(workers[name][slurm.NODE_START].content)
            script.chmod(0o755)
            lease = top / name / "lease.json"
            lease.write_text(json.dumps({"name": name, "ip": addresses[name]}))
            cluster.start(name, f"env FARMHAND_LEASE_STATE={lease} {script}")
        yield cluster
    finally:
        for process in cluster.daemons.values():
            process.kill()
            process.wait(timeout=10)
        for ns in cluster.namespaces:
            for pid in run("ip", "netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            run("ip", "netns", "del", ns, check=False)
        if munge is not None:
            munge.terminate()
            munge.wait(timeout=10)
        shutil.rmtree(top, ignore_errors=True)


def node_states(cluster: Cluster) -> dict[str, str]:
    out = cluster.client("sinfo -h -N -o '%N %t'", check=False)
    return dict(line.split() for line in out.splitlines() if len(line.split()) == 2)


def job_gone(cluster: Cluster, job: str) -> bool:
    return not cluster.client(f"squeue -h -j {job} -o %i", check=False).strip()


JOB = """#!/bin/sh
echo "start $SLURM_ARRAY_TASK_ID $SLURMD_NODENAME $(id -un)"
sleep {sleep}
echo "done $SLURM_ARRAY_TASK_ID $SLURMD_NODENAME"
"""


def submit(cluster: Cluster, name: str, tasks: str, sleep: int) -> str:
    script = cluster.top / f"{name}.sh"
    script.write_text(JOB.format(sleep=sleep))
    script.chmod(0o755)
    out = cluster.top / "out" / f"{name}_%a.out"
    return cluster.client(f"sbatch --parsable --array={tasks} --output={out} {script}").strip()


def outputs(cluster: Cluster, name: str) -> dict[int, str]:
    found = {}
    for path in (cluster.top / "out").glob(f"{name}_*.out"):
        found[int(path.stem.rsplit("_", 1)[1])] = path.read_text()
    return found


@pytest.mark.slow
def test_both_nodes_register_and_an_array_of_four_runs_across_them(cluster: Cluster) -> None:
    wait_for(
        "both workers idle in sinfo",
        lambda: all(node_states(cluster).get(n) == "idle" for n in WORKERS),
        cluster,
        90,
    )
    # The pool's other certificates are nodes too, down until a worker claims them.
    assert len(node_states(cluster)) == 5
    # Root's jobs are refused (DisableRootJobs), nobody's run.
    refused = subprocess.run(
        cluster.wrapped("hub", f"sbatch --wrap true --output={cluster.top}/out/root.out"),
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    job = submit(cluster, "array", "0-3", 3)
    wait_for("the array to finish", lambda: job_gone(cluster, job), cluster, 120)
    done = outputs(cluster, "array")
    assert sorted(done) == [0, 1, 2, 3], done
    nodes = {line.split()[2] for text in done.values() for line in text.splitlines()}
    assert nodes == set(WORKERS), done
    for task, text in done.items():
        assert f"start {task} " in text
        assert text.split()[3] == "nobody"
        assert f"done {task} " in text


@pytest.mark.slow
def test_a_task_on_a_node_that_dies_is_requeued_and_completes_on_the_other(
    cluster: Cluster,
) -> None:
    wait_for(
        "both workers idle",
        lambda: all(node_states(cluster).get(n) == "idle" for n in WORKERS),
        cluster,
        90,
    )
    job = submit(cluster, "requeue", "0-1", 25)

    def running_on_both() -> bool:
        out = cluster.client(f"squeue -h -j {job} -t R -o '%N'", check=False)
        return set(out.split()) == set(WORKERS)

    wait_for("a task on each node", running_on_both, cluster, 60)
    cluster.kill_node(WORKERS[0])
    killed = time.monotonic()
    # SlurmdTimeout=15: the node goes down, its task goes back in the queue (JobRequeue=1)
    # and Slurm starts it again once its credential expired (cred_expire=10).
    wait_for("the array to finish", lambda: job_gone(cluster, job), cluster, 300)
    print(f"requeued task done {time.monotonic() - killed:.0f} s after the kill (runs 25 s)")
    done = outputs(cluster, "requeue")
    assert sorted(done) == [0, 1], done
    for text in done.values():
        assert text.splitlines()[-1].startswith("done"), done
        assert text.splitlines()[-1].split()[2] == WORKERS[1], done
    assert node_states(cluster)[WORKERS[0]].startswith("down"), node_states(cluster)
