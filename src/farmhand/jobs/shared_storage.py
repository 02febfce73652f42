"""The job commands on the render managers that render from the farm share (Flamenco,
Deadline), in one base class: a job folder of its own for the packed scene and every file it
references, the manager's API called with one-line errors, its jobs in the shape of the
built-in manager's summaries, and the finished frames collected from the job's render folder.
Each manager's module (jobs/flamenco.py, jobs/deadline.py) says only how its API is spoken."""

from __future__ import annotations

import abc
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from farmhand.errors import UsageError
from farmhand.jobs import frames as framing
from farmhand.jobs import rest, transfer
from farmhand.jobs.packing import Pack
from farmhand.onhost import jobs as service

Progress = Callable[[int], None]

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


def task_frames(first: int, last: int, state: str, worker: str) -> list[dict[str, Any]]:
    """One task's frames in one state, by one worker (none known: "")."""
    return [
        {"frame": f, "state": state, **({"worker": worker} if worker else {})}
        for f in range(first, last + 1)
    ]


def summary(
    job: str,
    name: str,
    state: str,
    frames: list[dict[str, Any]],
    renders: str,
    output: str,
    elapsed: float | None,
    with_frames: bool,
) -> dict[str, Any]:
    """A job in the shape of the built-in manager's summaries (no ETA or cost known)."""
    frames = sorted(frames, key=lambda f: f["frame"])
    counts = dict.fromkeys(STATES, 0)
    for item in frames:
        counts[item["state"]] += 1
    out: dict[str, Any] = {
        "job": job,
        "name": name,
        "state": state if state else ("running" if counts["running"] else "queued"),
        "frames": len(frames),
        "renders": renders,
        "output": output,
        "elapsed": elapsed,
        "eta": None,
        "cost": None,
        "currency": "",
        **counts,
    }
    if with_frames:
        out["frame_states"] = frames
    return out


def seconds_between(start: Any, end: Any) -> float | None:
    """Seconds from one ISO 8601 time to another; None when either is not one."""
    try:
        seconds = (
            datetime.fromisoformat(str(end)) - datetime.fromisoformat(str(start))
        ).total_seconds()
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


@dataclass(frozen=True)
class SharedStorageFarm(abc.ABC):
    """A boss's way to a farm whose manager renders from the share: its API and the share.
    Subclasses name the manager (``who``, ``error``), where its job folders go (``scenes``,
    ``renders``), and speak its API (``queue``, ``list_jobs``, ``show``, ``cancel``)."""

    url: str
    share: transfer.ShareAccess
    worker_mount: str
    """Where Linux workers mount the farm share: the paths a job names."""

    who: ClassVar[str] = ""
    error: ClassVar[type[rest.ManagerError]] = rest.ManagerError
    scenes: ClassVar[str] = ""
    renders: ClassVar[str] = ""

    def call(self, method: str, path: str, body: Any = None, *, text: bool = False) -> Any:
        """One API call: its JSON answer (or text), else a one-line ``error``."""
        try:
            return rest.call(self.url, self.who, method, path, body, text=text)
        except rest.ManagerError as exc:
            raise self.error(str(exc), exc.status) from None

    def worker_path(self, path: str) -> str:
        """``path`` on the share as a Linux worker sees it."""
        return f"{self.worker_mount.rstrip('/')}/{path}"

    def submit(
        self,
        ready: Pack,
        frames: str,
        chunk: int,
        name: str,
        output: str,
        progress: Progress | None,
    ) -> dict[str, Any]:
        """Upload the packed scene into a job folder of its own and queue it; nothing is left
        on the share when either fails."""
        listed = framing.parse_frames(frames)
        folder = new_folder()
        scenes = f"{self.scenes}/{folder}"
        upload_packed(self.share, ready, scenes, progress)
        try:
            job = self.queue(ready, folder, listed, chunk, name, output or DEFAULT_OUTPUT)
        except BaseException:
            transfer.remove_tree(self.share, scenes)
            raise
        return {
            "ok": True,
            "job": job,
            "tasks": len(framing.chunks(listed, chunk)),
            "frames": len(listed),
            "blender": "",
            "missing": [str(p) for p in ready.missing],
        }

    @abc.abstractmethod
    def queue(
        self, ready: Pack, folder: str, frames: list[int], chunk: int, name: str, pattern: str
    ) -> str:
        """Queue the job whose scene is ``scenes/FOLDER/scene.blend``; its id."""

    @abc.abstractmethod
    def list_jobs(self) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def show(self, job: str) -> dict[str, Any]: ...

    @abc.abstractmethod
    def cancel(self, job: str) -> None: ...

    def collect(
        self, job: str, target: Path, progress: Progress | None
    ) -> tuple[list[str], list[str]]:
        """The files of the job's done frames (named by its pattern, any extension) into
        ``target``: (fetched, skipped)."""
        details = self.show(job)
        if not details["renders"]:
            raise UsageError(f"job {job} was not submitted by farmhand: no render folder known")
        done = {f["frame"] for f in details["frame_states"] if f["state"] == "done"}
        renders = str(details["renders"])
        prefixes = [service.frame_name(details["output"] or DEFAULT_OUTPUT, f) for f in done]
        present = transfer.list_names(self.share, renders)
        wanted = sorted(n for n in present if any(n.startswith(p) for p in prefixes))
        return transfer.collect(self.share, renders, wanted, target, progress)
