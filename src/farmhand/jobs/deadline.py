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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from farmhand.errors import UsageError
from farmhand.jobs import frames as framing
from farmhand.jobs import rest, shared_storage, transfer
from farmhand.jobs.packing import Pack
from farmhand.jobs.shared_storage import DEFAULT_OUTPUT
from farmhand.onhost import jobs as service

WHO = "Deadline's Web Service"
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


@dataclass(frozen=True)
class DeadlineFarm:
    """A boss's way to a Deadline farm: a Web Service and the farm share."""

    url: str
    share: transfer.ShareAccess
    worker_mount: str
    """Where Linux workers mount the farm share: the paths a job names."""

    def submit(
        self,
        ready: Pack,
        frames: str,
        chunk: int,
        name: str,
        output: str,
        progress: Callable[[int], None] | None,
    ) -> dict[str, Any]:
        return submit(self, ready, frames, chunk, name, output, progress)

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
    if not _JOB_ID.fullmatch(job):
        raise UsageError(f"{job!r} is not a Deadline job id (see 'farmhand jobs')")
    return job


def call(farm: DeadlineFarm, method: str, path: str, body: Any = None, text: bool = False) -> Any:
    try:
        return rest.call(farm.url, WHO, method, path, body, text=text)
    except rest.ManagerError as exc:
        raise DeadlineError(str(exc), exc.status) from None


def submit(
    farm: DeadlineFarm,
    ready: Pack,
    frames: str,
    chunk: int,
    name: str,
    output: str,
    progress: Callable[[int], None] | None,
) -> dict[str, Any]:
    """Upload the packed scene into a job folder of its own and submit a ``Blender`` plugin
    job of it. Nothing is left on the share when it fails."""
    listed = framing.parse_frames(frames)
    folder = shared_storage.new_folder()
    scenes = f"{SCENES}/{folder}"
    shared_storage.upload_packed(farm.share, ready, scenes, progress)
    mount = farm.worker_mount.rstrip("/")
    pattern = output or DEFAULT_OUTPUT
    renders = f"{mount}/{RENDERS}/{folder}"
    try:
        job = call(
            farm,
            "POST",
            "/api/jobs",
            {
                "JobInfo": {
                    "Plugin": PLUGIN,
                    "Name": name,
                    "Frames": framing.describe(listed),
                    "ChunkSize": str(chunk),
                    "OutputDirectory0": renders,
                    "OutputFilename0": pattern,
                    "ExtraInfoKeyValue0": f"{FOLDER_KEY}={folder}",
                    "ExtraInfoKeyValue1": f"{OUTPUT_KEY}={pattern}",
                },
                "PluginInfo": {
                    "SceneFile": f"{mount}/{scenes}/{service.SCENE_FILE}",
                    "OutputFile": f"{renders}/{pattern}",
                    "Threads": "0",
                },
                "AuxFiles": [],
                "IdOnly": True,
            },
        )
    except BaseException:
        transfer.remove_tree(farm.share, scenes)
        raise
    job_id = job.get("_id") if isinstance(job, dict) else None
    if not isinstance(job_id, str):
        raise DeadlineError(f"{WHO}'s answer to a submit has no job id")
    return {
        "ok": True,
        "job": job_id,
        "tasks": len(framing.chunks(listed, chunk)),
        "frames": len(listed),
        "blender": "",
        "missing": [str(p) for p in ready.missing],
    }


def list_jobs(farm: DeadlineFarm) -> list[dict[str, Any]]:
    jobs = call(farm, "GET", "/api/jobs")
    if not isinstance(jobs, list):
        raise DeadlineError(f"{WHO}'s job list is not a list")
    return [summary(farm, job, with_frames=False) for job in jobs if isinstance(job, dict)]


def show(farm: DeadlineFarm, job: str) -> dict[str, Any]:
    check_job_id(job)
    try:
        found = call(farm, "GET", f"/api/jobs?JobID={quote(job)}")
    except DeadlineError as exc:
        if exc.status in (400, 404, 500):  # the Web Service's answers to an unknown job id
            raise UsageError(f"the farm has no job {job}") from None
        raise
    if isinstance(found, list):
        found = found[0] if found else None
    if not isinstance(found, dict):
        raise UsageError(f"the farm has no job {job}")
    return summary(farm, found, with_frames=True)


def cancel(farm: DeadlineFarm, job: str) -> None:
    show(farm, job)  # an unknown job: one line, before asking for a change
    call(farm, "PUT", "/api/jobs", {"Command": "suspend", "JobID": job}, text=True)


def summary(farm: DeadlineFarm, job: dict[str, Any], with_frames: bool) -> dict[str, Any]:
    """A Deadline job in the shape of the built-in manager's summaries."""
    job_id = check_job_id(str(job.get("_id", "")))
    answer = call(farm, "GET", f"/api/tasks?JobID={job_id}") or {}
    tasks = answer.get("Tasks") if isinstance(answer, dict) else answer
    frames = []
    for task in tasks if isinstance(tasks, list) else []:
        task = _mapping(task)
        found = _TASK_FRAMES.fullmatch(str(task.get("Frames", "")))
        if found is None:
            continue
        first, last = int(found.group(1)), int(found.group(2) or found.group(1))
        state = TASK_STATES.get(task.get("Stat", 1), "queued")
        worker = str(task.get("Slave") or "")
        for frame in range(first, last + 1):
            item: dict[str, Any] = {"frame": frame, "state": state}
            if worker:
                item["worker"] = worker
            frames.append(item)
    frames.sort(key=lambda f: f["frame"])
    counts = shared_storage.tally(frames)
    props = _mapping(job.get("Props"))
    extra = _mapping(props.get("ExDic"))  # the job's ExtraInfoKeyValue entries
    folder = str(extra.get(FOLDER_KEY, ""))
    running = "running" if counts["running"] else "queued"
    state = JOB_STATES.get(job.get("Stat", 1), running)
    out: dict[str, Any] = {
        "job": job_id,
        "name": str(props.get("Name", "")),
        "state": state,
        "frames": len(frames),
        "renders": f"{RENDERS}/{folder}" if folder else "",
        "output": str(extra.get(OUTPUT_KEY, "")),
        "elapsed": shared_storage.seconds_between(job.get("DateStart"), job.get("DateComp")),
        "eta": None,
        "cost": None,
        "currency": "",
        **counts,
    }
    if with_frames:
        out["frame_states"] = frames
    return out


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def collect(
    farm: DeadlineFarm, job: str, target: Path, progress: Callable[[int], None] | None
) -> tuple[list[str], list[str]]:
    """The job's finished frames (files of done frames in its render folder) into ``target``."""
    details = show(farm, job)
    if not details["renders"]:
        raise UsageError(f"job {job} was not submitted by farmhand: no render folder known")
    done = {f["frame"] for f in details["frame_states"] if f["state"] == "done"}
    return shared_storage.collect_done(
        farm.share, details["renders"], details["output"] or DEFAULT_OUTPUT, done, target, progress
    )
