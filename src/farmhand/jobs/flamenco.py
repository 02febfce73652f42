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
from dataclasses import dataclass
from typing import Any

from farmhand.errors import UsageError
from farmhand.jobs import frames as framing
from farmhand.jobs import packing, rest, shared_storage
from farmhand.jobs.packing import Pack
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


def check_job_id(job: str) -> str:
    if not _UUID.fullmatch(job):
        raise UsageError(f"{job!r} is not a Flamenco job id (see 'farmhand jobs')")
    return job


@dataclass(frozen=True)
class FlamencoFarm(shared_storage.SharedStorageFarm):
    """A boss's way to a Flamenco farm: the manager's API on the hub and the farm share (the
    worker mount is the manager's ``farm`` variable)."""

    who = "Flamenco Manager"
    error = FlamencoError
    scenes = SCENES
    renders = RENDERS

    def queue(
        self, ready: Pack, folder: str, frames: list[int], chunk: int, name: str, pattern: str
    ) -> str:
        """A ``simple-blender-render`` job of the job folder's scene."""
        job = self.call(
            "POST",
            "/api/v3/jobs",
            {
                "name": name,
                "type": JOB_TYPE,
                "priority": 50,
                "submitter_platform": "linux",
                "settings": {
                    "blendfile": self.worker_path(f"{SCENES}/{folder}/{service.SCENE_FILE}"),
                    "frames": framing.describe(frames),
                    "chunk_size": chunk,
                    "render_output_root": self.worker_path(RENDERS),
                    "add_path_components": 0,
                    "render_output_path": self.worker_path(f"{RENDERS}/{folder}/{pattern}"),
                    "format": "PNG",
                    "image_file_extension": ".png",
                    "has_previews": False,
                    "scene": packing.scene_name(ready.scene),
                },
                "metadata": {"farmhand.folder": folder, "farmhand.frames": str(len(frames))},
            },
        )
        if not isinstance(job, dict) or not isinstance(job.get("id"), str):
            raise FlamencoError("Flamenco Manager's answer to a submit has no job id")
        return str(job["id"])

    def list_jobs(self) -> list[dict[str, Any]]:
        answer = self.call("GET", "/api/v3/jobs")
        jobs = answer.get("jobs") if isinstance(answer, dict) else None
        if not isinstance(jobs, list):
            raise FlamencoError("Flamenco Manager's job list has no jobs")
        return [self.summary(job, with_frames=False) for job in jobs if isinstance(job, dict)]

    def show(self, job: str) -> dict[str, Any]:
        check_job_id(job)
        try:
            found = self.call("GET", f"/api/v3/jobs/{job}")
        except FlamencoError as exc:
            if exc.status == 404:
                raise UsageError(f"the farm has no job {job}") from None
            raise
        return self.summary(found, with_frames=True)

    def cancel(self, job: str) -> None:
        self.show(job)  # an unknown job: one line, before asking for a change
        self.call(
            "POST",
            f"/api/v3/jobs/{job}/setstatus",
            {"status": "cancel-requested", "reason": "farmhand cancel"},
        )

    def summary(self, job: dict[str, Any], with_frames: bool) -> dict[str, Any]:
        """A Flamenco job, its render tasks' frames included."""
        job_id = check_job_id(str(job.get("id", "")))
        tasks = self.call("GET", f"/api/v3/jobs/{job_id}/tasks") or {}
        frames = []
        for task in tasks.get("tasks") or []:
            found = _TASK.fullmatch(str(task.get("name", "")))
            if found is None:
                continue  # not a render task
            first = int(found.group(1))
            state = STATES.get(str(task.get("status")), "queued")
            worker = (task.get("worker") or {}).get("name", "")
            frames += shared_storage.task_frames(first, int(found.group(2) or first), state, worker)
        folder = str((job.get("metadata") or {}).get("farmhand.folder", ""))
        output = str((job.get("settings") or {}).get("render_output_path", ""))
        return shared_storage.summary(
            job_id,
            str(job.get("name", "")),
            JOB_STATES.get(str(job.get("status")), "queued"),
            frames,
            f"{RENDERS}/{folder}" if folder else "",
            output.rsplit("/", 1)[-1],
            shared_storage.seconds_between(job.get("created"), job.get("updated")),
            with_frames,
        )
