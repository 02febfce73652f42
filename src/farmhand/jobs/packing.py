"""A scene packed with everything it references, before it goes to the farm.

A ``.blend`` rarely stands alone: image textures, linked libraries, caches. Blender's own asset
tracer (``blender-asset-tracer``, what Flamenco's add-on packs with) finds them and rewrites the
scene's paths so that each dependency sits inside the job folder at a relative path: files
under the scene's folder keep their place, others go under ``_outside_project/`` with their
absolute path below it. Packing works on copies in a temporary folder: the artist's files are
never changed.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from farmhand.errors import UsageError
from farmhand.onhost import jobs as service

MAX_LISTED = 5
"""Missing files named in the one-line error; the rest are counted."""


@dataclass(frozen=True)
class PackedFile:
    """One dependency: where it goes in the job folder, where its packed copy is, its hash."""

    path: str
    local: Path
    sha256: str
    size: int


@dataclass(frozen=True)
class Pack:
    scene: Path
    """The packed .blend (its paths rewritten), uploaded as the job's scene.blend."""
    files: tuple[PackedFile, ...]
    missing: tuple[Path, ...]
    """Referenced files that are not there (left out; only with ``allow_missing``)."""

    @property
    def size(self) -> int:
        return self.scene.stat().st_size + sum(f.size for f in self.files)


@contextlib.contextmanager
def packed(scene: Path, *, allow_missing: bool = False) -> Iterator[Pack]:
    """``scene`` and its dependencies packed in a temporary folder, removed afterwards.

    Missing dependencies stop it with one line naming them, unless ``allow_missing``."""
    try:
        from blender_asset_tracer.pack import Packer
    except ImportError:
        raise UsageError(
            "packing a scene needs blender-asset-tracer (Python 3.11 or newer): "
            "pip install blender-asset-tracer, or submit with --no-pack"
        ) from None
    source = scene.resolve()
    bat_log = logging.getLogger("blender_asset_tracer")
    level, bat_log.level = bat_log.level, logging.CRITICAL  # its warnings are ours to say
    try:
        with tempfile.TemporaryDirectory(prefix="farmhand-pack-") as tmp:
            target = Path(tmp) / "job"
            try:
                with Packer(source, source.parent, str(target)) as packer:
                    packer.strategise()
                    missing = tuple(sorted(packer.missing_files))
                    if missing and not allow_missing:
                        raise UsageError(_missing_line(scene, missing))
                    packer.execute()
                    packed_scene = Path(packer.output_path)
            except UsageError:
                raise
            except Exception as exc:  # the tracer parses the user's file: any fault is one line
                why = str(exc).replace(str(source), source.name) or type(exc).__name__
                raise UsageError(f"cannot pack {scene.name}: {why}") from None
            yield Pack(packed_scene, _files(target, packed_scene), missing)
    finally:
        bat_log.level = level


def _missing_line(scene: Path, missing: tuple[Path, ...]) -> str:
    named = ", ".join(str(p) for p in missing[:MAX_LISTED])
    more = f" and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
    return (
        f"{scene.name} references {len(missing)} missing file(s): {named}{more}; fix the paths "
        "in Blender (File > External Data > Report Missing Files), or submit with "
        "--allow-missing to render without them"
    )


PACK_INFO = "pack-info.txt"
"""The asset tracer's note of when and what it packed, at the top of the pack: not sent."""


def _files(target: Path, packed_scene: Path) -> tuple[PackedFile, ...]:
    found = []
    skip = {packed_scene, target / PACK_INFO}
    for path in sorted(p for p in target.rglob("*") if p.is_file() and p not in skip):
        relative = path.relative_to(target).as_posix()
        problem = service.file_path_problem(relative)
        if problem:
            raise UsageError(f"cannot send the scene's file {relative!r}: {problem}; rename it")
        found.append(PackedFile(relative, path, service.sha256_of(str(path)), path.stat().st_size))
    if len(found) > service.MAX_FILES:
        raise UsageError(
            f"the scene references {len(found)} files, more than one job may carry "
            f"({service.MAX_FILES})"
        )
    return tuple(found)


def scene_name(blend: Path) -> str:
    """The name of the first scene in ``blend`` (Flamenco's job needs it), or "Scene"."""
    from blender_asset_tracer import blendfile

    try:
        opened = blendfile.open_cached(blend)
        blocks = opened.code_index.get(b"SC") or []
        name = blocks[0].id_name if blocks else None
        return name[2:].decode("utf-8", "replace") if name else "Scene"
    except Exception:  # the tracer read this file while packing: any fault here is its own
        return "Scene"
    finally:
        blendfile.close_all_cached()
