"""Where deploys/ and templates/ live: inside the wheel, or at the top of a source checkout."""

from __future__ import annotations

from pathlib import Path

from farmhand.errors import FarmhandError

_PACKAGE_DATA = Path(__file__).resolve().parent / "_data"
_CHECKOUT = Path(__file__).resolve().parents[2]


def data_dir(name: str) -> Path:
    """``templates`` or ``deploys``: the wheel's copy, else the checkout's (editable installs)."""
    for base in (_PACKAGE_DATA, _CHECKOUT):
        candidate = base / name
        if candidate.is_dir():
            return candidate
    raise FarmhandError(f"farmhand's {name}/ folder is missing from this installation")
