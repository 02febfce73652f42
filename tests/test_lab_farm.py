"""End to end: the farm deployed for real on the container lab (issue 3, "Tests that must exist").

ONE lab for the whole module (prefix ``fhe2e``, a state folder of its own, so it never touches
another lab on this machine): a hub, worker0001, worker0002 behind a NAT router that drops all
UDP between it and anything but the hub (so the boss reaches it only through the hub's Nebula
relay), and boss1. It is provisioned once with the real keygen and the real pyinfra deploys
(``farmhand.lab.provision``), then every test checks an outcome from the hosts themselves, over
ssh from the desk namespace; host state is read with testinfra through the same ssh.

The tests run in file order and the last ones change the farm: a deploy interrupted on a wiped
worker, a hub reboot, then the revocation of worker0001 (always last). Nothing waits a fixed
time for correctness: every wait is a poll with a deadline.

Needs root, systemd-nspawn, debootstrap and nftables; the base image is the shared cache.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import testinfra
from testinfra.backend.base import CommandResult
from testinfra.backend.ssh import SshBackend

import support.lab
from farmhand.deploy.runner import DeployReport, Event, run_deploy
from farmhand.keystore import pki
from farmhand.keystore.bundle import bundle_filename
from farmhand.keystore.plan import Role
from farmhand.keystore.store import KeyStore
from farmhand.lab import LabFarm
from farmhand.lab import provision as prov
from farmhand.lab.system import process_argv
from farmhand.model.host import SMB_PORT, SSH_PORT
from farmhand.model.paths import NEBULA_CONFIG
from farmhand.nebula import pem
from farmhand.queue import slurm
from support.cli import wait_until

PREFIX = "fhe2e"
HUB, W1, W2, BOSS = "hub", "worker0001", "worker0002", "boss1"
HOSTS = (HUB, W1, W2, BOSS)
NAT_TABLE = "fhlab_nat"  # the NAT router's nftables table (farmhand.lab.net)
UDP_PROBE_PORT = 5555


pytestmark = support.lab.MARKS


# --- the lab ------------------------------------------------------------------------------


class _DeskSsh(SshBackend):  # type: ignore[misc]
    """testinfra's ssh backend, run inside the lab's desk namespace (where the hosts are)."""

    def __init__(self, farm: LabFarm, name: str) -> None:
        super().__init__(
            f"root@{farm.address(name)}",
            ssh_identity_file=str(farm.key_path),
            controlpersist=0,  # no master connection outliving the test
            ssh_extra_args=(
                "-F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                "-o GlobalKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes"
            ),
        )
        self.netns = farm.desk_namespace

    def run_local(self, command: str, *args: str) -> CommandResult:
        return super().run_local("ip netns exec %s " + command, self.netns, *args)


@dataclass
class Lab:
    """The module's farm and everything the tests learn about it along the way."""

    farm: LabFarm
    passphrase: str
    overlay: dict[str, str]
    reports: list[DeployReport] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    _infra: dict[str, Any] = field(default_factory=dict)

    def infra(self, name: str) -> Any:
        """A testinfra host for lab host ``name``."""
        if name not in self._infra:
            self._infra[name] = testinfra.host.Host(_DeskSsh(self.farm, name))
        return self._infra[name]

    def sh(self, name: str, script: str, *, input: str | None = None) -> str:
        """Run ``script`` with sh on ``name``; it must succeed. Returns stripped stdout."""
        return support.lab.sh(self.farm, name, script, input=input)

    def deploy(
        self,
        role: Role,
        names: Sequence[str],
        *,
        on_event: Callable[[Event], None] | None = None,
    ) -> DeployReport:
        """The real deploy of ``role`` on ``names`` from the desk; events and report are kept."""
        bundle = bundle_filename(role, names[0] if role is Role.BOSS else "")

        def record(event: Event) -> None:
            self.events.append(event)
            if on_event is not None:
                on_event(event)

        report = run_deploy(
            role,
            prov.store_dir(self.farm) / bundle,
            self.passphrase,
            prov.targets(self.farm, list(names)),
            data=prov.deploy_data(self.farm),  # with Slurm's queue, the lab's default
            netns=self.farm.desk_namespace,
            on_event=record,
        )
        self.reports.append(report)
        return report

    def deploy_roles(self, plan: Sequence[tuple[Role, Sequence[str]]]) -> list[DeployReport]:
        """Several deploys at once (one engine each), in the order of ``plan``."""
        with ThreadPoolExecutor(max_workers=len(plan)) as pool:
            futures = [pool.submit(self.deploy, role, names) for role, names in plan]
            return [f.result() for f in futures]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    support.lab.require_lab()
    farm = LabFarm(tmp_path_factory.mktemp("e2e-state"), prefix=PREFIX, progress=print)
    try:
        farm.up(workers=2, bosses=1, behind_nat=[W2])
        reports = prov.provision(farm, print)
        overlay = {name: prov.overlay_ip(farm, name) for name in HOSTS}
        assert all(r.ok for r in reports.values()), {
            k: r.failure_message() for k, r in reports.items()
        }
        yield Lab(farm, prov.lab_passphrase(farm), overlay, list(reports.values()))
    finally:
        farm.down()


# --- probes ------------------------------------------------------------------------------


def pings(lab: Lab, source: str, address: str) -> bool:
    """One ICMP echo from ``source`` to ``address`` answered within a second."""
    return lab.farm.exec(source, ["ping", "-c", "1", "-W", "1", address]).returncode == 0


def reaches(lab: Lab, source: str, target: str, within: float = 30) -> float:
    """``source`` pings ``target``'s overlay address within ``within`` seconds."""
    return wait_until(
        f"{source} pings {target} over the overlay ({lab.overlay[target]})",
        lambda: pings(lab, source, lab.overlay[target]),
        within,
    )


def tcp_opens(lab: Lab, probes: Sequence[tuple[str, str, int]]) -> dict[tuple[str, str, int], bool]:
    """(source, address, port) -> whether a TCP connection opened, probed in parallel."""
    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        results = pool.map(lambda p: prov.tcp_open(lab.farm, *p), probes)
        return dict(zip(probes, results, strict=True))


_UDP_LISTEN = f"""
import select, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", {UDP_PROBE_PORT}))
print("ready", flush=True)
watching = [s, sys.stdin]
while True:  # until stdin closes (the sender is done), then drain what is still in flight
    ready, _, _ = select.select(watching, [], [], None if sys.stdin in watching else 0.5)
    if not ready:
        break
    if s in ready:
        data, addr = s.recvfrom(100)
        print(data.decode(), addr[0], flush=True)
    if sys.stdin in ready and not sys.stdin.readline():
        watching = [s]
"""
_UDP_SEND = f"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(3):
    s.sendto(sys.argv[2].encode(), (sys.argv[1], {UDP_PROBE_PORT})); time.sleep(0.05)
"""


def udp_arrives(lab: Lab, sender: str, receiver: str, address: str) -> list[str]:
    """Datagrams ``sender`` sends to ``address`` (on the underlay) that ``receiver`` gets."""
    listen = subprocess.Popen(
        lab.farm.host(receiver).ssh_argv(["python3", "-c", _UDP_LISTEN]),
        stdin=subprocess.PIPE,  # closed by communicate() once the sender is done
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert listen.stdout is not None
        assert listen.stdout.readline().strip() == "ready"
        lab.farm.exec(sender, ["python3", "-c", _UDP_SEND, address, f"from-{sender}"], check=True)
        out, _ = listen.communicate(timeout=30)
    finally:
        listen.kill()
        listen.wait()
    return sorted({line for line in out.splitlines() if line.strip()})


def nat_drops(lab: Lab) -> int:
    """Packets worker0002's NAT router has dropped (its UDP rules' counters)."""
    namespace = lab.farm.underlay.router_namespace(W2)
    listing = subprocess.run(
        ["ip", "netns", "exec", namespace, "nft", "-j", "list", "table", "ip", NAT_TABLE],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    dropped = 0
    for item in json.loads(listing)["nftables"]:
        expr = item.get("rule", {}).get("expr", [])
        if any("drop" in e for e in expr):
            dropped += sum(e["counter"]["packets"] for e in expr if "counter" in e)
    return dropped


def udp_received(lab: Lab, name: str) -> int:
    """UDP datagrams host ``name`` has received so far (/proc/net/snmp InDatagrams)."""
    lines = [ln.split() for ln in lab.sh(name, "cat /proc/net/snmp").splitlines()]
    header, values = [ln for ln in lines if ln[0] == "Udp:"][:2]
    return int(values[header.index("InDatagrams")])


def listeners(lab: Lab, name: str) -> list[tuple[str, str, str, str]]:
    """(proto, address, port, process line) of every listening socket on ``name``."""
    found = []
    for line in lab.sh(name, "ss -Hlntup").splitlines():
        cols = line.split()
        address, _, port = cols[4].rpartition(":")
        found.append((cols[0], address.strip("[]"), port, " ".join(cols[6:])))
    return found


def journal(lab: Lab, name: str, unit: str = "farmhand-nebula", since: str = "") -> str:
    since_arg = f" --since '{since}'" if since else ""
    return lab.sh(name, f"journalctl --no-pager -o cat -u {unit}{since_arg}")


def pki_blocklist(config: str) -> list[str]:
    """``pki.blocklist`` of a Nebula config as farmhand writes it (two-space YAML, no parser)."""
    section, key, items = "", "", []
    for line in config.splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0:
            section, key = text.split(":")[0], ""
        elif indent == 2:
            key = text.split(":")[0]
        elif section == "pki" and key == "blocklist" and text.startswith("- "):
            items.append(text[2:].strip('"'))
    return items


def assert_no_changes(reports: Sequence[DeployReport]) -> None:
    for report in reports:
        assert report.ok, f"{report.role.value}: {report.failure_message()}"
        changed = {n: h.changed_ops for n, h in report.hosts.items() if h.changed}
        assert not changed, f"the {report.role.value} deploy changed something: {changed}"
        assert all(h.unchanged == h.operations > 0 for h in report.hosts.values()), report.hosts


# --- reachability and shares --------------------------------------------------------------


def test_boss_reaches_hub_and_every_worker_and_workers_reach_the_hub(lab: Lab) -> None:
    for target in (HUB, W1, W2):
        reaches(lab, BOSS, target)
    for worker in (W1, W2):
        reaches(lab, worker, HUB)
    for name in HOSTS:
        host = lab.infra(name)
        assert host.service("farmhand-nebula").is_running, name
        assert host.service("farmhand-nebula").is_enabled, name
        assert lab.overlay[name] in host.interface("nebula1").addresses, name


def test_a_file_the_boss_puts_on_the_share_is_read_by_a_worker(lab: Lab) -> None:
    token = os.urandom(12).hex()
    for name in (BOSS, W1):
        prov.ensure_smbclient(lab.farm, name)
    lab.sh(BOSS, f"echo {token} > /tmp/e2e-proof.txt")
    prov.smb(lab.farm, BOSS, "cd scenes; put /tmp/e2e-proof.txt e2e-proof.txt")
    prov.smb(lab.farm, W1, "cd scenes; get e2e-proof.txt /tmp/e2e-proof.txt")
    assert lab.sh(W1, "cat /tmp/e2e-proof.txt") == token
    # On the hub it sits in the share, owned by the farm user (same uid on every host).
    stored = lab.infra(HUB).file("/srv/farmhand/farm/scenes/e2e-proof.txt")
    assert stored.content_string.strip() == token
    assert (stored.user, stored.group) == ("farmhand", "farmhand")


def test_the_hub_underlay_answers_only_ssh_and_nebula(lab: Lab) -> None:
    hub = str(lab.farm.address(HUB))
    ports = (SSH_PORT, SMB_PORT, 139, 42042, slurm.CONTROLLER_PORT)
    with ThreadPoolExecutor(max_workers=len(ports)) as pool:
        answered = dict(
            zip(ports, pool.map(lambda p: prov.desk_tcp_open(lab.farm, hub, p), ports), strict=True)
        )
    closed = {SMB_PORT: False, 139: False, 42042: False, slurm.CONTROLLER_PORT: False}
    assert answered == {SSH_PORT: True, **closed}
    found = listeners(lab, HUB)
    # smbd listens on the overlay address only (not 0.0.0.0, not the underlay address).
    smbd = {(proto, addr, port) for proto, addr, port, proc in found if '"smbd"' in proc}
    assert smbd == {("tcp", lab.overlay[HUB], str(SMB_PORT))}, found
    # Everything listening beyond loopback and the overlay: SSH and Nebula, and slurmctld, which
    # cannot bind one address (README: a known limit), so the host firewall closes it on the
    # underlay (the desk's connection above was refused).
    public = {
        (proto, port)
        for proto, addr, port, proc in found
        if not addr.startswith("127.")
        and addr not in ("::1", lab.overlay[HUB])
        and not (port == str(slurm.CONTROLLER_PORT) and '"slurmctld"' in proc)
    }
    assert public == {("tcp", str(SSH_PORT)), ("udp", "42042")}, found
    assert lab.infra(HUB).service("farmhand-firewall").is_running


def test_nothing_on_the_farm_opens_a_connection_to_the_boss_or_between_workers(lab: Lab) -> None:
    boss, w1, w2 = lab.overlay[BOSS], lab.overlay[W1], lab.overlay[W2]
    # ICMP passes everywhere (so the tunnels are up); the refusals below are Nebula's firewall.
    for source in (HUB, W1, W2):
        reaches(lab, source, BOSS)
    for source, target in ((W1, W2), (W2, W1), (BOSS, W1), (BOSS, HUB)):
        reaches(lab, source, target)
    assert any(
        port == str(SSH_PORT) and addr in ("0.0.0.0", "*")  # noqa: S104
        for _, addr, port, _ in listeners(lab, BOSS)
    ), "boss1's sshd must listen on every address for this test to mean anything"
    probes = [(src, boss, port) for src in (HUB, W1, W2) for port in (SSH_PORT, SMB_PORT)]
    probes += [(W1, w2, SSH_PORT), (W2, w1, SSH_PORT)]
    controls = [(BOSS, w1, SSH_PORT), (BOSS, lab.overlay[HUB], SSH_PORT)]
    opened = tcp_opens(lab, probes + controls)
    assert all(opened[c] for c in controls), opened  # the boss may SSH in: the probe works
    assert [p for p in probes if opened[p]] == []


def test_the_boss_reaches_the_worker_behind_nat_through_the_hub_relay(lab: Lab) -> None:
    boss_underlay = str(lab.farm.address(BOSS))
    reaches(lab, BOSS, W2)
    # Real SSH from the boss to worker0002 over the overlay, with a key made for this test.
    lab.sh(BOSS, "test -f /root/.ssh/e2e || ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/e2e")
    public_key = lab.sh(BOSS, "cat /root/.ssh/e2e.pub")
    lab.sh(W2, "cat >> /root/.ssh/authorized_keys", input=public_key + "\n")
    login = (
        "ssh -i /root/.ssh/e2e -o BatchMode=yes -o StrictHostKeyChecking=no "
        f"-o UserKnownHostsFile=/dev/null -o ConnectTimeout=10 root@{lab.overlay[W2]} hostname"
    )
    assert lab.sh(BOSS, login) == W2

    # Direct UDP between the two is dropped by the NAT router (counted), though the same probe
    # from worker0001 arrives at the boss: Nebula cannot have a direct path boss <-> worker0002.
    assert udp_arrives(lab, W1, BOSS, boss_underlay) == [f"from-{W1} {lab.farm.address(W1)}"]
    dropped = nat_drops(lab)
    assert udp_arrives(lab, W2, BOSS, boss_underlay) == []
    assert nat_drops(lab) >= dropped + 3

    # So the overlay traffic goes through the hub: it receives every packet of the exchange.
    before = udp_received(lab, HUB)
    burst = lab.sh(BOSS, f"ping -q -c 30 -i 0.05 -W 2 {lab.overlay[W2]}")
    received = int(re.search(r"(\d+) received", burst).group(1))  # type: ignore[union-attr]
    assert received >= 25, burst
    assert udp_received(lab, HUB) - before >= 2 * received
    # And Nebula says so: the boss handshook with worker0002 via the relay on the hub.
    relay_lines = [
        ln
        for ln in journal(lab, BOSS).splitlines()
        if "via relay" in ln and f"vpnIp={lab.overlay[W2]}" in ln
    ]
    assert relay_lines, "boss1's nebula never used the relay for worker0002"
    assert f"relay={lab.overlay[HUB]}" in relay_lines[-1]


# --- deploys: idempotent, interrupted --------------------------------------------------------


def test_a_second_deploy_of_every_role_changes_nothing(lab: Lab) -> None:
    reports = lab.deploy_roles([(Role.HUB, [HUB]), (Role.WORKER, [W1, W2]), (Role.BOSS, [BOSS])])
    assert_no_changes(reports)


def _children_running(module: str) -> list[int]:
    """Our child processes whose command line runs ``python -m module``."""
    me = str(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
        except (OSError, IndexError):
            continue
        if parent == me and module in process_argv(int(entry.name)):
            found.append(int(entry.name))
    return found


def _processes_in_namespace(namespace: str, command: str) -> list[int]:
    """Processes named ``command`` whose network namespace is ``namespace`` (a lab host)."""
    wanted = os.stat(f"/run/netns/{namespace}").st_ino
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != command:
                continue
            if os.stat(entry / "ns" / "net").st_ino == wanted:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_an_interrupted_deploy_converges_when_run_again(lab: Lab) -> None:
    lab.farm.reset(W1)  # a fresh clone: the deploy has everything to do again
    namespace = lab.farm.underlay.host_namespace(W1)
    done: list[str] = []
    killed: dict[str, Any] = {}

    def interrupt(event: Event) -> None:
        if event.get("event") == "op":
            done.append(str(event.get("op")))
        if killed or len(done) < 5:
            return
        # A few operations are done: kill the deploy while apt/dpkg works on the worker.
        deadline = time.monotonic() + 60
        while not _processes_in_namespace(namespace, "dpkg"):
            assert time.monotonic() < deadline, f"no dpkg ran on {W1} after: {done}"
            time.sleep(0.005)
        engines = _children_running("farmhand.deploy.engine")
        assert len(engines) == 1, engines
        # While we are at it: the passphrase is in neither its argv nor its environment.
        environ = Path(f"/proc/{engines[0]}/environ").read_bytes()
        killed["argv"] = " ".join(process_argv(engines[0]))
        killed["environ_has_secret"] = lab.passphrase.encode() in environ
        killed["after"] = list(done)
        os.kill(engines[0], signal.SIGKILL)

    first = lab.deploy(Role.WORKER, [W1], on_event=interrupt)
    assert killed, f"the deploy finished before it could be interrupted: {done}"
    assert lab.passphrase not in killed["argv"]
    assert not killed["environ_has_secret"]
    assert not first.ok
    result = first.hosts[W1]
    assert 5 <= len(killed["after"]) < result.operations, (killed["after"], result.operations)

    # At once, while the orphaned apt may still hold the dpkg lock on the worker.
    second = lab.deploy(Role.WORKER, [W1])
    assert second.ok, second.failure_message()
    assert second.hosts[W1].changed > 0
    third = lab.deploy(Role.WORKER, [W1])
    assert_no_changes([third])
    # Converged means working: packages sound, nebula up with its own certificate, on the farm.
    assert lab.sh(W1, "dpkg --audit") == ""
    assert lab.infra(W1).service("farmhand-nebula").is_running
    assert (
        "name: worker0001"
        in lab.sh(W1, "nebula-cert print -path /etc/nebula/farmhand/host.crt").lower()
    )
    reaches(lab, W1, HUB)
    reaches(lab, BOSS, W1)


# --- the hub restarts ---------------------------------------------------------------------


def test_after_a_hub_reboot_workers_and_boss_reconnect_on_their_own(lab: Lab) -> None:
    lab.sh(HUB, "echo gone > /run/e2e-marker")
    old_pid = lab.farm.record(HUB).pid
    lab.farm.reboot(HUB)
    assert lab.farm.record(HUB).pid != old_pid
    assert lab.farm.exec(HUB, ["test", "-e", "/run/e2e-marker"]).returncode == 1  # a new boot
    # Nobody touches the other hosts: their nebula finds the hub again by itself.
    with ThreadPoolExecutor(max_workers=3) as pool:
        took = dict(
            zip(
                (W1, W2, BOSS),
                pool.map(lambda n: reaches(lab, n, HUB, 60), (W1, W2, BOSS)),
                strict=True,
            )
        )
    print(f"reconnected after the hub's reboot in {took}")
    # The hub is whole again: its firewall, and Samba bound to the overlay once it came up.
    hub = lab.infra(HUB)
    assert hub.service("farmhand-firewall").is_running
    wait_until(
        "smbd listens on the hub's overlay address again",
        lambda: hub.socket(f"tcp://{lab.overlay[HUB]}:{SMB_PORT}").is_listening,
        60,
    )
    prov.ensure_smbclient(lab.farm, W2)
    assert "e2e-proof.txt" in prov.smb(lab.farm, W2, "cd scenes; ls")
    assert not prov.desk_tcp_open(lab.farm, str(lab.farm.address(HUB)), SMB_PORT)


# --- secrets --------------------------------------------------------------------------------


_SCAN = r"""
import json, os, stat, subprocess, sys
needles = {label: value.encode() for label, value in json.load(sys.stdin).items()}
CAP = 8 << 20  # bigger files here are package archives and apt indexes
found, private, scanned = [], [], 0

def scan(where, data, into):
    for label, needle in needles.items():
        if needle in data:
            into.append(f"{label} in {where}")

scan("ps -ww -eo args", subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True).stdout,
     found)
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                scan(f"the argv of process {pid}", handle.read(), found)
        except OSError:
            pass
journal = subprocess.run(["journalctl", "--no-pager", "-o", "verbose"], capture_output=True)
assert journal.returncode == 0, journal.stderr
scan("the journal", journal.stdout, found)
seen = set()
for top in ("/var/log", "/etc", "/var", "/srv", "/root", "/tmp", "/usr/local"):
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if not os.path.ismount(os.path.join(root, d))]  # -xdev
        for name in files:
            path = os.path.join(root, name)
            if path in seen:
                continue
            seen.add(path)
            try:
                info = os.lstat(path)
                if not stat.S_ISREG(info.st_mode) or info.st_size > CAP:
                    continue
                with open(path, "rb") as handle:
                    data = handle.read()
            except OSError:
                continue
            scanned += 1
            public = path.startswith("/var/log/") or bool(info.st_mode & stat.S_IROTH)
            scan(path, data, found if public else private)
print(json.dumps({"found": found, "private": private, "scanned": scanned}))
"""


def _extra_secret_needles(value: bytes) -> list[str]:
    """What a farm-wide secret looks like in a file: every body line of a private key (a
    world-readable private key is a finding whatever its lines hold), or a password-like value
    itself; certificates inside it are public and not searched for."""
    text = value.decode(errors="replace")
    blocks = re.findall(r"-----BEGIN ([A-Z0-9 ]+)-----\n(.+?)\n-----END", text, re.S)
    if blocks:
        return [
            line
            for banner, body in blocks
            if "PRIVATE KEY" in banner
            for line in body.splitlines()
            if len(line) >= 40
        ]
    stripped = text.strip()
    return [stripped] if 16 <= len(stripped) <= 256 else []


def _secrets(lab: Lab) -> dict[str, str]:
    """Label -> secret text as it would appear anywhere (key files hold PEM base64)."""
    vault = KeyStore.open(prov.store_dir(lab.farm)).unlock(lab.passphrase)

    def body(pem_text: bytes) -> str:
        lines = [ln for ln in pem_text.decode().splitlines() if ln and not ln.startswith("-----")]
        assert len(lines[0]) >= 40, "a key body line too short to be a safe needle"
        return lines[0]

    secrets = {
        "the lab passphrase": lab.passphrase,
        "the SMB password": vault.smb_password,
        "the CA private key": body(pem.ed25519_private_to_pem(vault.ca_key)),
    }
    for name, raw in vault.host_keys.items():
        secrets[f"{name}'s private key"] = body(pem.x25519_private_to_pem(raw))
    for name, value in vault.extras.items():
        for number, needle in enumerate(_extra_secret_needles(value), 1):
            secrets[f"the farm secret {name} (line {number})"] = needle
    assert set(HOSTS) <= {k.split("'")[0] for k in secrets}
    return secrets


def test_secrets_are_in_no_log_argv_or_world_readable_file(lab: Lab) -> None:
    secrets = _secrets(lab)
    needles = json.dumps(secrets)

    def scan(name: str) -> dict[str, Any]:
        result = lab.farm.exec(name, ["python3", "-c", _SCAN], input=needles)
        assert result.returncode == 0, f"{name}: {result.stderr}"
        return dict(json.loads(result.stdout))

    with ThreadPoolExecutor(max_workers=len(HOSTS)) as pool:
        scans = dict(zip(HOSTS, pool.map(scan, HOSTS), strict=True))
    for name, found in scans.items():
        assert found["found"] == [], f"{name}: {found['found']}"
        assert found["scanned"] > 500, (name, found["scanned"])
    # The scan does see secrets where they belong (root-only files), in the form it looks for.
    assert "hub's private key in /etc/nebula/farmhand/host.key" in scans[HUB]["private"]
    assert "the SMB password in /etc/farmhand/smb.password" in scans[HUB]["private"]
    assert f"{W2}'s private key in /etc/nebula/farmhand/pool/{W2}.key" in scans[W2]["private"]
    assert "boss1's private key in /etc/nebula/farmhand/host.key" in scans[BOSS]["private"]
    assert not any("CA private key" in hit for s in scans.values() for hit in s["private"])
    # Nor in what the deploy engine reported or logged, for every deploy of this module.
    engine_output = "\n".join(
        [json.dumps(e) for e in lab.events] + [ln for r in lab.reports for ln in r.log_tail]
    )
    assert len(lab.events) > 100
    leaked = [label for label, secret in secrets.items() if secret in engine_output]
    assert leaked == []


# --- revocation (last: it changes the farm for good) ----------------------------------------


def test_a_revoked_worker_is_refused_by_the_hub(lab: Lab) -> None:
    store = KeyStore.open(prov.store_dir(lab.farm))
    fingerprint = store.register.get(W1).fingerprint  # type: ignore[union-attr]
    reaches(lab, W1, HUB)  # before: it is on the farm
    since = lab.sh(HUB, "date '+%Y-%m-%d %H:%M:%S'")
    pki.revoke(store, W1, lab.passphrase)
    # Re-deploy everything that stays on the farm; worker0001 keeps its (revoked) certificate.
    # The hub first, as an operator would: the others then restart nebula against the new hub.
    # (Hub last would leave the hub not knowing idle hosts until their next lighthouse update,
    # up to lighthouse.interval = 60 s, and relayed tunnels stale for as long: nebula 1.6.)
    reports = [lab.deploy(Role.HUB, [HUB])]
    reports += lab.deploy_roles([(Role.WORKER, [W2]), (Role.BOSS, [BOSS])])
    for report in reports:
        assert report.ok, report.failure_message()
        changed = [op for h in report.hosts.values() for op in h.changed_ops]
        assert any(op.endswith(f"Install {NEBULA_CONFIG}") for op in changed), changed

    for name in (HUB, W2, BOSS):
        assert pki_blocklist(lab.infra(name).file(NEBULA_CONFIG).content_string) == [fingerprint], (
            name
        )
        lab.sh(name, f"nebula -test -config {NEBULA_CONFIG}")
    # The re-deployed worker no longer carries the revoked worker's key in its pool.
    for kind in ("crt", "key"):
        assert not lab.infra(W2).file(f"/etc/nebula/farmhand/pool/{W1}.{kind}").exists

    took = wait_until(
        "worker0001 loses the hub", lambda: not pings(lab, W1, lab.overlay[HUB]), within=30
    )
    print(f"worker0001 lost the hub {took:.1f} s after the re-deploys")
    # Refused, not just slow: the hub says why, and worker0001 keeps failing while others pass.
    wait_until(
        "the hub refuses worker0001's certificate",
        lambda: (
            "Name: worker0001"
            in "".join(
                ln
                for ln in journal(lab, HUB, since=since).splitlines()
                if "Invalid certificate" in ln
            )
        ),
        within=30,
    )
    reaches(lab, W2, HUB)
    reaches(lab, BOSS, HUB)
    reaches(lab, BOSS, W2)
    assert lab.farm.exec(W1, ["ping", "-c", "3", "-W", "1", lab.overlay[HUB]]).returncode != 0
    assert not pings(lab, BOSS, lab.overlay[W1])
    # The revoked worker's host is otherwise fine: its nebula runs and keeps trying.
    assert lab.infra(W1).service("farmhand-nebula").is_running
    engine_output = "\n".join(json.dumps(e) for e in lab.events)
    assert lab.passphrase not in engine_output
