"""``farmhand status``: the farm at a glance from the boss (or any overlay member).

Everything is measured from here, over the overlay: TCP connects to the hub's SMB port (round
trip = connect time), to each worker's SSH port (bosses may SSH to workers), to the queue
service; the shares and the hub's lease table (which machine holds which worker certificate)
are read over SMB with the farm user. Certificates come from the bundle's peer list.

Revoked certificates: the bundle's blocklist holds fingerprints only, and this machine's own
nebula refuses every blocklisted certificate, so a revoked host can never be seen from here.
What can be checked is the hub's lease table: a live lease on a certificate that is not among
the bundle's live workers is reported (revoked, or issued after this bundle was made).
"""

from __future__ import annotations

import contextlib
import errno
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from farmhand.errors import UsageError
from farmhand.join.nebula import nebula_version
from farmhand.join.paths import JoinPaths
from farmhand.join.probe import Probe, tcp_probe
from farmhand.join.state import load_state
from farmhand.keystore.bundle import Bundle, Peer
from farmhand.keystore.plan import FarmPlan, Role
from farmhand.model.host import SHARES, SMB_PORT, SSH_PORT
from farmhand.nebula.cert import certificate_from_pem, certificates_from_pem
from farmhand.queue import queue_service

LEASES_PATH = ".farmhand/leases.json"
EXPIRY_WARNING_DAYS = 30
CA_WARNING_DAYS = 180


@dataclass(frozen=True)
class FarmView:
    """What status needs to know about the farm: no private key, the SMB password only."""

    plan: FarmPlan
    peers: tuple[Peer, ...]
    blocklist: frozenset[str]
    ca_pem: bytes
    member: str
    member_ip: str
    member_not_after: int
    smb_password: str
    nebula: str = ""

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> FarmView:
        host = bundle.hosts[0] if bundle.role is not Role.WORKER else None
        return cls(
            plan=bundle.plan,
            peers=bundle.peers,
            blocklist=bundle.blocklist,
            ca_pem=bundle.ca_pem,
            member=host.name if host else "",
            member_ip=str(host.ip.ip) if host else "",
            member_not_after=host.certificate.details.not_after if host else 0,
            smb_password=bundle.smb_password,
        )

    @classmethod
    def from_join(cls, paths: JoinPaths) -> FarmView:
        """The farm as ``farmhand join`` left it in the config folder (no passphrase needed)."""
        state = load_state(paths)
        try:
            meta = json.loads(paths.farm.read_text(encoding="utf-8"))
            own = certificate_from_pem(paths.cert.read_bytes())
            return cls(
                plan=FarmPlan.from_dict(meta["plan"]),
                peers=tuple(Peer.from_dict(p) for p in meta.get("peers", ())),
                blocklist=frozenset(meta.get("blocklist", ())),
                ca_pem=paths.ca.read_bytes(),
                member=state.boss,
                member_ip=state.overlay_ip,
                member_not_after=own.details.not_after,
                smb_password=paths.smb_password.read_text(encoding="utf-8").strip(),
                nebula=state.nebula,
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{paths.dir} is damaged ({exc}): run 'farmhand join' again") from None

    @property
    def hub_ip(self) -> str:
        return str(self.plan.addresses.hub)

    def workers(self) -> tuple[Peer, ...]:
        return tuple(p for p in self.peers if p.role is Role.WORKER)


def worker_price(plan: FarmPlan) -> tuple[float, str] | None:
    """(price per worker-hour, currency) from farm.toml, or None when no price is set."""
    price = plan.settings.worker_hourly_price
    return None if price is None else (price, plan.settings.currency)


def read_smb(hub: str, user: str, password: str, timeout: float) -> dict[str, Any]:
    """Open each share and read the lease table, over one SMB session (smbprotocol)."""
    import smbclient  # a slow import: only when status runs
    from smbprotocol.exceptions import SMBException

    cache: dict[str, Any] = {}
    out: dict[str, Any] = {"shares": {}, "leases": None, "leases_reason": ""}  # SmbResult
    try:
        try:
            smbclient.register_session(
                hub,
                username=user,
                password=password,
                port=SMB_PORT,
                connection_timeout=int(max(1, timeout)),
                connection_cache=cache,
            )
        except (SMBException, OSError, ValueError) as exc:
            reason = _smb_reason(exc)
            out["shares"] = {s.name: reason for s in SHARES}
            out["leases_reason"] = f"cannot log in to the hub's SMB: {reason}"
            return out
        for share in SHARES:
            try:
                smbclient.listdir(rf"\\{hub}\{share.name}", connection_cache=cache)
                out["shares"][share.name] = ""
            except (SMBException, OSError, ValueError) as exc:
                out["shares"][share.name] = _smb_reason(exc)
        path = rf"\\{hub}\farm\{LEASES_PATH.replace('/', chr(92))}"
        try:
            with smbclient.open_file(path, mode="rb", connection_cache=cache) as handle:
                out["leases"] = json.loads(handle.read())
        except (SMBException, OSError, ValueError) as exc:
            if getattr(exc, "errno", None) == errno.ENOENT:  # smbprotocol's SMBOSError too
                out["leases_reason"] = f"the hub has no lease table (farm/{LEASES_PATH})"
            else:
                out["leases_reason"] = f"cannot read farm/{LEASES_PATH}: {_smb_reason(exc)}"
    finally:
        with contextlib.suppress(Exception):  # closing a dead session may fail: nothing to do
            smbclient.reset_connection_cache(connection_cache=cache)
    return out


def _smb_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _days(not_after: int, now: float) -> float:
    return round((not_after - now) / 86400, 1)


def _leases_by_name(raw: Any, now: float) -> tuple[dict[str, dict[str, Any]], str]:
    if not isinstance(raw, dict) or not isinstance(raw.get("leases"), list):
        return {}, "the lease table is not in the expected shape"
    found: dict[str, dict[str, Any]] = {}
    for item in raw["leases"]:
        if isinstance(item, dict) and "name" in item:
            lease = {
                k: item.get(k) for k in ("ip", "machine", "hostname", "since", "renewed", "expires")
            }
            expires = item.get("expires")
            lease["expired"] = isinstance(expires, int | float) and expires < now
            found[str(item["name"])] = lease
    return found, ""


CONDITION_KEYS = ("write_error", "disk_full", "table_error", "grants_paused_until")


def _utc(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(stamp))


def lease_condition(raw: Any) -> str:
    """One line on what the hub's lease service says of its own table (onhost/leases.py
    publishes write_error/disk_full, table_error, grants_paused_until/why); '' when all is
    well."""
    if not isinstance(raw, dict):
        return ""
    if raw.get("table_error"):
        return f"lease table: {raw['table_error']}"
    parts = []
    if raw.get("write_error"):
        what = "its disk is full" if raw.get("disk_full") else "writing fails"
        parts.append(
            f"the hub cannot save it ({what}: {raw['write_error']}): live leases are kept, "
            "new certificates wait until it can"
        )
    paused = raw.get("grants_paused_until")
    if isinstance(paused, int | float) and not isinstance(paused, bool):
        why = raw.get("grants_paused_why") or "the hub restored its lease table"
        parts.append(f"no new certificate until {_utc(paused)} ({why})")
    return "lease table: " + "; ".join(parts) if parts else ""


def lease_table_info(raw: Any, reason: str, shape_error: str) -> dict[str, Any]:
    """The report's "leases" entry: whether the table could be read, when the hub last
    saved it, and its condition (see lease_condition)."""
    info: dict[str, Any] = {
        "available": raw is not None and not shape_error,
        "reason": shape_error or reason,
    }
    if info["available"]:
        info["updated"] = raw.get("updated")
        info["ttl"] = raw.get("ttl")
        for key in CONDITION_KEYS:
            info[key] = raw.get(key)
        info["condition"] = lease_condition(raw)
    return info


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
    with ThreadPoolExecutor(max_workers=min(64, len(workers) + 4)) as pool:
        hub_f = pool.submit(tcp_probe, view.hub_ip, SMB_PORT, timeout)
        queue_f = pool.submit(tcp_probe, view.hub_ip, queue.port, timeout)
        smb_f = pool.submit(read_smb, view.hub_ip, view.plan.farm_user, view.smb_password, timeout)
        worker_fs = [pool.submit(tcp_probe, str(w.ip), SSH_PORT, timeout) for w in workers]
        version_f = pool.submit(nebula_version, view.nebula) if view.nebula else None
        hub: Probe = hub_f.result()
        smb: dict[str, Any] = {
            "shares": {s.name: "the hub does not answer" for s in SHARES},
            "leases": None,
            "leases_reason": "the hub does not answer",
        }
        if hub.reachable:
            smb = smb_f.result()
        worker_probes = [f.result() for f in worker_fs]
        queue_probe = queue_f.result()
        version = version_f.result() if version_f else ""

    leases, shape_error = (
        _leases_by_name(smb["leases"], now) if smb["leases"] is not None else ({}, "")
    )
    live_names = {w.name for w in workers}
    report_workers = []
    running_since: list[float | None] = []
    for peer, probe in zip(workers, worker_probes, strict=True):
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

    unknown_leases = [
        {"name": name, **lease}
        for name, lease in sorted(leases.items())
        if name not in live_names and not lease["expired"]
    ]
    cost = None
    if price is not None:
        hourly, currency = price
        known = [s for s in running_since if s is not None]
        cost = {
            "worker_hourly_price": hourly,
            "currency": currency,
            "running_workers": len(running_since),
            "per_hour": round(hourly * len(running_since), 4),
            "since_boot": round(sum(hourly * max(0.0, now - s) / 3600 for s in known), 4)
            if running_since and len(known) == len(running_since)
            else None,
            "workers_without_boot_time": len(running_since) - len(known),
        }
    leases_info = lease_table_info(smb["leases"], smb["leases_reason"], shape_error)
    return {
        "farm": view.plan.name,
        "checked_at": int(now),
        "member": {"name": view.member, "ip": view.member_ip},
        "hub": {
            "name": "hub",
            "ip": view.hub_ip,
            "port": SMB_PORT,
            "reachable": hub.reachable,
            "rtt_ms": hub.rtt_ms,
            "nebula_version": None,
        },
        "nebula": {"path": view.nebula or None, "version": version or None},
        "shares": [
            {"name": n, "reachable": not err, "error": err or None}
            for n, err in smb["shares"].items()
        ],
        "queue": {
            "manager": queue.manager.value,
            "label": queue.label,
            "port": queue.port,
            # A service is up only when it accepts: a reset means the hub is there, not the queue.
            "reachable": queue_probe.state == "open",
            "probe": queue_probe.state,
        },
        "leases": leases_info,
        "workers": report_workers,
        "certificates": {
            "expiring_within_days": EXPIRY_WARNING_DAYS,
            "expiring": expiring,
            "ca": cas,
        },
        "revoked": {
            "blocklisted": len(view.blocklist),
            "seen_online": unknown_leases,
            "how": "blocklisted fingerprints cannot be mapped to addresses, and this machine's "
            "nebula refuses them; checked: live leases in the hub's lease table on "
            "certificates that are not among this bundle's live workers"
            if leases_info["available"]
            else "not checked: the hub's lease table is not available",
        },
        "cost": cost,
        "ok": hub.reachable,
    }


def view_from(paths: JoinPaths, bundle: Bundle | None) -> FarmView:
    if bundle is not None:
        return FarmView.from_bundle(bundle)
    if not paths.joined():
        raise UsageError(
            f"this machine has not joined a farm ({paths.dir} is empty): run 'farmhand join', "
            "or give --bundle FILE"
        )
    return FarmView.from_join(paths)


def is_ip(text: str) -> bool:
    try:
        IPv4Address(text)
    except ValueError:
        return False
    return True


__all__ = ["FarmView", "Path", "gather", "lease_condition", "view_from", "worker_price"]
