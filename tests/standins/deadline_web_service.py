"""STAND-IN for Deadline 10's Web Service (its REST API): Deadline cannot be had here. Never
shipped.

It serves the part of the API farmhand's job commands use, as Deadline's REST documentation
describes it (Jobs: ``GET /api/jobs``, ``GET /api/jobs?JobID=``, ``POST /api/jobs`` with
``JobInfo``/``PluginInfo``/``AuxFiles``/``IdOnly``, ``PUT /api/jobs`` with ``Command`` and
``JobID``; Tasks: ``GET /api/tasks?JobID=``), with job documents shaped as Deadline stores them
(``_id``, ``Stat``, ``Props`` with ``Name``, ``Frames``, ``Chunk``, ``Plug``, ``PlugInfo`` and
``ExDic`` for the ExtraInfoKeyValue entries) and numeric task states (2 queued, 3 suspended,
4 rendering, 5 completed). Errors are plain text with an HTTP status, as Deadline's are.

It refuses a submit that lacks what Deadline or its Blender plugin needs (``Plugin``,
``Frames``, ``SceneFile``), a ``ChunkSize`` or frame list Deadline could not read, and a scene
that is not where a Linux worker would find it on the share. ``render`` plays the workers.
"""

from __future__ import annotations

import re
import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from standins.flamenco_manager_api import PNG

REQUIRED_JOB_INFO = ("Plugin", "Frames")
REQUIRED_PLUGIN_INFO = {"Blender": ("SceneFile",)}
COMMANDS = ("suspend", "resume", "requeue", "fail", "archive", "pend", "releasepending")
_FRAMES = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*")


def _frames(spec: str) -> list[int]:
    listed: list[int] = []
    for part in spec.split(","):
        first, _, last = part.partition("-")
        listed += range(int(first), int(last or first) + 1)
    return listed


class StandinWebService:
    def __init__(self, worker_mount: str, share_root: Path) -> None:
        self.worker_mount, self.share_root = worker_mount.rstrip("/"), share_root
        self.jobs: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.refuse: str = ""
        """When set, the next request is answered 500 with this text (a Deadline error)."""
        self.lock = threading.Lock()

    def local(self, worker_path: str) -> Path:
        """Where a Linux worker's path on the farm share is, on this machine."""
        assert worker_path.startswith(self.worker_mount + "/"), worker_path
        return self.share_root / worker_path[len(self.worker_mount) + 1 :]

    def handle(self, method: str, target: str, body: Any) -> tuple[int, Any]:
        with self.lock:
            self.requests.append((method, target, body))
            if self.refuse:
                why, self.refuse = self.refuse, ""
                return 500, why
            url = urlsplit(target)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/api/jobs" and method == "GET":
                if "JobID" in query:
                    return 200, [self.jobs[i] for i in query["JobID"].split(",") if i in self.jobs]
                return 200, list(self.jobs.values())
            if url.path == "/api/jobs" and method == "POST":
                return self._submit(body)
            if url.path == "/api/jobs" and method == "PUT":
                return self._command(body)
            if url.path == "/api/tasks" and method == "GET":
                if "JobID" not in query:
                    return 400, "Error: JobID must be provided."
                if query["JobID"] not in self.jobs:
                    return 500, "Error: the job does not exist."
                return 200, {"ID": query["JobID"], "Tasks": self.tasks[query["JobID"]]}
            return 501, "Not Implemented"

    def _submit(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            return 400, "Error: no message body."
        info, plugin = body.get("JobInfo"), body.get("PluginInfo")
        if not isinstance(info, dict) or not isinstance(plugin, dict):
            return 400, "Error: JobInfo and PluginInfo must be objects."
        if not all(isinstance(v, str) for v in [*info.values(), *plugin.values()]):
            return 400, "Error: job and plugin info values are strings, as in their files."
        missing = [k for k in REQUIRED_JOB_INFO if not info.get(k)]
        needed = REQUIRED_PLUGIN_INFO.get(info.get("Plugin", ""))
        if missing or needed is None:
            return 400, f"Error: the job info lacks {missing or 'a known Plugin'}."
        missing = [k for k in needed if not plugin.get(k)]
        if missing:
            return 400, f"Error: the {info['Plugin']} plugin info lacks {missing}."
        if not _FRAMES.fullmatch(info["Frames"]) or not info.get("ChunkSize", "1").isdigit():
            return 400, "Error: bad Frames or ChunkSize."
        if not isinstance(body.get("AuxFiles", []), list):
            return 400, "Error: AuxFiles must be a list."
        if not self.local(plugin["SceneFile"]).is_file():
            return 400, "Error: the scene file is not on the shared storage."
        job_id = secrets.token_hex(12)
        extra = dict(v.split("=", 1) for k, v in info.items() if k.startswith("ExtraInfoKeyValue"))
        chunk = int(info.get("ChunkSize", "1"))
        self.jobs[job_id] = {
            "_id": job_id,
            "Stat": 1,
            "Date": datetime.now(UTC).isoformat(),
            "DateStart": "",
            "DateComp": "",
            "Props": {
                "Name": info.get("Name", "Untitled"),
                "Frames": info["Frames"],
                "Chunk": chunk,
                "Plug": info["Plugin"],
                "PlugInfo": plugin,
                "ExDic": extra,
            },
        }
        frames = _frames(info["Frames"])
        self.tasks[job_id] = [
            {"_id": f"{job_id}_{i}", "JobID": job_id, "TaskID": i, "Stat": 2, "Slave": "",
             "Errs": 0, "Frames": f"{group[0]}-{group[-1]}"}
            for i, group in enumerate(frames[n : n + chunk] for n in range(0, len(frames), chunk))
        ]  # fmt: skip
        return 200, {"_id": job_id} if body.get("IdOnly") else self.jobs[job_id]

    def _command(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or "Command" not in body:
            return 400, "Error: Command must be provided."
        if body["Command"] not in COMMANDS:
            return 500, f"Error: {body['Command']} is not a valid command."
        job = self.jobs.get(str(body.get("JobID")))
        if job is None:
            return 500, "Error: the job does not exist."
        if body["Command"] == "suspend":
            job["Stat"] = 2
            for task in self.tasks[job["_id"]]:
                if task["Stat"] in (2, 4):
                    task["Stat"] = 3
        return 200, "Success"

    def render(self, job_id: str, worker: str = "worker0001") -> None:
        """The workers' part: every queued task's frames written where OutputFile says (with
        Blender's .png), the task completed."""
        with self.lock:
            job = self.jobs[job_id]
            output = self.local(job["Props"]["PlugInfo"]["OutputFile"])
            output.parent.mkdir(parents=True, exist_ok=True)
            run = re.search(r"#+", output.name)
            width = len(run.group(0)) if run else 0
            job["DateStart"] = datetime.now(UTC).isoformat()
            for task in self.tasks[job_id]:
                if task["Stat"] != 2:
                    continue
                first, _, last = task["Frames"].partition("-")
                for frame in range(int(first), int(last or first) + 1):
                    stem = output.name.replace("#" * width, str(frame).zfill(width), 1)
                    (output.parent / f"{stem}.png").write_bytes(PNG)
                task["Stat"], task["Slave"] = 5, worker
            job["Stat"] = 3
            job["DateComp"] = datetime.now(UTC).isoformat()
