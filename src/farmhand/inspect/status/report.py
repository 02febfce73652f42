"""The status report: every probe at once, then the report composed section by section
(sections.py). ``gather``'s result is the ``--json`` output."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from farmhand.inspect.status.leases import lease_table_info, leases_by_name
from farmhand.inspect.status.sections import (
    certificates_section,
    cost_section,
    hub_section,
    nebula_section,
    queue_section,
    revoked_section,
    shares_section,
    workers_section,
)
from farmhand.inspect.status.smb import hub_silent, read_smb
from farmhand.inspect.status.view import FarmView, worker_price
from farmhand.join.nebula import nebula_version
from farmhand.join.probe import Probe, tcp_probe
from farmhand.keystore.bundle import Peer
from farmhand.keystore.plan import FarmPlan
from farmhand.model.host import SMB_PORT, SSH_PORT
from farmhand.queue import queue_service
from farmhand.queue.base import QueueService


@dataclass(frozen=True)
class Probes:
    """What the probes found, in one place, before any of the report is built."""

    hub: Probe
    smb: dict[str, Any]
    """read_smb's result; hub_silent() when the hub's SMB port does not answer."""
    workers: list[Probe]
    """One per worker, in the order they were given."""
    queue: Probe
    nebula_version: str


def probe_farm(view: FarmView, workers: list[Peer], queue: QueueService, timeout: float) -> Probes:
    """Probe the hub, its SMB shares and lease table, the queue, every worker and this
    machine's nebula in parallel, so status takes one timeout, not one per host."""
    with ThreadPoolExecutor(max_workers=min(64, len(workers) + 4)) as pool:
        hub_f = pool.submit(tcp_probe, view.hub_ip, SMB_PORT, timeout)
        queue_f = pool.submit(tcp_probe, view.hub_ip, queue.port, timeout)
        smb_f = pool.submit(read_smb, view.hub_ip, view.smb_user, view.smb_password, timeout)
        worker_fs = [pool.submit(tcp_probe, str(w.ip), SSH_PORT, timeout) for w in workers]
        version_f = pool.submit(nebula_version, view.nebula) if view.nebula else None
        hub: Probe = hub_f.result()
        smb = smb_f.result() if hub.reachable else hub_silent()
        worker_probes = [f.result() for f in worker_fs]
        queue_probe = queue_f.result()
        version = version_f.result() if version_f else ""
    return Probes(hub, smb, worker_probes, queue_probe, version)


def gather(
    view: FarmView,
    *,
    timeout: float = 2.0,
    now: float | None = None,
    price_plan: FarmPlan | None = None,
) -> dict[str, Any]:
    """Probe everything in parallel and return the report (the --json output). The worker
    price comes from ``price_plan`` (the key store's farm.toml) when given, else the bundle's."""
    now = time.time() if now is None else now
    workers = sorted(view.workers(), key=lambda p: int(p.ip))
    queue = queue_service(view.plan)
    price = worker_price(price_plan or view.plan)
    found = probe_farm(view, workers, queue, timeout)
    raw = found.smb["leases"]
    leases, shape_error = leases_by_name(raw, now) if raw is not None else ({}, "")
    report_workers, running_since = workers_section(workers, found.workers, leases)
    leases_info = lease_table_info(raw, found.smb["leases_reason"], shape_error)
    return {
        "farm": view.plan.name,
        "checked_at": int(now),
        "member": {"name": view.member, "ip": view.member_ip},
        "hub": hub_section(view, found.hub),
        "nebula": nebula_section(view, found.nebula_version),
        "shares": shares_section(found.smb["shares"]),
        "queue": queue_section(queue, found.queue),
        "leases": leases_info,
        "workers": report_workers,
        "certificates": certificates_section(view, now),
        "revoked": revoked_section(view, leases, leases_info["available"]),
        "cost": cost_section(price, running_since, now),
        "ok": found.hub.reachable,
    }
