"""The job commands on a Flamenco farm: ``submit``, ``jobs``, ``job``, ``cancel`` and
``collect`` through Flamenco Manager's REST API (v3) on the hub's overlay address, with the
same answers as on the built-in manager (farmhand/onhost/jobs.py's summaries).

Flamenco renders from shared storage: the packed scene and every file it references go into a
job folder of their own in the farm share (``scenes/farmhand-flamenco/FOLDER/``, at their
relative paths), and the job, of Flamenco's ``simple-blender-render`` type, names them as a
Linux worker mounts the share (the manager's two-way ``farm`` variable maps that for other
platforms). Frames land in ``renders/farmhand-flamenco/FOLDER/``, where ``collect`` fetches
them over SMB. Flamenco's API has no login: any member of the overlay's boss and worker groups
that reaches port 8080 may use it (the host firewall keeps it off the underlay).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from farmhand.errors import UsageError
from farmhand.jobs import frames as framing
from farmhand.jobs import packing, rest, shared_storage, transfer
from farmhand.jobs.packing import Pack
from farmhand.jobs.shared_storage import DEFAULT_OUTPUT
from farmhand.onhost import jobs as service

JOB_TYPE = "simple-blender-render"
SCENES = "scenes/farmhand-flamenco"
RENDERS = "renders/farmhand-flamenco"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TASK = re.compile(r"render-(\d+)(?:-(\d+))?")
STATES = {
    "completed": "done",
    "active": "running",
    "queued": "queued",
    "soft-failed": "queued",
    "paused": "queued",
    "failed": "failed",
    "canceled": "cancelled",
}
"""Flamenco's task states as farmhand's frame states."""
JOB_STATES = {
    "completed": "done",
    "active": "running",
    "failed": "failed",
    "canceled": "cancelled",
    "cancel-requested": "cancelled",
}
"""Flamenco's job states that are not simply queued, as farmhand's."""


class FlamencoError(rest.ManagerError):
    """Flamenco Manager refused a request or could not be reached."""


@dataclass(frozen=True)
class FlamencoFarm:
    """A boss's way to a Flamenco farm: the manager's API and the farm share."""

    url: str
    share: transfer.ShareAccess
    worker_mount: str
    """Where Linux workers mount the farm share (the manager's ``farm`` variable)."""

    def submit(
        self,
        ready: Pack,
        frames: str,
        chunk: int,
        name: str,
        output: str,
        progress: Callable[[int], None] | None,
    ) -> dict[str, Any]:
        scene = packing.scene_name(ready.scene)
        return submit(self, ready, frames, chunk, name, output, progress, scene)

    def list_jobs(self) -> list[dict[str, Any]]:
        return list_jobs(self)

    def show(self, job: str) -> dict[str, Any]:
        return show(self, job)

    def cancel(self, job: str) -> None:
        cancel(self, job)

    def collect(
        self, job: str, target: Path, progress: Callable[[int], None] | None
    ) -> tuple[list[str], list[str]]:
        return collect(self, job, target, progress)


def check_job_id(job: str) -> str:
    if not _UUID.fullmatch(job):
        raise UsageError(f"{job!r} is not a Flamenco job id (see 'farmhand jobs')")
    return job


def call(farm: FlamencoFarm, method: str, path: str, body: Any = None) -> Any:
    """One API call; its JSON answer (None for 204), or a one-line FlamencoError."""
    try:
        return rest.call(farm.url, "Flamenco Manager", method, path, body)
    except rest.ManagerError as exc:
        raise FlamencoError(str(exc), exc.status) from None


def submit(
    farm: FlamencoFarm,
    ready: Pack,
    frames: str,
    chunk: int,
    name: str,
    output: str,
    progress: Callable[[int], None] | None,
    scene_name: str,
) -> dict[str, Any]:
    """Upload the packed scene into a job folder of its own and submit a
    ``simple-blender-render`` job of it. Nothing is left on the share when it fails."""
    listed = framing.parse_frames(frames)
    folder = shared_storage.new_folder()
    scenes = f"{SCENES}/{folder}"
    shared_storage.upload_packed(farm.share, ready, scenes, progress)
    mount = farm.worker_mount.rstrip("/")
    pattern = output or DEFAULT_OUTPUT
    try:
        job = call(
            farm,
            "POST",
            "/api/v3/jobs",
            {
                "name": name,
                "type": JOB_TYPE,
                "priority": 50,
                "submitter_platform": "linux",
                "settings": {
                    "blendfile": f"{mount}/{scenes}/{service.SCENE_FILE}",
                    "frames": framing.describe(listed),
                    "chunk_size": chunk,
                    "render_output_root": f"{mount}/{RENDERS}",
                    "add_path_components": 0,
                    "render_output_path": f"{mount}/{RENDERS}/{folder}/{pattern}",
                    "format": "PNG",
                    "image_file_extension": ".png",
                    "has_previews": False,
                    "scene": scene_name,
                },
                "metadata": {"farmhand.folder": folder, "farmhand.frames": str(len(listed))},
            },
        )
    except BaseException:
        transfer.remove_tree(farm.share, scenes)
        raise
    if not isinstance(job, dict) or not isinstance(job.get("id"), str):
        raise FlamencoError("Flamenco Manager's answer to a submit has no job id")
    return {
        "ok": True,
        "job": job["id"],
        "tasks": len(framing.chunks(listed, chunk)),
        "frames": len(listed),
        "blender": "",
        "missing": [str(p) for p in ready.missing],
    }


def list_jobs(farm: FlamencoFarm) -> list[dict[str, Any]]:
    answer = call(farm, "GET", "/api/v3/jobs")
    jobs = answer.get("jobs") if isinstance(answer, dict) else None
    if not isinstance(jobs, list):
        raise FlamencoError("Flamenco Manager's job list has no jobs")
    return [summary(farm, job, with_frames=False) for job in jobs if isinstance(job, dict)]


def show(farm: FlamencoFarm, job: str) -> dict[str, Any]:
    check_job_id(job)
    try:
        found = call(farm, "GET", f"/api/v3/jobs/{job}")
    except FlamencoError as exc:
        if exc.status == 404:
            raise UsageError(f"the farm has no job {job}") from None
        raise
    return summary(farm, found, with_frames=True)


def cancel(farm: FlamencoFarm, job: str) -> None:
    show(farm, job)  # an unknown job: one line, before asking for a change
    call(
        farm,
        "POST",
        f"/api/v3/jobs/{job}/setstatus",
        {"status": "cancel-requested", "reason": "farmhand cancel"},
    )


def summary(farm: FlamencoFarm, job: dict[str, Any], with_frames: bool) -> dict[str, Any]:
    """A Flamenco job in the shape of the built-in manager's summaries."""
    job_id = str(job.get("id", ""))
    tasks = call(farm, "GET", f"/api/v3/jobs/{check_job_id(job_id)}/tasks") or {}
    frames = []
    for task in tasks.get("tasks") or []:
        found = _TASK.fullmatch(str(task.get("name", "")))
        if found is None:
            continue  # not a render task
        first = int(found.group(1))
        last = int(found.group(2) or first)
        state = STATES.get(str(task.get("status")), "queued")
        worker = (task.get("worker") or {}).get("name", "")
        for frame in range(first, last + 1):
            item: dict[str, Any] = {"frame": frame, "state": state}
            if worker:
                item["worker"] = worker
            frames.append(item)
    frames.sort(key=lambda f: f["frame"])
    counts = shared_storage.tally(frames)
    folder = str((job.get("metadata") or {}).get("farmhand.folder", ""))
    out: dict[str, Any] = {
        "job": job_id,
        "name": job.get("name", ""),
        "state": JOB_STATES.get(str(job.get("status")), "queued"),
        "frames": len(frames),
        "renders": f"{RENDERS}/{folder}" if folder else "",
        "output": str((job.get("settings") or {}).get("render_output_path", "")).rsplit("/", 1)[-1],
        "elapsed": shared_storage.seconds_between(job.get("created"), job.get("updated")),
        "eta": None,
        "cost": None,
        "currency": "",
        **counts,
    }
    if with_frames:
        out["frame_states"] = frames
    return out


def collect(
    farm: FlamencoFarm, job: str, target: Path, progress: Callable[[int], None] | None
) -> tuple[list[str], list[str]]:
    """The job's finished frames (files of done frames in its render folder) into ``target``."""
    details = show(farm, job)
    if not details["renders"]:
        raise UsageError(f"job {job} was not submitted by farmhand: no render folder known")
    done = {f["frame"] for f in details["frame_states"] if f["state"] == "done"}
    pattern = details["output"] or DEFAULT_OUTPUT
    return shared_storage.collect_done(
        farm.share, details["renders"], pattern, done, target, progress
    )
