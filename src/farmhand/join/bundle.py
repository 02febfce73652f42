"""Which boss keybundle to join with, and that it is one (not the hub's or the workers')."""

from __future__ import annotations

import os
from pathlib import Path

from farmhand.errors import UsageError
from farmhand.keystore.bundle import Bundle
from farmhand.keystore.plan import Role

BUNDLE_GLOB = "boss-*.keybundle.age"


def find_bundle(explicit: Path | None) -> Path:
    """``--bundle``, else the one boss bundle in ./ or the key store ($FARMHAND_KEYS, keys/)."""
    if explicit is not None:
        return explicit
    folders = [Path.cwd(), Path(os.environ.get("FARMHAND_KEYS", "keys"))]
    found = sorted({p.resolve() for d in folders if d.is_dir() for p in d.glob(BUNDLE_GLOB)})
    if len(found) == 1:
        return found[0]
    if not found:
        raise UsageError(
            "no boss keybundle found here: give --bundle FILE (boss-NAME.keybundle.age)"
        )
    names = ", ".join(p.name for p in found)
    raise UsageError(f"several boss keybundles found ({names}): pick one with --bundle FILE")


def check_boss_bundle(bundle: Bundle, path: Path) -> None:
    if bundle.role is not Role.BOSS:
        raise UsageError(
            f"{path} is the {bundle.role.value} keybundle: farmhand join needs a boss keybundle "
            "(boss-NAME.keybundle.age, made by 'farmhand keygen --boss NAME' or "
            "'farmhand keys add-boss NAME')"
        )
