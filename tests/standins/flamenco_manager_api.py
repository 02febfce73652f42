"""STAND-IN for Flamenco Manager's REST API (v3): Flamenco cannot be had here. Never shipped.

It serves the part of the API farmhand's job commands use, with the shapes of Flamenco's own
OpenAPI document (pkg/api/flamenco-openapi.yaml: SubmittedJob, Job, JobsQueryResult,
JobTasksSummary, JobStatusChange) and the task names of its ``simple-blender-render`` job type
(``render-1-3``, ``render-7``). It refuses a submit that lacks what the real manager or that
job type requires, and one whose blend file is not where a Linux worker would find it on the
share. ``render`` plays the workers: each task's frames written as PNGs where the job's
``render_output_path`` says, the task then completed.
"""

from __future__ import annotations

import re
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REQUIRED_JOB = ("name", "type", "priority", "submitter_platform")
REQUIRED_SETTINGS = (
    "frames", "chunk_size", "render_output_root", "add_path_components", "blendfile",
    "format", "image_file_extension", "scene",
)  # fmt: skip
STATUSES = ("active", "canceled", "completed", "failed", "paused", "queued", "cancel-requested")
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
    b"\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)


def _chunks(frames: str, size: int) -> list[str]:
    """Flamenco's frameChunker: "1-5,9" in chunks of 2 -> ["1-2", "3-4", "5", "9"]."""
    listed: list[int] = []
    for part in frames.split(","):
        first, _, last = part.strip().partition("-")
        listed += range(int(first), int(last or first) + 1)
    out = []
    for i in range(0, len(listed), size):
        group = listed[i : i + size]
        out.append(f"{group[0]}-{group[-1]}" if len(group) > 1 else str(group[0]))
    return out


class StandinManager:
    def __init__(self, worker_mount: str, share_root: Path) -> None:
        self.worker_mount, self.share_root = worker_mount.rstrip("/"), share_root
        self.jobs: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.lock = threading.Lock()

    def local(self, worker_path: str) -> Path:
        """Where a Linux worker's path on the farm share is, on this machine."""
        assert worker_path.startswith(self.worker_mount + "/"), worker_path
        return self.share_root / worker_path[len(self.worker_mount) + 1 :]

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        with self.lock:
            self.requests.append((method, path, body))
            if method == "GET" and path == "/api/v3/jobs":
                return 200, {"jobs": list(self.jobs.values())}
            if method == "POST" and path == "/api/v3/jobs":
                return self._submit(body)
            found = re.fullmatch(r"/api/v3/jobs/([0-9a-f-]{36})(/tasks|/setstatus)?", path)
            if found is None or found.group(1) not in self.jobs:
                return 404, {"code": 404, "message": "job not found"}
            job = self.jobs[found.group(1)]
            if method == "GET" and found.group(2) is None:
                return 200, job
            if method == "GET" and found.group(2) == "/tasks":
                return 200, {"tasks": self.tasks[job["id"]]}
            if method == "POST" and found.group(2) == "/setstatus":
                if not (isinstance(body, dict) and body.get("status") in STATUSES
                        and isinstance(body.get("reason"), str)):  # fmt: skip
                    return 400, {"code": 400, "message": "bad JobStatusChange"}
                if job["status"] in ("completed", "canceled"):
                    return 422, {"code": 422, "message": "not valid for the job's status"}
                job["status"] = (
                    "canceled" if body["status"] == "cancel-requested" else body["status"]
                )
                for task in self.tasks[job["id"]]:
                    if task["status"] in ("queued", "active"):
                        task["status"] = "canceled"
                return 204, None
            return 405, {"code": 405, "message": "method not allowed"}

    def _submit(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or any(k not in body for k in REQUIRED_JOB):
            return 400, {"code": 400, "message": f"a job needs {', '.join(REQUIRED_JOB)}"}
        if body["type"] != "simple-blender-render":
            return 400, {"code": 400, "message": f"unknown job type {body['type']}"}
        settings = body.get("settings") or {}
        missing = [k for k in REQUIRED_SETTINGS if k not in settings]
        if missing:
            return 400, {"code": 400, "message": f"missing settings {missing}"}
        if not self.local(settings["blendfile"]).is_file():
            return 400, {"code": 400, "message": "the blend file is not on the shared storage"}
        now = datetime.now(UTC).isoformat()
        job_id = str(uuid.uuid4())
        job = {**body, "id": job_id, "created": now, "updated": now, "status": "queued",
               "activity": "", "steps_completed": 0, "steps_total": 1}  # fmt: skip
        self.jobs[job_id] = job
        self.tasks[job_id] = [
            {"id": str(uuid.uuid4()), "name": f"render-{chunk}", "status": "queued",
             "index_in_job": i, "priority": 50, "task_type": "blender", "updated": now,
             "steps_completed": 0, "steps_total": 1}
            for i, chunk in enumerate(_chunks(settings["frames"], int(settings["chunk_size"])))
        ]  # fmt: skip
        return 200, job

    def render(self, job_id: str, worker: str = "worker0001") -> None:
        """The workers' part: every queued task's frames written, the task completed."""
        with self.lock:
            job = self.jobs[job_id]
            output = self.local(job["settings"]["render_output_path"])
            output.parent.mkdir(parents=True, exist_ok=True)
            for task in self.tasks[job_id]:
                if task["status"] != "queued":
                    continue
                first, _, last = task["name"][len("render-") :].partition("-")
                run = re.search(r"#+", output.name)
                width = len(run.group(0)) if run else 0
                for frame in range(int(first), int(last or first) + 1):
                    stem = output.name.replace("#" * width, str(frame).zfill(width), 1)
                    (output.parent / f"{stem}.png").write_bytes(PNG)
                task["status"] = "completed"
                task["worker"] = {"id": str(uuid.uuid4()), "name": worker, "address": "x"}
            job["status"] = "completed"
            job["updated"] = datetime.now(UTC).isoformat()
