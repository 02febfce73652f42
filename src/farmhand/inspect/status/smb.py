"""The shares and the hub's lease table, read over one SMB session with the farm user."""

from __future__ import annotations

import contextlib
import errno
import json
from typing import Any

from farmhand.model.host import MOUNTED_SHARES, SMB_PORT

LEASES_PATH = ".farmhand/leases.json"


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
            out["shares"] = {s.name: reason for s in MOUNTED_SHARES}
            out["leases_reason"] = f"cannot log in to the hub's SMB: {reason}"
            return out
        for share in MOUNTED_SHARES:
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


def hub_silent() -> dict[str, Any]:
    """What read_smb would say when the hub does not answer, without waiting for it."""
    return {
        "shares": {s.name: "the hub does not answer" for s in MOUNTED_SHARES},
        "leases": None,
        "leases_reason": "the hub does not answer",
    }


def _smb_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
