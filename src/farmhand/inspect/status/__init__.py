"""``farmhand status``: the farm at a glance from the boss (or any overlay member).

Everything is measured from here, over the overlay: TCP connects to the hub's SMB port (round
trip = connect time), to each worker's SSH port (bosses may SSH to workers), to the queue
service; the shares and the hub's lease table (which machine holds which worker certificate)
are read over SMB with the farm user. Certificates come from the bundle's peer list.

Revoked certificates: the bundle's blocklist holds fingerprints only, and this machine's own
nebula refuses every blocklisted certificate, so a revoked host can never be seen from here.
What can be checked is the hub's lease table: a live lease on a certificate that is not among
the bundle's live workers is reported (revoked, or issued after this bundle was made).

The package is split by concern: ``view`` (what status knows of the farm), ``smb`` (the one
SMB session), ``leases`` (the hub's lease table), ``sections`` (one builder per section of the
report) and ``report`` (the parallel probes and ``gather``, their composition).
"""

from __future__ import annotations

from pathlib import Path

from farmhand.inspect.status.leases import (
    CONDITION_KEYS,
    lease_condition,
    lease_table_info,
    leases_by_name,
)
from farmhand.inspect.status.report import Probes, gather, probe_farm
from farmhand.inspect.status.sections import CA_WARNING_DAYS, EXPIRY_WARNING_DAYS
from farmhand.inspect.status.smb import LEASES_PATH, read_smb
from farmhand.inspect.status.view import FarmView, is_ip, view_from, worker_price

__all__ = [
    "CA_WARNING_DAYS",
    "CONDITION_KEYS",
    "EXPIRY_WARNING_DAYS",
    "LEASES_PATH",
    "FarmView",
    "Path",
    "Probes",
    "gather",
    "is_ip",
    "lease_condition",
    "lease_table_info",
    "leases_by_name",
    "probe_farm",
    "read_smb",
    "view_from",
    "worker_price",
]
