"""What the job commands do alike on the render managers that render from the farm share
(Flamenco, Deadline): a job folder of its own for the packed scene and every file it
references, frame states tallied as the built-in manager's summaries are, and the finished
frames collected from the job's render folder."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from farmhand.jobs import transfer
from farmhand.jobs.packing import Pack
from farmhand.onhost import jobs as service

STATES = ("done", "running", "queued", "failed", "cancelled")
DEFAULT_OUTPUT = "######"
"""The frame pattern when none is given (Blender's rule: the run of # is the padding)."""


def new_folder() -> str:
    """A job folder's name: sortable by time, never reused."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"


def upload_packed(
    share: transfer.ShareAccess, ready: Pack, scenes: str, progress: Callable[[int], None] | None
) -> None:
    """The packed scene (as ``scene.blend``) and its files at their relative paths under
    ``scenes``; nothing is left there when any upload fails."""
    try:
        for packed in ready.files:
            transfer.upload(share, packed.local, f"{scenes}/{packed.path}", progress)
        transfer.upload(share, ready.scene, f"{scenes}/{service.SCENE_FILE}", progress)
    except BaseException:
        transfer.remove_tree(share, scenes)
        raise


def tally(frames: list[dict[str, Any]]) -> dict[str, int]:
    """How many frames are in each state."""
    counts = dict.fromkeys(STATES, 0)
    for item in frames:
        counts[item["state"]] += 1
    return counts


def seconds_between(start: Any, end: Any) -> float | None:
    """Seconds from one ISO 8601 time to another; None when either is not one."""
    try:
        seconds = (
            datetime.fromisoformat(str(end)) - datetime.fromisoformat(str(start))
        ).total_seconds()
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


def collect_done(
    share: transfer.ShareAccess,
    renders: str,
    pattern: str,
    done: set[int],
    target: Path,
    progress: Callable[[int], None] | None,
) -> tuple[list[str], list[str]]:
    """The files of the ``done`` frames in ``renders`` (named by ``pattern``, any extension)
    into ``target``: (fetched, skipped)."""
    present = transfer.list_names(share, renders)
    prefixes = [service.frame_name(pattern, frame) for frame in done]
    wanted = sorted(n for n in present if any(n.startswith(p) for p in prefixes))
    return transfer.collect(share, renders, wanted, target, progress)
