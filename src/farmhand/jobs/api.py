"""The jobs commands as library calls (the CLI is a thin layer over these): submit, list,
show, cancel and collect, for one boss."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from farmhand.errors import UsageError
from farmhand.jobs import frames as framing
from farmhand.jobs import packing, transfer
from farmhand.jobs.client import HubAccess, JobError, ask
from farmhand.jobs.packing import Pack
from farmhand.jobs.shared_storage import SharedStorageFarm
from farmhand.onhost import jobs as service


@dataclass(frozen=True)
class Farm:
    """One boss's way to the hub: the job service over SSH, the share over SMB; on a farm
    that runs Flamenco or Deadline, that manager's API instead of the job service."""

    hub: HubAccess
    share: transfer.ShareAccess
    manager: SharedStorageFarm | None = None


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


def check_frames(frames: str, chunk: int) -> None:
    """A bad frame range or chunk is refused before the scene is packed."""
    framing.chunks(framing.parse_frames(frames), chunk)


@contextlib.contextmanager
def prepared(scene: Path, *, pack: bool = True, allow_missing: bool = False) -> Iterator[Pack]:
    """``scene`` ready to send: checked, and packed with its dependencies (``pack``), or alone."""
    check_scene(scene)
    if not pack:
        yield Pack(scene, (), ())
        return
    with packing.packed(scene, allow_missing=allow_missing) as ready:
        yield ready


def submit(
    farm: Farm,
    scene: Path,
    frames: str,
    chunk: int = 1,
    name: str = "",
    output: str = "",
    blender: str = "",
    progress: Callable[[int], None] | None = None,
    *,
    pack: bool = True,
    allow_missing: bool = False,
) -> dict[str, Any]:
    """Pack ``scene``, upload it and queue it (see :func:`submit_prepared`)."""
    check_frames(frames, chunk)  # before any packing
    with prepared(scene, pack=pack, allow_missing=allow_missing) as ready:
        return submit_prepared(farm, ready, frames, chunk, name, output, blender, progress)


def submit_prepared(
    farm: Farm,
    ready: Pack,
    frames: str,
    chunk: int = 1,
    name: str = "",
    output: str = "",
    blender: str = "",
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Upload a prepared scene and queue it: one task per chunk of frames, named ``name`` (by
    default like the scene: packing keeps its file name). Its dependencies go
    to the share's file store by content, so one already there is not uploaded again. Nothing
    is left queued or half-uploaded when any step fails (the reservation and the scene folder
    are removed)."""
    parts = framing.chunks(framing.parse_frames(frames), chunk)
    if output and not service._OUTPUT.fullmatch(output):
        raise UsageError(
            f"bad --output {output!r}: letters, digits, _ . - and one run of # for the frame "
            "number (like frame_####)"
        )
    if farm.manager is not None:
        if blender:
            raise UsageError(
                "--blender is the built-in manager's: Flamenco's and Deadline's workers run "
                "their own Blender"
            )
        return farm.manager.submit(ready, frames, chunk, name or ready.scene.stem, output, progress)
    reserved = ask(farm.hub, {"op": "reserve"})
    job = str(reserved["job"])
    try:
        stored = [(f.local, f"{service.FILES}/{f.sha256}", f.size) for f in ready.files]
        transfer.upload_new(farm.share, stored, progress)
        transfer.upload(farm.share, ready.scene, str(reserved["scene"]), progress)
        answer = ask(
            farm.hub,
            {
                "op": "submit",
                "job": job,
                "chunks": [[p[0], p[-1]] for p in parts],
                "name": name or ready.scene.stem,
                "output": output,
                "blender": blender,
                "files": [[f.path, f.sha256] for f in ready.files],
            },
        )
    except BaseException:
        with contextlib.suppress(Exception):
            transfer.remove_tree(farm.share, f"{service.SCENES}/{job}")
        with contextlib.suppress(Exception):
            ask(farm.hub, {"op": "abandon", "job": job})
        raise
    return dict(answer, missing=[str(p) for p in ready.missing])


def _job_id(job: str) -> str:
    if not service._JOB.fullmatch(job):
        raise UsageError(f"{job!r} is not a job id (job ids are numbers, see 'farmhand jobs')")
    return job


def list_jobs(farm: Farm) -> list[dict[str, Any]]:
    if farm.manager is not None:
        return farm.manager.list_jobs()
    return list(ask(farm.hub, {"op": "list"})["jobs"])


def show(farm: Farm, job: str) -> dict[str, Any]:
    if farm.manager is not None:
        return farm.manager.show(job)
    try:
        return dict(ask(farm.hub, {"op": "show", "job": _job_id(job)})["job"])
    except JobError as exc:
        if exc.reason == "unknown":
            raise UsageError(str(exc)) from None
        raise


def cancel(farm: Farm, job: str) -> None:
    if farm.manager is not None:
        farm.manager.cancel(job)
        return
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
    if farm.manager is not None:
        return farm.manager.collect(job, target, progress)
    details = show(farm, job)
    names = [f["file"] for f in details["frame_states"] if f["state"] == "done" and f.get("file")]
    return transfer.collect(farm.share, str(details["renders"]), names, target, progress)
