"""The job commands on a Deadline farm: ``submit``, ``jobs``, ``job``, ``cancel`` and
``collect`` through Deadline's Web Service (its REST API: ``/api/jobs``, ``/api/tasks``), with
the same answers as on the built-in manager.

The Web Service comes with the Deadline Client a boss installs against the hub
(``farmhand queue client-command``): started on the boss (``deadlinewebservice``), it listens
on 127.0.0.1:8081, the ``deadline_web_service`` default. Deadline renders from shared storage,
as Flamenco does: the packed scene and its files go into a job folder of their own in the farm
share (``scenes/farmhand-deadline/FOLDER/``), and the job, for Deadline's ``Blender`` plugin,
names them as a Linux worker mounts the share; frames land in
``renders/farmhand-deadline/FOLDER/``, where ``collect`` fetches them over SMB. ``cancel``
suspends the job (Deadline's way to stop its running tasks and keep it for a resume).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from farmhand.errors import UsageError
from farmhand.jobs import frames as framing
from farmhand.jobs import rest, shared_storage
from farmhand.jobs.packing import Pack
from farmhand.onhost import jobs as service

PLUGIN = "Blender"
SCENES = "scenes/farmhand-deadline"
RENDERS = "renders/farmhand-deadline"
FOLDER_KEY = "farmhand.folder"
OUTPUT_KEY = "farmhand.output"
_JOB_ID = re.compile(r"[0-9a-f]{24}")
_TASK_FRAMES = re.compile(r"(\d+)(?:-(\d+))?")
TASK_STATES = {2: "queued", 3: "cancelled", 4: "running", 5: "done", 6: "failed", 8: "queued"}
"""Deadline's task status codes (Queued, Suspended, Rendering, Completed, Failed, Pending) as
farmhand's frame states; any other (Unknown) counts as queued."""
JOB_STATES = {2: "cancelled", 3: "done", 4: "failed", 6: "queued"}
"""Deadline's job status codes (Suspended, Completed, Failed, Pending); Active (1) is running
or queued by its tasks."""


class DeadlineError(rest.ManagerError):
    """Deadline's Web Service refused a request or could not be reached."""


def check_job_id(job: str) -> str:
    if not _JOB_ID.fullmatch(job):
        raise UsageError(f"{job!r} is not a Deadline job id (see 'farmhand jobs')")
    return job


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class DeadlineFarm(shared_storage.SharedStorageFarm):
    """A boss's way to a Deadline farm: a Web Service and the farm share."""

    who = "Deadline's Web Service"
    error = DeadlineError
    scenes = SCENES
    renders = RENDERS

    def queue(
        self, ready: Pack, folder: str, frames: list[int], chunk: int, name: str, pattern: str
    ) -> str:
        """A job for Deadline's ``Blender`` plugin of the job folder's scene."""
        renders = self.worker_path(f"{RENDERS}/{folder}")
        job = self.call(
            "POST",
            "/api/jobs",
            {
                "JobInfo": {
                    "Plugin": PLUGIN,
                    "Name": name,
                    "Frames": framing.describe(frames),
                    "ChunkSize": str(chunk),
                    "OutputDirectory0": renders,
                    "OutputFilename0": pattern,
                    "ExtraInfoKeyValue0": f"{FOLDER_KEY}={folder}",
                    "ExtraInfoKeyValue1": f"{OUTPUT_KEY}={pattern}",
                },
                "PluginInfo": {
                    "SceneFile": self.worker_path(f"{SCENES}/{folder}/{service.SCENE_FILE}"),
                    "OutputFile": f"{renders}/{pattern}",
                    "Threads": "0",
                },
                "AuxFiles": [],
                "IdOnly": True,
            },
        )
        job_id = job.get("_id") if isinstance(job, dict) else None
        if not isinstance(job_id, str):
            raise DeadlineError(f"{self.who}'s answer to a submit has no job id")
        return job_id

    def list_jobs(self) -> list[dict[str, Any]]:
        jobs = self.call("GET", "/api/jobs")
        if not isinstance(jobs, list):
            raise DeadlineError(f"{self.who}'s job list is not a list")
        return [self.summary(job, with_frames=False) for job in jobs if isinstance(job, dict)]

    def show(self, job: str) -> dict[str, Any]:
        check_job_id(job)
        try:
            found = self.call("GET", f"/api/jobs?JobID={quote(job)}")
        except DeadlineError as exc:
            if exc.status in (400, 404, 500):  # the Web Service's answers to an unknown job id
                raise UsageError(f"the farm has no job {job}") from None
            raise
        if isinstance(found, list):
            found = found[0] if found else None
        if not isinstance(found, dict):
            raise UsageError(f"the farm has no job {job}")
        return self.summary(found, with_frames=True)

    def cancel(self, job: str) -> None:
        self.show(job)  # an unknown job: one line, before asking for a change
        self.call("PUT", "/api/jobs", {"Command": "suspend", "JobID": job}, text=True)

    def summary(self, job: dict[str, Any], with_frames: bool) -> dict[str, Any]:
        """A Deadline job, its tasks' frames included."""
        job_id = check_job_id(str(job.get("_id", "")))
        answer = self.call("GET", f"/api/tasks?JobID={job_id}") or {}
        tasks = answer.get("Tasks") if isinstance(answer, dict) else answer
        frames = []
        for task in tasks if isinstance(tasks, list) else []:
            task = _mapping(task)
            found = _TASK_FRAMES.fullmatch(str(task.get("Frames", "")))
            if found is None:
                continue
            first, last = int(found.group(1)), int(found.group(2) or found.group(1))
            state = TASK_STATES.get(task.get("Stat", 1), "queued")
            frames += shared_storage.task_frames(first, last, state, str(task.get("Slave") or ""))
        props = _mapping(job.get("Props"))
        extra = _mapping(props.get("ExDic"))  # the job's ExtraInfoKeyValue entries
        folder = str(extra.get(FOLDER_KEY, ""))
        return shared_storage.summary(
            job_id,
            str(props.get("Name", "")),
            JOB_STATES.get(job.get("Stat", 1), ""),  # Active: running or queued by its tasks
            frames,
            f"{RENDERS}/{folder}" if folder else "",
            str(extra.get(OUTPUT_KEY, "")),
            shared_storage.seconds_between(job.get("DateStart"), job.get("DateComp")),
            with_frames,
        )
