"""`farmhand verify`: testinfra checks that a deployed hub, worker or boss keeps its promises.

Each check reads the live host over SSH (testinfra): services up, the host firewall loaded,
Nebula's config and certificate valid, secret files private, and on the underlay nothing
listening but sshd and Nebula (Samba only on the overlay address). What a host should look like
comes from the host itself (its distribution, ``/etc/farmhand/farm.json``, sshd's ports and the
overlay interface), so no passphrase or key store is needed to verify a farm.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, ip_address
from typing import Any

import testinfra
from testinfra.backend.local import LocalBackend
from testinfra.backend.ssh import SshBackend

from farmhand.deploy.target import Target
from farmhand.errors import FarmhandError
from farmhand.keystore.plan import Role
from farmhand.model.distro import Distro, distro_from_os_release
from farmhand.model.firewalld import Allowed, parse_zones, underlay_zones
from farmhand.model.host import NEBULA_DEV, SMB_PORT, SSH_PORT
from farmhand.model.paths import (
    FARM_JSON,
    NEBULA_CA,
    NEBULA_CERT,
    NEBULA_CONFIG,
    NEBULA_DIR,
    NEBULA_KEY,
    NEBULA_POOL,
    OLD_SSHD_DROPIN,
    SMB_CREDENTIALS,
    SMB_PASSWORD,
    SSHD_CONFIG,
    SSHD_DROPIN,
)
from farmhand.model.sshd import KEY_ONLY, setting_sources, wrong_settings
from farmhand.queue import slurm

NEBULA_UNIT = "farmhand-nebula"
NFT_TABLE = "inet farmhand"
# DHCP clients keep a socket on the client port of the interface they configure.
DHCP_CLIENTS = frozenset({"dhclient", "systemd-network", "NetworkManager", "dhcpcd", "udhcpc"})
DHCP_CLIENT_PORTS = frozenset({68, 546})


class VerifyError(FarmhandError):
    """The host could not be inspected at all (unreachable, no sudo)."""


@dataclass(frozen=True)
class Check:
    """One promise about a host, and whether the host keeps it."""

    name: str
    passed: bool
    detail: str = ""


@dataclass(frozen=True)
class Listener:
    """One listening socket from ``ss -Hlntup``."""

    proto: str  # tcp or udp
    address: str  # without brackets or %interface
    port: int
    processes: tuple[str, ...]

    def __str__(self) -> str:
        where = f"[{self.address}]" if ":" in self.address else self.address
        names = ",".join(self.processes) or "?"
        return f"{self.proto} {where}:{self.port} ({names})"


_USERS = re.compile(r'\("([^"]+)",pid=')


def parse_ss(text: str) -> list[Listener]:
    """Listening sockets from ``ss -Hlntup`` (run as root, so processes are named)."""
    found = []
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 5 or cols[0] not in {"tcp", "udp"}:
            continue
        local = cols[4]
        address, _, port = local.rpartition(":")
        address = address.strip("[]").split("%", 1)[0]
        if not port.isdigit():
            continue
        found.append(
            Listener(cols[0], address, int(port), tuple(dict.fromkeys(_USERS.findall(line))))
        )
    return found


def _address(text: str) -> IPv4Address | IPv6Address | None:
    """An IP address, IPv4-mapped IPv6 (``::ffff:10.87.0.1``) as the IPv4 it stands for."""
    try:
        address = ip_address(text)
    except ValueError:
        return None  # a wildcard ("*")
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_loopback(text: str) -> bool:
    address = _address(text)
    return address is not None and address.is_loopback


FIREWALLED_DAEMONS = (
    ({"slurmctld"}, slurm.CONTROLLER_PORT),
    ({"slurmd"}, slurm.NODE_PORT),
)
"""Daemons that listen on every address, since they cannot bind one (Slurm's; its
NoInAddrAny did not run jobs here), and that the host firewall closes on the underlay (its own
check): not counted as listening on the underlay."""


def underlay_offenders(
    listeners: Iterable[Listener], overlay: IPv4Network | None, ssh_ports: Iterable[int]
) -> list[Listener]:
    """Sockets reachable from the underlay that are neither sshd nor Nebula (nor a DHCP client).

    A socket counts as on the underlay unless it is bound to loopback or to an address inside
    the overlay network (wildcards listen on every interface, the underlay included), or is
    one of the FIREWALLED_DAEMONS."""
    ssh = set(ssh_ports)
    offenders = []
    for sock in listeners:
        if _is_loopback(sock.address):
            continue
        if overlay is not None and _in_network(sock.address, overlay):
            continue
        names = set(sock.processes)
        if sock.proto == "tcp" and sock.port in ssh and names <= {"sshd", "systemd"} and names:
            continue  # sshd, or systemd holding ssh.socket (Ubuntu 24.04 socket activation)
        if sock.proto == "udp" and names == {"nebula"}:
            continue
        if sock.proto == "tcp" and (names, sock.port) in FIREWALLED_DAEMONS:
            continue
        if (
            sock.proto == "udp"
            and sock.port in DHCP_CLIENT_PORTS
            and names
            and names <= (DHCP_CLIENTS)
        ):
            continue
        offenders.append(sock)
    return offenders


def _in_network(text: str, network: IPv4Network) -> bool:
    address = _address(text)
    return isinstance(address, IPv4Address) and address in network


# ------------------------------------------------------------------------------------------------
# Reaching hosts
# ------------------------------------------------------------------------------------------------


def testinfra_host(target: Target) -> Any:
    """A testinfra host for ``target``: OpenSSH with the target's user, port, key and host key
    policy; through sudo when the user is not root."""
    if target.local:
        return testinfra.host.Host(LocalBackend("local://", sudo=os.geteuid() != 0))
    strict = {"off": "no", "accept-new": "accept-new"}.get(target.strict_host_keys, "yes")
    extra = ["-o BatchMode=yes", f"-o StrictHostKeyChecking={strict}", "-o LogLevel=ERROR"]
    if target.known_hosts:
        extra.append(f"-o UserKnownHostsFile={shlex.quote(target.known_hosts)}")
        extra.append("-o GlobalKnownHostsFile=/dev/null")
    if target.key:
        extra.append("-o IdentitiesOnly=yes")
    host = target.host if ":" not in target.host.strip("[]") else f"[{target.host.strip('[]')}]"
    backend = SshBackend(
        f"{target.user}@{host}:{target.port}",
        ssh_identity_file=target.key or None,
        controlpersist=0,  # nothing left running after the command
        ssh_extra_args=" ".join(extra),
        timeout=15,
        sudo=target.user != "root",
    )
    return testinfra.host.Host(backend)


# ------------------------------------------------------------------------------------------------
# The checks
# ------------------------------------------------------------------------------------------------


class _Host:
    """A testinfra host plus what we learn about it once (distro, farm.json, overlay)."""

    def __init__(self, infra: Any) -> None:
        self.infra = infra

    def run(self, command: str) -> Any:
        try:
            return self.infra.run(command)
        except RuntimeError as exc:  # testinfra: ssh itself failed (exit 255)
            result = exc.args[0] if exc.args else None
            said = getattr(result, "stderr", "") or str(exc)
            lines = [ln for ln in str(said).splitlines() if ln.strip()]
            reason = lines[-1] if lines else "ssh failed"
            raise VerifyError(f"cannot reach the host: {reason}") from None

    def distro(self) -> Distro:
        text = self.run("cat /etc/os-release").stdout
        meta = {}
        for line in text.splitlines():
            key, _, value = line.partition("=")
            meta[key.strip()] = value.strip().strip('"')
        return distro_from_os_release(meta)


def _file_check(
    host: _Host, path: str, mode: int, *, directory: bool = False, group: str = "root"
) -> Check:
    name = f"{path} is {'a folder ' if directory else ''}{mode:04o} root:{group}"
    result = host.run(f"stat -c '%F|%a|%U|%G' {shlex.quote(path)}")
    if result.rc != 0:
        return Check(name, False, "missing")
    kind, actual, user, owner_group = result.stdout.strip().split("|")
    problems = []
    if directory != (kind == "directory"):
        problems.append(kind)
    if int(actual, 8) != mode:
        problems.append(f"mode {int(actual, 8):04o}")
    if (user, owner_group) != ("root", group):
        problems.append(f"owner {user}:{owner_group}")
    return Check(name, not problems, ", ".join(problems))


def _service_check(host: _Host, unit: str) -> Check:
    service = host.infra.service(unit)
    running, enabled = service.is_running, service.is_enabled
    problems = [w for w, ok in (("not running", running), ("not enabled", enabled)) if not ok]
    return Check(f"{unit} running and enabled", not problems, ", ".join(problems))


def _nebula_binary(host: _Host) -> str:
    unit = host.run(f"cat /etc/systemd/system/{NEBULA_UNIT}.service").stdout
    for line in unit.splitlines():
        if line.startswith("ExecStart="):
            return str(line.split("=", 1)[1].split()[0])
    return "nebula"


def _nebula_checks(host: _Host) -> list[Check]:
    binary = _nebula_binary(host)
    tested = host.run(f"{shlex.quote(binary)} -test -config {NEBULA_CONFIG}")
    checks = [
        Check(
            "nebula config is valid (nebula -test)",
            tested.rc == 0,
            _last_line(tested.stderr or tested.stdout) if tested.rc else "",
        )
    ]
    folder = binary.rsplit("/", 1)[0] if "/" in binary else ""
    cert_tool = shlex.quote(f"{folder}/nebula-cert") if folder else "nebula-cert"
    verified = host.run(f"{cert_tool} verify -ca {NEBULA_CA} -crt {NEBULA_CERT}")
    checks.append(
        Check(
            "nebula certificate is signed by the farm CA and valid",
            verified.rc == 0,
            _last_line(verified.stderr or verified.stdout) if verified.rc else "",
        )
    )
    return checks


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


def _overlay(host: _Host, network: IPv4Network | None) -> tuple[Check, IPv4Address | None]:
    out = host.run(f"ip -4 -o addr show dev {NEBULA_DEV}").stdout.split()
    address = None
    if "inet" in out:
        address = IPv4Address(out[out.index("inet") + 1].split("/")[0])
    ok = address is not None and (network is None or address in network)
    detail = f"{address}" if address else f"no address on {NEBULA_DEV}"
    if address and network is not None and address not in network:
        detail = f"{address} is outside {network}"
    return Check(f"overlay interface {NEBULA_DEV} is up in the farm network", ok, detail), address


def _sshd_ports(host: _Host) -> set[int]:
    out = host.run("sshd -T 2>/dev/null | grep -i '^port '").stdout
    ports = {int(line.split()[1]) for line in out.splitlines() if line.split()[1:2] != []}
    return ports or {SSH_PORT}


SSHD_CHECK = "sshd uses farmhand's key-only settings (sshd -T)"


def _sshd_checks(host: _Host) -> list[Check]:
    """What sshd really uses (``sshd -T``), where farmhand turned password logins off (its
    drop-in is there); a wrong value names the file sshd took it from."""
    present = host.run(f"ls -1 {SSHD_DROPIN} {OLD_SSHD_DROPIN} 2>/dev/null").stdout.split()
    if not present:
        return []  # deployed without a working key login: password logins were left alone
    effective = host.run("sshd -T")
    if effective.rc != 0:
        return [Check(SSHD_CHECK, False, _last_line(effective.stderr or effective.stdout))]
    return [key_only_check(effective.stdout, host_sources(host))]


def key_only_check(effective: str, sources: dict[str, tuple[str, str]]) -> Check:
    """``sshd -T`` output against farmhand's key-only settings; ``sources`` as
    :func:`farmhand.model.sshd.setting_sources` finds them."""
    problems = wrong_settings(effective, sources, KEY_ONLY)
    return Check(SSHD_CHECK, not problems, "; ".join(problems))


def host_sources(host: _Host, config: str = SSHD_CONFIG) -> dict[str, tuple[str, str]]:
    """Which of the host's sshd files sets each key-only keyword first."""

    def read(path: str) -> str | None:
        result = host.run(f"cat {shlex.quote(path)}")
        return str(result.stdout) if result.rc == 0 else None

    def expand(pattern: str) -> list[str]:
        # $1 unquoted: globbing and word splitting as the Include's own, no other expansion.
        script = 'for f in $1; do [ -e "$f" ] && printf "%s\\n" "$f"; done; true'
        listed = host.run(f"sh -c {shlex.quote(script)} sh {shlex.quote(pattern)}").stdout
        return [line for line in str(listed).splitlines() if line]

    return setting_sources([keyword for keyword, _ in KEY_ONLY], read, expand, config)


FIREWALLD_CHECK = "firewalld underlay zones: only SSH, Nebula, DHCPv6"


def firewalld_underlay_check(default: str, listing: str, allowed: Allowed) -> Check:
    """``firewall-cmd --list-all-zones`` (the running firewall): every zone that sees the
    underlay (the default one, any bound to an interface or a source, not farmhand-overlay)
    opens nothing beyond ``allowed``."""
    zones = parse_zones(listing)
    found = []
    for name in underlay_zones(default, zones):
        for option, value in allowed.beyond(zones[name]) if name in zones else []:
            if option == "set-target":
                found.append(f"{name}: target {' '.join(zones[name].get('target'))}")
            else:
                found.append(f"{name}: {option.removeprefix('remove-')} {value}")
    return Check(FIREWALLD_CHECK, not found, "; ".join(found))


def _firewall_checks(host: _Host, distro: Distro, role: Role, farm: dict[str, Any]) -> list[Check]:
    if distro.firewall == "nftables":
        checks = [_service_check(host, "farmhand-firewall")]
        loaded = host.run(f"nft list table {NFT_TABLE}")
        checks.append(
            Check(
                f"nftables table '{NFT_TABLE}' is loaded (policy drop)",
                loaded.rc == 0 and "policy drop" in loaded.stdout,
                _last_line(loaded.stderr) if loaded.rc else "",
            )
        )
        return checks
    checks = [_service_check(host, "firewalld")]
    zones = host.run("firewall-cmd --get-active-zones")
    checks.append(
        Check(
            f"firewalld puts {NEBULA_DEV} in the farmhand-overlay zone",
            zones.rc == 0 and "farmhand-overlay" in zones.stdout,
            _last_line(zones.stderr) if zones.rc else "",
        )
    )
    default = host.run("firewall-cmd --get-default-zone").stdout.strip()
    listing = host.run("firewall-cmd --list-all-zones")
    if listing.rc != 0:
        checks.append(Check(FIREWALLD_CHECK, False, _last_line(listing.stderr)))
        return checks
    nebula_port = int(farm.get("port") or 0) if role is Role.HUB else 0
    allowed = Allowed.of(sorted(_sshd_ports(host)), nebula_port)
    checks.append(firewalld_underlay_check(default, listing.stdout, allowed))
    return checks


def _listener_checks(
    host: _Host,
    role: Role,
    network: IPv4Network | None,
    overlay_ip: IPv4Address | None,
    farm: dict[str, Any],
) -> list[Check]:
    listing = host.run("ss -Hlntup")
    if listing.rc != 0:
        return [Check("listening sockets can be listed (ss)", False, _last_line(listing.stderr))]
    listeners = parse_ss(listing.stdout)
    offenders = underlay_offenders(listeners, network, _sshd_ports(host))
    checks = [
        Check(
            "on the underlay only sshd (tcp) and nebula (udp) listen",
            not offenders,
            "; ".join(str(o) for o in offenders),
        )
    ]
    if role is Role.HUB:
        port = int(farm.get("port") or 0)
        nebula = [s for s in listeners if s.proto == "udp" and "nebula" in s.processes]
        checks.append(
            Check(
                f"nebula listens on udp {port}",
                any(s.port == port for s in nebula),
                ", ".join(str(s) for s in nebula) or "nebula has no udp socket",
            )
        )
        smb = [s for s in listeners if s.proto == "tcp" and s.port in (SMB_PORT, 139)]
        elsewhere = [s for s in smb if overlay_ip is None or _address(s.address) != overlay_ip]
        checks.append(
            Check(
                f"SMB listens only on the overlay address ({overlay_ip}:{SMB_PORT})",
                bool(smb) and not elsewhere and overlay_ip is not None,
                "; ".join(str(s) for s in elsewhere) or ("" if smb else "smbd does not listen"),
            )
        )
    return checks


def verify_host(role: Role, infra: Any) -> list[Check]:
    """Every check for a host of ``role``, read through the testinfra host ``infra``."""
    host = _Host(infra)
    whoami = host.run("id -u")
    if whoami.rc != 0 or whoami.stdout.strip() != "0":
        raise VerifyError("cannot run commands as root there (sudo)")
    distro = host.distro()
    checks: list[Check] = []
    raw = host.run(f"cat {FARM_JSON}")
    farm: dict[str, Any] = {}
    if raw.rc == 0:
        try:
            farm = dict(json.loads(raw.stdout))
        except ValueError:
            farm = {}
    checks.append(
        Check(
            f"{FARM_JSON} says this host is a {role.value}",
            farm.get("role") == role.value,
            ""
            if farm.get("role") == role.value
            else (f"it says {farm.get('role')!r}" if farm else "missing or unreadable"),
        )
    )
    network = IPv4Network(farm["network"]) if farm.get("network") else None
    checks.append(_service_check(host, NEBULA_UNIT))
    overlay_check, overlay_ip = _overlay(host, network)
    checks.append(overlay_check)
    checks += _nebula_checks(host)
    checks.append(_file_check(host, NEBULA_DIR, 0o700, directory=True))
    checks.append(_file_check(host, NEBULA_CONFIG, 0o600))
    checks.append(_file_check(host, NEBULA_KEY, 0o600))
    if role is Role.WORKER:
        keys = host.run(f"ls -1 {NEBULA_POOL}").stdout.split()
        pool = [f"{NEBULA_POOL}/{name}" for name in keys if name.endswith(".key")]
        bad = [c for c in (_file_check(host, path, 0o600) for path in pool) if not c.passed]
        checks.append(
            Check(
                f"every key in {NEBULA_POOL} is 0600 root:root ({len(pool)} found)",
                bool(pool) and not bad,
                "; ".join(f"{c.name.split(' is ')[0]}: {c.detail}" for c in bad)
                or ("" if pool else "no keys"),
            )
        )
        # Root's alone, or also readable by the render tasks' group when farm.json names one.
        reader = farm.get("smb_credentials_group")
        if reader and isinstance(reader, str):
            checks.append(_file_check(host, SMB_CREDENTIALS, 0o640, group=reader))
        else:
            checks.append(_file_check(host, SMB_CREDENTIALS, 0o600))
    if role is Role.HUB:
        checks.append(_file_check(host, SMB_PASSWORD, 0o600))
        checks.append(_service_check(host, distro.samba_service))
    checks += _sshd_checks(host)
    if role is not Role.BOSS:
        checks += _firewall_checks(host, distro, role, farm)
        checks += _listener_checks(host, role, network, overlay_ip, farm)
    return checks


def verify_target(role: Role, target: Target) -> list[Check]:
    """Connect to ``target`` and run every check for ``role``."""
    return verify_host(role, testinfra_host(target))
