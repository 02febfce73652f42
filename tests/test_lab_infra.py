"""The lab's infrastructure: image, underlay namespaces, nspawn hosts, up/status/down.

The ``lab`` tests boot a real lab (hub, two workers, a boss) with the prefix ``fhtest`` and a
state folder of their own, so they never touch a lab the user has up; the base image is the
shared cache (built once, 1-2 minutes). They need root, systemd-nspawn and debootstrap. The
other tests here check planning and preflight logic and run anywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

import support.lab
from farmhand.errors import LabError
from farmhand.lab import OFFLINE_PACKAGES, ImageSpec, LabFarm, NatRouter, Underlay
from farmhand.lab import system as lab_system
from farmhand.lab.image import MARKER, prune_images
from farmhand.lab.system import (
    mounts_under,
    pid_alive,
    process_argv,
)

PREFIX = "fhtest"


needs_lab = support.lab.skip_without_lab()


# --- planning and preflight (no root needed) ----------------------------------------------


def test_plan_names_roles_and_addresses() -> None:
    plan = LabFarm.plan(3, 1, ["worker0002"])
    assert [(h.name, h.role, str(h.address)) for h in plan] == [
        ("hub", "hub", "198.18.87.10"),
        ("worker0001", "worker", "198.18.87.101"),
        ("worker0002", "worker", "198.18.87.102"),
        ("worker0003", "worker", "198.18.87.103"),
        ("boss1", "boss", "198.18.87.20"),
    ]
    assert [h.nat_lan for h in plan] == [None, None, 0, None, None]
    assert all(h.address in IPv4Network("198.18.87.0/24") for h in plan)


@pytest.mark.parametrize(
    ("workers", "bosses", "nat", "message"),
    [
        (-1, 1, [], "0 to 150 workers"),
        (151, 1, [], "0 to 150 workers"),
        (1, 10, [], "0 to 9 bosses"),
        (1, 1, ["hub"], "hub cannot sit behind NAT"),
        (1, 1, ["worker0009"], "no such host"),
    ],
)
def test_plan_rejects(workers: int, bosses: int, nat: list[str], message: str) -> None:
    with pytest.raises(LabError, match=message):
        LabFarm.plan(workers, bosses, nat)


def test_image_name_follows_the_package_list() -> None:
    spec = ImageSpec()
    assert spec.name.startswith("bookworm-")
    assert spec.with_offline() == spec
    assert spec.with_offline(*OFFLINE_PACKAGES) == spec
    grown = spec.with_offline("tmux")
    assert grown.offline_packages[-1] == "tmux"
    assert grown.name != spec.name
    reordered = ImageSpec(offline_packages=tuple(reversed(OFFLINE_PACKAGES)))
    assert reordered.name == spec.name


def test_prune_keeps_the_current_image_and_images_in_use(tmp_path: Path) -> None:
    images = tmp_path / "images"
    current = images / ImageSpec().name
    old = images / "bookworm-000000000000"
    unfinished = images / "bookworm-111111111111"
    busy = images / "bookworm-222222222222"
    for folder in (current, old, busy):
        (folder / "etc").mkdir(parents=True)
        (folder / MARKER).write_text("{}")
    (unfinished / "etc").mkdir(parents=True)
    (images / "bookworm-000000000000.build.log").write_text("log")
    other_suite = images / "trixie-333333333333"
    other_suite.mkdir()
    # A process whose command line names the image, as nspawn's --overlay=IMAGE:UPPER:/ does.
    user = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", f"--overlay={busy.resolve()}:/x:/"]
    )
    try:
        deadline = time.monotonic() + 10
        while b"--overlay" not in Path(f"/proc/{user.pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline, "the stand-in container never started"
            time.sleep(0.01)
        removed = prune_images(images_dir=images)
    finally:
        user.kill()
        user.wait()
    assert sorted(p.name for p in removed) == [
        "bookworm-000000000000",
        "bookworm-000000000000.build.log",
    ]
    assert all(p.is_dir() for p in (current, busy, unfinished, other_suite))
    assert not old.exists()


def test_nat_ruleset_allows_udp_only_with_the_hub() -> None:
    underlay = Underlay("fhunit")
    nat = NatRouter(
        "worker0002", "fhunit-nat-worker0002", IPv4Address("198.18.87.102"),
        IPv4Network("198.18.88.0/24"),
    )  # fmt: skip
    rules = underlay._nat_ruleset(nat, [IPv4Address("198.18.87.10")])
    assert "masquerade" in rules
    assert "dnat to 198.18.88.2" in rules
    assert rules.count("ip saddr != { 198.18.87.10 }") == 1
    assert rules.count("ip daddr != { 198.18.87.10 }") == 1


@pytest.mark.parametrize("name", ["Hub", "net", "desk", "nat-x", "a" * 14, "1st", "x_y"])
def test_host_names_that_cannot_be_interfaces_are_refused(name: str) -> None:
    with pytest.raises(LabError, match="lab host name"):
        Underlay().host_namespace(name)


def test_preflight_says_root_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab_system.sys, "platform", "linux")
    monkeypatch.setattr(lab_system.os, "geteuid", lambda: 1000)
    with pytest.raises(LabError) as info:
        lab_system.require_host(["ip"])
    assert "needs root" in str(info.value)
    assert "\n" not in str(info.value)


def test_preflight_names_missing_tools_and_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab_system.sys, "platform", "linux")
    monkeypatch.setattr(lab_system.os, "geteuid", lambda: 0)
    monkeypatch.setattr(lab_system.shutil, "which", lambda _tool, path=None: None)
    with pytest.raises(LabError, match=r"systemd-nspawn.*systemd-container") as info:
        lab_system.require_host(["systemd-nspawn", "debootstrap"])
    assert "debootstrap" in str(info.value)


def test_preflight_refuses_other_systems(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab_system.sys, "platform", "darwin")
    with pytest.raises(LabError, match="needs Linux"):
        lab_system.require_host()


# --- the real lab -----------------------------------------------------------------------


def _root_network() -> tuple[list[object], list[object], list[str]]:
    """The host's own addresses, routes (all tables) and interface names."""
    addrs = json.loads(subprocess.check_output(["ip", "-j", "addr"], text=True))
    routes = json.loads(subprocess.check_output(["ip", "-j", "route", "show", "table", "all"]))
    links = sorted(link["ifname"] for link in addrs)
    return [(a["ifname"], a.get("addr_info")) for a in addrs], routes, links


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabFarm]:
    support.lab.require_lab()
    before = _root_network()
    farm = LabFarm(tmp_path_factory.mktemp("lab-state"), prefix=PREFIX)
    try:
        farm.up(workers=2)
        farm.root_network_before = before  # type: ignore[attr-defined]
        yield farm
    finally:
        farm.down()


def _ssh(lab: LabFarm, host: str, *argv: str) -> str:
    result = lab.exec(host, argv)
    assert result.returncode == 0, f"{host}: {argv}: {result.stderr}"
    return result.stdout.strip()


_LISTEN = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 5555)); s.settimeout(2)
print("ready", flush=True)
try:
    while True:
        data, addr = s.recvfrom(100); print(data.decode(), addr[0], flush=True)
except socket.timeout:
    pass
"""
_SEND = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(3):
    s.sendto(sys.argv[2].encode(), (sys.argv[1], 5555)); time.sleep(0.1)
"""


def _udp_arrives(lab: LabFarm, sender: str, receiver: str, address: IPv4Address) -> list[str]:
    """Send UDP from ``sender`` to ``address`` while ``receiver`` listens.

    Returns the distinct "message source-address" lines that arrived.
    """
    listen = subprocess.Popen(
        lab.host(receiver).ssh_argv(["python3", "-c", _LISTEN]),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert listen.stdout is not None
        assert listen.stdout.readline().strip() == "ready"
        _ssh(lab, sender, "python3", "-c", _SEND, str(address), f"from-{sender}")
        out, _ = listen.communicate(timeout=30)
    finally:
        listen.kill()
        listen.wait()
    return sorted({line for line in out.splitlines() if line.strip()})


@pytest.mark.lab
@needs_lab
def test_every_host_answers_ssh_from_the_desk_with_its_name(lab: LabFarm) -> None:
    names = [r.name for r in lab.records()]
    assert names == ["hub", "worker0001", "worker0002", "boss1"]
    for status in lab.status():
        assert status.running, status
        assert status.ssh, status
    for name in names:
        assert _ssh(lab, name, "hostname") == name
        assert _ssh(lab, name, "systemctl", "is-active", "ssh") == "active"
        assert f"inet {lab.address(name)}/24" in _ssh(lab, name, "ip", "-4", "addr", "show", "eth0")
    # The desk reaches them directly too, as pyinfra (paramiko) will.
    connect = f"import socket; socket.create_connection(('{lab.address('hub')}', 22), 5).close()"
    result = lab.run_in_desk([sys.executable, "-c", connect], timeout=10)
    assert result.returncode == 0, result.stderr


@pytest.mark.lab
@needs_lab
def test_clones_have_their_own_machine_id_and_host_keys(lab: LabFarm) -> None:
    names = [r.name for r in lab.records()]
    ids = {_ssh(lab, n, "cat", "/etc/machine-id") for n in names}
    keys = {_ssh(lab, n, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").split()[1] for n in names}
    assert len(ids) == len(keys) == len(names)
    assert all(len(i) == 32 for i in ids)


@pytest.mark.lab
@needs_lab
def test_inventory_gives_pyinfra_what_it_needs(lab: LabFarm) -> None:
    inventory = lab.inventory_hosts()
    assert [(n, a) for n, a, _ in inventory] == [(r.name, str(r.address)) for r in lab.records()]
    for _name, _address, data in inventory:
        assert data["ssh_user"] == "root"
        assert data["ssh_known_hosts_file"] == "/dev/null"
        assert data["ssh_strict_host_key_checking"] == "off"
        assert Path(data["ssh_key"]) == lab.key_path
    assert lab.key_path.stat().st_mode & 0o777 == 0o600


@pytest.mark.lab
@needs_lab
def test_the_host_network_namespace_is_untouched(lab: LabFarm) -> None:
    before = lab.root_network_before  # type: ignore[attr-defined]
    assert _root_network() == before
    addrs = json.loads(subprocess.check_output(["ip", "-j", "-4", "addr"], text=True))
    for link in addrs:
        for info in link.get("addr_info", []):
            assert IPv4Address(info["local"]) not in IPv4Network("198.18.0.0/15"), link


@pytest.mark.lab
@needs_lab
def test_nat_router_forces_worker_udp_through_the_hub(lab: LabFarm) -> None:
    w1, w2, hub = (lab.address(n) for n in ("worker0001", "worker0002", "hub"))
    # Control: on the flat underlay, worker-to-worker UDP arrives.
    assert _udp_arrives(lab, "worker0002", "worker0001", w1) == [f"from-worker0002 {w2}"]

    router = lab.put_behind_nat("worker0002")
    assert router.wan_address == w2
    assert _ssh(lab, "worker0002", "hostname") == "worker0002"  # ssh still via port forward
    assert f"inet {router.host_address}/24" in _ssh(lab, "worker0002", "ip", "-4", "addr")
    # Masqueraded: the hub sees the router's address, and UDP to and from the hub passes.
    assert _udp_arrives(lab, "worker0002", "hub", hub) == [f"from-worker0002 {w2}"]
    # Direct UDP between the NATed worker and another worker is dropped, both ways.
    assert _udp_arrives(lab, "worker0002", "worker0001", w1) == []
    assert _udp_arrives(lab, "worker0001", "worker0002", w2) == []
    # Other traffic still flows (it is a NAT, not a wall).
    _ssh(lab, "worker0002", "ping", "-c1", "-W2", str(w1))
    assert lab.put_behind_nat("worker0002") == router  # idempotent
    assert _udp_arrives(lab, "worker0002", "worker0001", w1) == []


@pytest.mark.lab
@needs_lab
def test_apt_installs_offline_from_the_seeded_cache(lab: LabFarm) -> None:
    result = lab.exec(
        "worker0001", ["apt-get", "install", "-y", "--no-download", "nebula", "samba"]
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert _ssh(lab, "worker0001", "nebula", "-version").startswith("Version: ")
    # Discard: the worker boots again as a fresh clone of the image.
    lab.reset("worker0001")
    assert lab.exec("worker0001", ["sh", "-c", "command -v nebula"]).returncode != 0
    assert _ssh(lab, "worker0001", "hostname") == "worker0001"


@pytest.mark.lab
@needs_lab
def test_hub_reboot_comes_back_with_its_disk(lab: LabFarm) -> None:
    machine_id = _ssh(lab, "hub", "cat", "/etc/machine-id")
    _ssh(lab, "hub", "sh", "-c", "echo kept > /root/marker; echo lost > /run/marker")
    old_pid = lab.record("hub").pid
    lab.reboot("hub")
    assert lab.record("hub").pid != old_pid
    assert _ssh(lab, "hub", "cat", "/root/marker") == "kept"
    assert lab.exec("hub", ["test", "-e", "/run/marker"]).returncode != 0
    assert _ssh(lab, "hub", "cat", "/etc/machine-id") == machine_id
    assert all(s.ssh for s in lab.status())


@pytest.mark.lab
@needs_lab
def test_a_host_that_reboots_itself_boots_again(lab: LabFarm) -> None:
    """`systemctl reboot` inside a container (pyinfra's server.reboot) must not kill the host."""
    pid = lab.record("boss1").pid
    _ssh(lab, "boss1", "sh", "-c", "echo lost > /run/marker")
    lab.exec("boss1", ["systemctl", "reboot"])  # the connection may drop: exit code varies
    deadline = time.monotonic() + 90
    while True:
        probe = lab.exec("boss1", ["test", "-e", "/run/marker"])
        if probe.returncode == 1:  # sshd answers and /run is fresh: it booted again
            break
        assert time.monotonic() < deadline, "boss1 did not come back after rebooting itself"
        time.sleep(1)
    assert lab.record("boss1").pid == pid  # same supervisor, new boot
    assert _ssh(lab, "boss1", "hostname") == "boss1"


@pytest.mark.lab
@needs_lab
def test_down_leaves_nothing_behind(lab: LabFarm) -> None:
    pids = [r.pid for r in lab.records() if r.pid]
    assert len(pids) == 4
    (lab.state_dir / "keys").mkdir()  # what provisioning keeps in the state folder goes too
    (lab.state_dir / "keys" / "farm.toml").write_text("x")
    lab.down()
    assert sorted(p.name for p in lab.state_dir.iterdir()) == [".lock", "ssh"]
    assert not [n for n in os.listdir("/run/netns") if n.startswith(f"{PREFIX}-")]
    assert not [pid for pid in pids if pid_alive(pid)]
    strays = [
        p.name
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and any(f"/run/netns/{PREFIX}-" in a for a in process_argv(int(p.name)))
    ]
    assert strays == []
    assert not [p for p in Path("/sys/fs/cgroup").glob(f"*/farmhand-{PREFIX}")]
    assert not (lab.state_dir / "hosts").exists()
    assert not lab.exists()
    assert mounts_under(lab.state_dir) == []
    assert lab.status() == []
    lab.down()  # idempotent


def _lab_traces(prefix: str) -> list[str]:
    traces = [f"netns {n}" for n in os.listdir("/run/netns") if n.startswith(f"{prefix}-")]
    for proc in Path("/proc").iterdir():
        if not (proc.name.isdigit() and pid_alive(int(proc.name))):
            continue
        if any(f"/run/netns/{prefix}-" in a for a in process_argv(int(proc.name))):
            traces.append(f"process {proc.name}")
    traces += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob(f"*/farmhand-{prefix}")]
    return traces


@pytest.mark.lab
@needs_lab
def test_down_cleans_up_a_failed_up_even_without_its_state(tmp_path: Path) -> None:
    farm = LabFarm(tmp_path / "state", prefix="fhfail")
    try:
        with pytest.raises(LabError, match="did not answer ssh"):
            farm.up(workers=1, bosses=0, boot_timeout=0)
        assert farm.exists()
        assert _lab_traces("fhfail")
        # Lose the record too: down must find everything by name.
        farm.state_file.unlink()
        farm = LabFarm(tmp_path / "state", prefix="fhfail")
        farm.down()
        assert _lab_traces("fhfail") == []
        assert not (farm.state_dir / "hosts").exists()
    finally:
        LabFarm(tmp_path / "state", prefix="fhfail").down()
