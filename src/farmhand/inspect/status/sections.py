"""One builder per section of the status report, from what the probes found: pure functions
of their inputs, so each section can be read (and changed) on its own."""

from __future__ import annotations

from typing import Any

from farmhand.inspect.status.view import FarmView
from farmhand.join.probe import Probe
from farmhand.keystore.bundle import Peer
from farmhand.model.host import SMB_PORT
from farmhand.nebula.cert import certificates_from_pem
from farmhand.queue.base import QueueService

EXPIRY_WARNING_DAYS = 30
CA_WARNING_DAYS = 180


def _days(not_after: int, now: float) -> float:
    return round((not_after - now) / 86400, 1)


def hub_section(view: FarmView, hub: Probe) -> dict[str, Any]:
    """The hub, as its SMB port answers."""
    return {
        "name": "hub",
        "ip": view.hub_ip,
        "port": SMB_PORT,
        "reachable": hub.reachable,
        "rtt_ms": hub.rtt_ms,
        "nebula_version": None,
    }


def nebula_section(view: FarmView, version: str) -> dict[str, Any]:
    """This machine's nebula (known only after ``farmhand join``)."""
    return {"path": view.nebula or None, "version": version or None}


def shares_section(shares: dict[str, str]) -> list[dict[str, Any]]:
    """Each share, and why it could not be opened ('' when it could)."""
    return [{"name": n, "reachable": not err, "error": err or None} for n, err in shares.items()]


def queue_section(queue: QueueService, probe: Probe) -> dict[str, Any]:
    """The queue service on the hub."""
    return {
        "manager": queue.manager.value,
        "label": queue.label,
        "port": queue.port,
        # A service is up only when it accepts: a reset means the hub is there, not the queue.
        "reachable": probe.state == "open",
        "probe": probe.state,
    }


def workers_section(
    workers: list[Peer], probes: list[Probe], leases: dict[str, dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[float | None]]:
    """Each worker with its probe and lease; and, for each reachable one, when it started
    (its lease's ``since``, None when unknown) for the cost section."""
    report_workers = []
    running_since: list[float | None] = []
    for peer, probe in zip(workers, probes, strict=True):
        lease = leases.get(peer.name)
        report_workers.append(
            {
                "name": peer.name,
                "ip": str(peer.ip),
                "reachable": probe.reachable,
                "probe": probe.state,
                "rtt_ms": probe.rtt_ms,
                "not_after": peer.not_after,
                "lease": lease,
            }
        )
        if probe.reachable:
            since = lease.get("since") if lease else None
            running_since.append(float(since) if isinstance(since, int | float) else None)
    return report_workers, running_since


def certificates_section(view: FarmView, now: float) -> dict[str, Any]:
    """Peers, this machine and CAs that expire soon; every CA with its days left."""
    expiring = []
    for peer in view.peers:
        if _days(peer.not_after, now) <= EXPIRY_WARNING_DAYS:
            expiring.append(
                {
                    "name": peer.name,
                    "kind": peer.role.value,
                    "not_after": peer.not_after,
                    "days_left": _days(peer.not_after, now),
                }
            )
    if view.member and _days(view.member_not_after, now) <= EXPIRY_WARNING_DAYS:
        expiring.append(
            {
                "name": view.member,
                "kind": "this machine",
                "not_after": view.member_not_after,
                "days_left": _days(view.member_not_after, now),
            }
        )
    cas = []
    for ca in certificates_from_pem(view.ca_pem):
        days = _days(ca.details.not_after, now)
        cas.append(
            {
                "name": ca.name,
                "not_after": ca.details.not_after,
                "days_left": days,
                "warn": days <= CA_WARNING_DAYS,
            }
        )
        if days <= EXPIRY_WARNING_DAYS:
            expiring.append(
                {
                    "name": ca.name,
                    "kind": "ca",
                    "not_after": ca.details.not_after,
                    "days_left": days,
                }
            )
    return {"expiring_within_days": EXPIRY_WARNING_DAYS, "expiring": expiring, "ca": cas}


def revoked_section(
    view: FarmView, leases: dict[str, dict[str, Any]], table_available: bool
) -> dict[str, Any]:
    """Revoked certificates cannot be seen from here (see the package docstring): report the
    live leases on certificates that are not among the bundle's live workers."""
    live_names = {w.name for w in view.workers()}
    return {
        "blocklisted": len(view.blocklist),
        "seen_online": [
            {"name": name, **lease}
            for name, lease in sorted(leases.items())
            if name not in live_names and not lease["expired"]
        ],
        "how": "blocklisted fingerprints cannot be mapped to addresses, and this machine's "
        "nebula refuses them; checked: live leases in the hub's lease table on "
        "certificates that are not among this bundle's live workers"
        if table_available
        else "not checked: the hub's lease table is not available",
    }


def cost_section(
    price: tuple[float, str] | None, running_since: list[float | None], now: float
) -> dict[str, Any] | None:
    """What the reachable workers cost per hour and since they started; None with no price.
    ``since_boot`` is None unless every running worker's start is known."""
    if price is None:
        return None
    hourly, currency = price
    known = [s for s in running_since if s is not None]
    return {
        "worker_hourly_price": hourly,
        "currency": currency,
        "running_workers": len(running_since),
        "per_hour": round(hourly * len(running_since), 4),
        "since_boot": round(sum(hourly * max(0.0, now - s) / 3600 for s in known), 4)
        if running_since and len(known) == len(running_since)
        else None,
        "workers_without_boot_time": len(running_since) - len(known),
    }
