"""firewalld as farmhand sees it: zones read from ``firewall-cmd --list-all-zones`` and what
may be open on the underlay. Used by the EL deploy (deploy/tasks/firewall.py, which says why
every bound zone is cleaned where it stands) and by ``farmhand verify``; no pyinfra here."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass

OVERLAY_ZONE = "farmhand-overlay"
KEPT_SERVICES = frozenset({"dhcpv6-client"})
"""Services kept on the underlay besides SSH: DHCPv6, so hosts keep their IPv6 address (the
nftables ruleset lets the same in)."""
CLOSED_TARGETS = frozenset({"default", "DROP", "REJECT", "%%REJECT%%"})
"""Zone targets that refuse what the zone does not allow; any other (ACCEPT) lets all in."""


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
    def of(cls, ssh_ports: Iterable[int], nebula_port: int = 0) -> Allowed:
        """SSH on ``ssh_ports``, Nebula's UDP port (the hub's; 0: none)."""
        ssh_ports = tuple(ssh_ports)
        ports = [f"{p}/tcp" for p in ssh_ports]
        if nebula_port:
            ports.append(f"{nebula_port}/udp")
        ssh = {"ssh"} if 22 in ssh_ports else set()  # the service is port 22
        return cls(tuple(ports), KEPT_SERVICES | ssh)

    def beyond(self, zone: Zone) -> list[tuple[str, str]]:
        """What ``zone`` opens beyond this, as (firewall-cmd option, value)."""
        found = [("remove-port", p) for p in zone.get("ports") if p not in self.ports]
        found += [("remove-service", s) for s in zone.get("services") if s not in self.services]
        found += [("remove-source-port", p) for p in zone.get("source-ports")]
        found += [("remove-protocol", p) for p in zone.get("protocols")]
        found += [("remove-forward-port", p) for p in zone.get("forward-ports")]
        found += [("remove-rich-rule", r) for r in zone.get("rich rules")]
        target = zone.get("target")
        if target and target[0] not in CLOSED_TARGETS:
            found.append(("set-target", "default"))
        return found

    def fix(self, zone: Zone) -> list[str]:
        """The permanent changes that leave ``zone`` allowing only this; none if it does."""
        at = f"firewall-cmd --permanent --zone={zone.name}"
        commands = [f"{at} --add-port={p}" for p in self.ports if p not in zone.get("ports")]
        q = shlex.quote
        return commands + [f"{at} --{option}={q(value)}" for option, value in self.beyond(zone)]
