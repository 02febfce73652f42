"""The host firewall: publicly only SSH and the hub's Nebula port; the overlay is Nebula's job."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from pyinfra.context import host
from pyinfra.facts.server import Command
from pyinfra.operations import server, systemd
from pyinfra.operations.util import any_changed

from farmhand.deploy.tasks import deploy, ops, packages
from farmhand.deploy.tasks import files as farm_files
from farmhand.hostfiles.base import HostFiles
from farmhand.model.host import HostModel

OVERLAY_ZONE = "farmhand-overlay"
KEPT_SERVICES = frozenset({"dhcpv6-client"})
"""Services kept on the underlay besides SSH: DHCPv6, so hosts keep their IPv6 address (the
nftables ruleset lets the same in)."""
CLOSED_TARGETS = frozenset({"default", "DROP", "REJECT", "%%REJECT%%"})
"""Zone targets that refuse what the zone does not allow; any other (ACCEPT) lets all in."""
STOCK_DEFAULT_ZONE = "public"
STOCK_PUBLIC_SERVICES = ("cockpit", "dhcpv6-client", "ssh")
"""What EL 8/9 open by default, assumed where firewalld is not even installed yet."""

# Never a failed fact on a fresh host: empty until firewalld is installed. The permanent
# configuration can be read without the daemon (firewall-offline-cmd), the runtime one cannot.
DEFAULT_ZONE_FACT = (
    "firewall-cmd --get-default-zone 2>/dev/null"
    " || firewall-offline-cmd --get-default-zone 2>/dev/null || true"
)
RUNTIME_FACT = "firewall-cmd --list-all-zones 2>/dev/null || true"
PERMANENT_FACT = (
    "firewall-cmd --permanent --list-all-zones 2>/dev/null"
    " || firewall-offline-cmd --list-all-zones 2>/dev/null || true"
)


@deploy("Host firewall")
def firewall(model: HostModel, host_files: HostFiles) -> None:
    packages.install(model, *model.distro.firewall_packages)
    if model.distro.firewall == "nftables":
        _nftables(host_files)
    else:
        _firewalld(model, host_files)


def _nftables(host_files: HostFiles) -> None:
    ruleset = farm_files.install(host_files.plain("firewall"))
    ops.managed_service(
        "firewall",
        "farmhand-firewall.service",
        host_files.units("firewall"),
        depends=ruleset,
        on_change="reload",
        start_name="farmhand-firewall loaded and enabled",
        restart_name="Reload the firewall after its rules changed",
    )


def _firewalld(model: HostModel, host_files: HostFiles) -> None:
    """Only what farmhand allows on the underlay, in every zone that can see it.

    firewalld sends a packet through the zone of its source address, else of its interface,
    else the default zone. So every zone bound to an interface or a source (at runtime or
    permanently) and the default zone are the underlay's, except our overlay zone: each keeps
    only the SSH ports, the hub's Nebula port and DHCPv6, with no source ports, protocols,
    forward ports or rich rules, and a target that refuses the rest. They are cleaned where
    they stand rather than replaced by a zone of ours: NetworkManager binds a connection's
    interface to the zone its profile names whenever it comes up, so whatever zone that is has
    to be clean. Changes go to the permanent configuration, then one reload makes the runtime
    the same (dropping anything added at runtime only); a converged host gets no operation."""
    zone = farm_files.install(host_files.of("firewall"))
    systemd.service(
        name="firewalld running and enabled",
        service="firewalld.service",
        enabled=True,
        running=True,
    )
    default = (host.get_fact(Command, command=DEFAULT_ZONE_FACT) or "").strip()
    runtime = parse_zones(host.get_fact(Command, command=RUNTIME_FACT) or "")
    permanent = parse_zones(host.get_fact(Command, command=PERMANENT_FACT) or "")
    if not permanent:  # firewalld not installed yet: its stock configuration
        default = default or STOCK_DEFAULT_ZONE
        permanent = {default: Zone(default, {"services": list(STOCK_PUBLIC_SERVICES)})}
    names = underlay_zones(default, runtime, permanent)
    allowed = Allowed.of(model)
    commands = [c for name in names if name in permanent for c in allowed.fix(permanent[name])]
    stale_runtime = any(allowed.fix(runtime[name]) for name in names if name in runtime)
    if commands:
        server.shell(
            name=f"Publicly only SSH and Nebula in firewalld's underlay zones ({', '.join(names)})",
            commands=commands,
        )
    server.shell(
        name="Reload firewalld",
        commands=["firewall-cmd --reload"],
        _if=lambda: bool(commands) or stale_runtime or any_changed(*zone)(),
    )


@dataclass(frozen=True)
class Zone:
    """One zone of ``firewall-cmd --list-all-zones``: its fields, each a list of values (rich
    rules and forward ports one per line, the rest split on spaces)."""

    name: str
    fields: dict[str, list[str]]

    def get(self, field: str) -> list[str]:
        return self.fields.get(field, [])


_FIELD = re.compile(r"^  ([a-z][a-z -]*):(.*)$")
_ONE_PER_LINE = frozenset({"rich rules", "forward-ports"})


def parse_zones(listing: str) -> dict[str, Zone]:
    """``firewall-cmd [--permanent] --list-all-zones``: a zone's name starts a line (``public
    (default, active)``), its fields follow indented by two spaces, and rich rules and forward
    ports come one per line below their field, indented by a tab."""
    zones: dict[str, Zone] = {}
    current: Zone | None = None
    field = ""
    for line in listing.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            name = line.split()[0]
            current = zones[name] = Zone(name, {})
            continue
        if current is None:
            continue
        match = _FIELD.match(line)
        if match and not line.startswith("\t"):
            field, value = match.group(1), match.group(2).strip()
            if field in _ONE_PER_LINE:
                current.fields[field] = [value] if value else []
            else:
                current.fields[field] = value.split()
        elif field in _ONE_PER_LINE:
            current.fields[field].append(line.strip())
    return zones


def underlay_zones(default: str, *listings: dict[str, Zone]) -> list[str]:
    """The default zone and every zone bound to an interface or a source in any listing,
    except the overlay's."""
    names = {default} if default else set()
    for zones in listings:
        names |= {z.name for z in zones.values() if z.get("interfaces") or z.get("sources")}
    names.discard(OVERLAY_ZONE)
    return sorted(names)


@dataclass(frozen=True)
class Allowed:
    """What may be open on the underlay: the SSH ports, the hub's Nebula port, DHCPv6."""

    ports: tuple[str, ...]
    services: frozenset[str]

    @classmethod
    def of(cls, model: HostModel) -> Allowed:
        ports = [f"{p}/tcp" for p in model.ssh_ports]
        if model.listen_port:
            ports.append(f"{model.listen_port}/udp")
        ssh = {"ssh"} if 22 in model.ssh_ports else set()  # the service is port 22
        return cls(tuple(ports), KEPT_SERVICES | ssh)

    def fix(self, zone: Zone) -> list[str]:
        """The permanent changes that leave ``zone`` allowing only this; none if it does."""
        at = f"firewall-cmd --permanent --zone={zone.name}"
        q = shlex.quote
        commands = [f"{at} --add-port={p}" for p in self.ports if p not in zone.get("ports")]
        commands += [f"{at} --remove-port={p}" for p in zone.get("ports") if p not in self.ports]
        commands += [
            f"{at} --remove-service={s}" for s in zone.get("services") if s not in self.services
        ]
        commands += [f"{at} --remove-source-port={p}" for p in zone.get("source-ports")]
        commands += [f"{at} --remove-protocol={p}" for p in zone.get("protocols")]
        commands += [f"{at} --remove-forward-port={q(p)}" for p in zone.get("forward-ports")]
        commands += [f"{at} --remove-rich-rule={q(r)}" for r in zone.get("rich rules")]
        target = zone.get("target")
        if target and target[0] not in CLOSED_TARGETS:
            commands.append(f"{at} --set-target=default")
        return commands
