"""One JSON call to a render manager's HTTP API (Flamenco Manager, Deadline's Web Service) on
the overlay or this machine, every failure one line naming the manager."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from farmhand.errors import FarmhandError

TIMEOUT = 30


class ManagerError(FarmhandError):
    """A render manager refused a request, or could not be reached; ``status`` is the HTTP
    status of a refusal (0 when nothing answered)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def call(
    base: str, who: str, method: str, path: str, body: Any = None, *, text: bool = False
) -> Any:
    """``method path`` on ``base`` with a JSON body; the JSON answer (None when empty), or
    with ``text`` the answer's text (Deadline answers changes with a word, ``Success``)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base.rstrip("/") + path, data=data, method=method)  # noqa: S310 - the manager's own http:// URL, from the farm's settings
    request.add_header("Content-Type", "application/json")
    request.add_header("Accept", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:  # noqa: S310
            raw = answer.read()
    except urllib.error.HTTPError as exc:
        why = _reason(exc.read()) or str(exc.reason)
        raise ManagerError(f"{who} refused {method} {path}: {exc.code} {why}", exc.code) from None
    except (OSError, ValueError) as exc:
        raise ManagerError(
            f"cannot reach {who} at {base}: {exc}; is the overlay up ('farmhand status')?"
        ) from None
    if text:
        return raw.decode("utf-8", "replace").strip()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise ManagerError(f"{who}'s answer to {method} {path} is not JSON") from None


def _reason(raw: bytes) -> str:
    """A refusal's reason: a JSON body's ``message`` (Flamenco), else its first text line
    (Deadline answers errors in plain text), at most 200 characters."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        found = json.loads(text)
    except ValueError:
        found = None
    if isinstance(found, dict) and isinstance(found.get("message"), str):
        text = found["message"]
    return " ".join(text.splitlines()[:1])[:200]
