"""The hub's lease table as status reads it: the leases by certificate, and the table's own
condition as the hub's lease service publishes it (onhost/leases.py)."""

from __future__ import annotations

import time
from typing import Any

CONDITION_KEYS = ("write_error", "disk_full", "table_error", "grants_paused_until")


def leases_by_name(raw: Any, now: float) -> tuple[dict[str, dict[str, Any]], str]:
    """The table's leases by certificate name, each marked expired or not, and '' or why the
    table is not in the expected shape."""
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
