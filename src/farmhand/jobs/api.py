"""The jobs commands as library calls (the CLI is a thin layer over these): submit, list,
show, cancel and collect, for one boss."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from farmhand.errors import UsageError
from farmhand.jobs import frames as framing
from farmhand.jobs import transfer
from farmhand.jobs.client import HubAccess, JobError, ask
from farmhand.onhost import jobs as service


@dataclass(frozen=True)
class Farm:
    """One boss's way to the hub: the job service over SSH, the share over SMB."""

    hub: HubAccess
    share: transfer.ShareAccess


def check_scene(scene: Path) -> None:
    """A missing scene or a file that is not a .blend is refused before anything is sent."""
    if not scene.exists():
        raise UsageError(f"no such scene: {scene}")
    if not scene.is_file():
        raise UsageError(f"{scene} is not a file")
    try:
        head = service.read_head(str(scene))
    except OSError as exc:
        raise UsageError(f"cannot read {scene}: {exc.strerror}") from None
    kind = service.blend_kind(head)
    if kind:
        raise UsageError(f"{scene} is {kind}: submit a scene saved by Blender")


def submit(
    farm: Farm,
    scene: Path,
    frames: str,
    chunk: int = 1,
    name: str = "",
    output: str = "",
    blender: str = "",
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Upload ``scene`` and queue it: one task per chunk of frames. Nothing is left queued or
    half-uploaded when any step fails (the reservation and the scene folder are removed)."""
    check_scene(scene)
    parts = framing.chunks(framing.parse_frames(frames), chunk)
    if output and not service._OUTPUT.fullmatch(output):
        raise UsageError(
            f"bad --output {output!r}: letters, digits, _ . - and one run of # for the frame "
            "number (like frame_####)"
        )
    reserved = ask(farm.hub, {"op": "reserve"})
    job = str(reserved["job"])
    try:
        transfer.upload(farm.share, scene, str(reserved["scene"]), progress)
        answer = ask(
            farm.hub,
            {
                "op": "submit",
                "job": job,
                "chunks": [[p[0], p[-1]] for p in parts],
                "name": name or scene.stem,
                "output": output,
                "blender": blender,
            },
        )
    except BaseException:
        with contextlib.suppress(Exception):
            transfer.remove_tree(farm.share, f"{service.SCENES}/{job}")
        with contextlib.suppress(Exception):
            ask(farm.hub, {"op": "abandon", "job": job})
        raise
    return answer


def _job_id(job: str) -> str:
    if not service._JOB.fullmatch(job):
        raise UsageError(f"{job!r} is not a job id (job ids are numbers, see 'farmhand jobs')")
    return job


def list_jobs(farm: Farm) -> list[dict[str, Any]]:
    return list(ask(farm.hub, {"op": "list"})["jobs"])


def show(farm: Farm, job: str) -> dict[str, Any]:
    try:
        return dict(ask(farm.hub, {"op": "show", "job": _job_id(job)})["job"])
    except JobError as exc:
        if exc.reason == "unknown":
            raise UsageError(str(exc)) from None
        raise


def cancel(farm: Farm, job: str) -> None:
    try:
        ask(farm.hub, {"op": "cancel", "job": _job_id(job)})
    except JobError as exc:
        if exc.reason == "unknown":
            raise UsageError(str(exc)) from None
        raise


def collect(
    farm: Farm, job: str, target: Path, progress: Callable[[int], None] | None = None
) -> tuple[list[str], list[str]]:
    """Download the job's finished frames into ``target`` (fetched, skipped)."""
    details = show(farm, job)
    names = [f["file"] for f in details["frame_states"] if f["state"] == "done" and f.get("file")]
    return transfer.collect(farm.share, str(details["renders"]), names, target, progress)
