"""Human durations for certificate lifetimes: ``5y``, ``90d``, ``1y30d``, ``8760h``."""

from __future__ import annotations

import re

from farmhand.errors import UsageError

_UNITS = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"([0-9]+)([ywdhms])")  # [0-9]: \d also takes other scripts' digits
_WHOLE = re.compile(r"(?:[0-9]+[ywdhms])+")


def parse_duration(text: str) -> int:
    """Seconds in ``text``; units y (365 days), w, d, h, m, s, combinable as in ``1y30d``."""
    cleaned = text.strip(" ").lower()  # spaces only: a newline or control character is refused
    if not _WHOLE.fullmatch(cleaned):
        raise UsageError(
            f"invalid duration {text!r}: use a number and a unit y, w, d, h, m or s (e.g. 5y, 90d)"
        )
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(cleaned))
    if seconds <= 0:
        raise UsageError(f"invalid duration {text!r}: must be longer than zero")
    return seconds


def format_duration(seconds: int) -> str:
    """The shortest exact spelling of ``seconds`` in the units parse_duration reads."""
    if seconds <= 0:
        return "0s"
    parts = []
    for unit in ("y", "d", "h", "m", "s"):
        count, seconds = divmod(seconds, _UNITS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
