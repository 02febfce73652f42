"""The lab's hosts as it records them in lab.json: names, roles, underlay addresses, and the
plan of a new lab."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address
from typing import Any, Literal

from farmhand.errors import LabError
from farmhand.lab.net import UNDERLAY

Role = Literal["hub", "worker", "boss"]

HUB_ADDRESS = UNDERLAY.network_address + 10
BOSS_BASE = UNDERLAY.network_address + 20
WORKER_BASE = UNDERLAY.network_address + 100
MAX_WORKERS = 150
MAX_BOSSES = 9


def worker_name(number: int) -> str:
    """``worker0007``: the name (and certificate) of the 7th worker."""
    return f"worker{number:04d}"


@dataclass(frozen=True)
class HostRecord:
    """What the lab knows about one host; persisted in lab.json."""

    name: str
    role: Role
    address: IPv4Address
    """Underlay address the desk reaches it on (a NATed host's router WAN address)."""
    pid: int | None = None
    nat_lan: int | None = None
    """Index of the NAT router LAN it sits behind, or None when plugged straight in."""
    hostname: str = ""
    """Its hostname when that is not its lab name (clones: several may share one)."""
    clone_of: str = ""
    """The (stopped) host whose disk this one boots as a copy-on-write clone."""

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        data = asdict(self)
        data["address"] = str(self.address)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HostRecord:
        """Inverse of ``to_json``."""
        return cls(
            name=str(data["name"]),
            role=data["role"],
            address=IPv4Address(data["address"]),
            pid=data.get("pid"),
            nat_lan=data.get("nat_lan"),
            hostname=str(data.get("hostname") or ""),
            clone_of=str(data.get("clone_of") or ""),
        )


@dataclass(frozen=True)
class HostStatus:
    """One line of ``lab status``."""

    name: str
    role: Role
    address: IPv4Address
    pid: int | None
    running: bool
    ssh: bool
    behind_nat: bool


def plan_hosts(workers: int, bosses: int, behind_nat: Sequence[str]) -> list[HostRecord]:
    """Names, roles and addresses of a lab with ``workers`` workers and ``bosses`` bosses."""
    if not 0 <= workers <= MAX_WORKERS:
        raise LabError(f"the lab runs 0 to {MAX_WORKERS} workers, not {workers}")
    if not 0 <= bosses <= MAX_BOSSES:
        raise LabError(f"the lab runs 0 to {MAX_BOSSES} bosses, not {bosses}")
    hosts = [HostRecord("hub", "hub", HUB_ADDRESS)]
    hosts += [HostRecord(worker_name(n), "worker", WORKER_BASE + n) for n in range(1, workers + 1)]
    hosts += [HostRecord(f"boss{n}", "boss", BOSS_BASE + n - 1) for n in range(1, bosses + 1)]
    names = [h.name for h in hosts]
    for index, name in enumerate(behind_nat):
        if name not in names:
            raise LabError(f"cannot put {name!r} behind NAT: the lab has no such host")
        if name == "hub":
            raise LabError("the hub cannot sit behind NAT: it is the farm's public address")
        hosts[names.index(name)] = HostRecord(
            name, hosts[names.index(name)].role, hosts[names.index(name)].address, None, index
        )
    return hosts


def clone_records(
    base: HostRecord, clones: Sequence[tuple[str, str]], records: Sequence[HostRecord]
) -> list[HostRecord]:
    """Records for ``clones`` (lab name, hostname) of ``base``, each on the first free worker
    address after the ones in ``records``."""
    taken = {r.name for r in records}
    used = {int(r.address) for r in records}
    out = []
    for name, hostname in clones:
        if name in taken:
            raise LabError(f"the lab already has a host {name!r}")
        address = next(
            a for a in range(int(WORKER_BASE) + 1, int(UNDERLAY.broadcast_address)) if a not in used
        )
        used.add(address)
        out.append(
            HostRecord(name, base.role, IPv4Address(address), hostname=hostname, clone_of=base.name)
        )
    return out
