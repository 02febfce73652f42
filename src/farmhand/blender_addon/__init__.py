"""farmhand's Blender add-on (``farmhand_blender/``, which runs inside Blender only) and the
zip ``farmhand addon`` builds from it, installable from Blender's preferences."""

from __future__ import annotations

import os
import zipfile
from importlib import resources
from pathlib import Path

ADDON = "farmhand_blender"
ZIP_NAME = f"{ADDON}.zip"


def build_zip(folder: Path) -> Path:
    """``folder/farmhand_blender.zip`` (written to a temporary name, then renamed)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / ZIP_NAME
    staged = folder / f".{ZIP_NAME}.{os.getpid()}"
    source = resources.files(__package__) / ADDON
    try:
        with zipfile.ZipFile(staged, "w", zipfile.ZIP_DEFLATED) as archive:
            for entry in sorted(source.iterdir(), key=lambda e: e.name):
                if entry.is_file() and entry.name.endswith(".py"):
                    archive.writestr(f"{ADDON}/{entry.name}", entry.read_bytes())
        os.replace(staged, target)
    finally:
        staged.unlink(missing_ok=True)
    return target
