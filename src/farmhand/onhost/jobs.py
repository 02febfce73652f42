"""Render jobs on the hub and their tasks on workers: one file, the whole protocol.

The hub's job service is an SSH forced command, as the lease service is (leases.py): the
unprivileged ``farmhand-jobs`` user's authorized_keys holds one line per boss,
``restrict,command="/usr/bin/python3 /usr/local/lib/farmhand/jobs.py serve BOSS" KEY``, with
that boss's own job key (made by the key store, carried in that boss's bundle only), so the
boss's name comes from the key line, never from the client, and ``farmhand keys revoke BOSS``
(the hub's authorized_keys rebuilt without that line) ends its access. No new port, no shared
password. One JSON request on stdin (at most MAX_REQUEST bytes within SESSION_SECONDS), one
JSON answer on stdout, the session within SESSION_LIMIT.

Operations: ``reserve`` (a new job id; the boss then uploads the scene over SMB into
``scenes/farmhand-jobs/ID/scene.blend``, a temporary name first), ``submit`` (checks that
scene, then ``sbatch --array`` of one task per chunk), ``list``, ``show``, ``cancel``
(``scancel``; only the boss that submitted a job may cancel it). Slurm forgets finished jobs
(no slurmdbd), so the service keeps its own records (``/var/lib/farmhand-jobs/jobs/ID.json``,
written atomically), and each task leaves one status file per frame in
``renders/ID/.farmhand/NNNN.json`` on the share, which the service reads.

A task (``jobs.py task WORKER_CONFIG SPEC``, run by Slurm on a worker as ``farmhand-jobs``):

- fetches the job's scene once per job per worker into a local cache (a lock makes the
  worker's other tasks of the job wait for it and reuse it), from the mounted farm share when
  there is one, else with ``smbclient`` (userspace SMB: works in containers and LXC, which
  have no kernel CIFS);
- checks that its Blender is the version the job needs (the job also asks Slurm for the
  node feature ``blender-VERSION`` with ``--constraint``, so only such workers take it: a
  farm with no such worker refuses the submit at once);
- renders its chunk with ONE ``blender -b --disable-autoexec ... -s FIRST -e LAST -a``
  (``--enable-autoexec`` when the farm allows scripts): the scene is loaded once and each frame
  begins as the last is written, so a worker does not idle between the frames of a chunk.
  Each frame Blender has written (its ``Saved:`` line) goes up while the next renders, from
  a thread of its own: put on the share as ``.NAME.WORKER.part`` and renamed to its final
  name, so a half-written frame is never visible under its final name, and a frame is done
  only once its file is there under that name. A requeued task renders only the frames of its
  chunk not yet on the share;
- retries a frame that Blender fails on this very worker, at most ``max_attempts`` in all
  (counting Slurm's requeues of the task after a node failure, SLURM_RESTART_COUNT), then
  marks it failed with Blender's own reason (its ``Error:`` line) and a hint where farmhand
  knows one (Debian's Blender has no OpenImageDenoise). So a broken frame ends, it never
  loops; a lost worker is Slurm's business (``--requeue``).

Which Blender a job needs: the version the boss asks for (``--blender``), else the one most of
the farm's workers have (ties: the newest), read from Slurm's node features when the job is
submitted and recorded with it, so a mixed farm never renders one job's frames with different
Blenders. Each worker tells Slurm its version (``jobs.py features WORKER_CONFIG``, as root, from
a timer every 10 s): the features ``blender-4.2`` and ``blender-4.2.3`` on its node. Slurm keeps
features set that way only until slurmctld restarts (they are not in slurm.conf, which cannot
know which clone holds which certificate); until the workers tell it again, a queued task that
needs them waits (reason ``BadConstraints``) and then runs.

Runs unchanged on Python 3.6 (EL 8's python3): standard library only.
"""

import base64
import collections
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import queue
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple
from typing import Counter as TypingCounter

LIB = "/usr/local/lib/farmhand/jobs.py"
JOBS_USER = "farmhand-jobs"
JOBS_HOME = "/var/lib/farmhand-jobs"
"""The job user's home: root's, so it cannot change its own authorized_keys."""
JOBS_AUTHORIZED_KEYS = JOBS_HOME + "/.ssh/authorized_keys"
HUB_CONFIG = "/etc/farmhand/jobs.json"
WORKER_CONFIG = "/etc/farmhand/jobs-worker.json"
SCENES = "scenes/farmhand-jobs"
"""Where bosses upload job scenes, inside the farm share (one folder per job)."""
SCENE_FILE = "scene.blend"
FILES = "scenes/farmhand-files"
"""The scenes' dependencies (textures, linked libraries, caches), one file per content, named
by its sha256, in the farm share: a file many jobs use is uploaded once. A job lists its own as
(path inside the job folder, sha256); a worker fetches each into its copy of the job folder and
checks its sha256."""
MAX_FILES = 2000
"""The most dependencies one job may have (its list rides in the batch script, which Slurm
limits to 4 MB by default)."""
RENDERS = "renders"
STATUS_DIR = ".farmhand"
MAX_REQUEST = 1 << 20
SESSION_SECONDS = 20.0
SESSION_LIMIT = 60
MAX_TASKS = 10000
"""The most tasks (chunks) one job may have: Slurm's default MaxArraySize is 1001, so a job
with more tasks than the farm's Slurm allows is refused by sbatch with its own reason."""
DEFAULT_OUTPUT = "frame_####"

HUB_DEFAULTS = {
    "share_root": "/srv/farmhand/farm",
    "state_dir": JOBS_HOME + "/jobs",
    "partition": "render",
    "sbatch": "sbatch",
    "scancel": "scancel",
    "squeue": "squeue",
    "sinfo": "sinfo",
    "python": "/usr/bin/python3",
    "lib": LIB,
    "worker_config": WORKER_CONFIG,
    "max_attempts": 2,
    "hourly_price": 0.0,
    "currency": "",
    "slurm_conf": "",
}  # type: Dict[str, Any]

WORKER_DEFAULTS = {
    "mount": "/mnt/farmhand/farm",
    "hub": "",
    "share": "farm",
    "credentials": "",
    "smbclient": "smbclient",
    "cache": "/var/tmp/farmhand-jobs",
    "blender": "blender",
    "autoexec": False,
    "name": "",
    "share_patience": 300,
    "cache_hours": 24,
    "scontrol": "scontrol",
    "lease_state": "/run/farmhand/lease.json",
    "features_memo": "/run/farmhand/blender-features.json",
    "slurm_conf": "",
}  # type: Dict[str, Any]
"""``lease_state``: the picker's record of the certificate (so the Slurm node) this worker
holds; ``features_memo``: root's memo of its Blender version for ``features``, kept out of the
job user's cache, which root must not write in.

``share_patience``: how many seconds a task keeps trying a share it cannot reach (the hub
rebooting takes a minute or two) before it gives up and Slurm sees it fail. ``cache_hours``:
a job's scene stays in a worker's cache until no task of it has started for this long."""

_UNREACHABLE = re.compile(
    r"NT_STATUS_(IO_TIMEOUT|CONNECTION_REFUSED|CONNECTION_RESET|CONNECTION_DISCONNECTED|"
    r"HOST_UNREACHABLE|NETWORK_UNREACHABLE|INVALID_NETWORK_RESPONSE|END_OF_FILE)"
    r"|Connection to \S+ failed"
)
"""smbclient's words for "the hub is not there" (as opposed to a refused file operation)."""

_JOB = re.compile(r"[1-9][0-9]{0,9}")
_BOSS = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?")
_OUTPUT = re.compile(r"[A-Za-z0-9_.-]{0,60}#{1,8}[A-Za-z0-9_.-]{0,60}")
_VERSION = re.compile(r"[0-9]+\.[0-9]+(?:\.[0-9]+)?")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PATH_PART = re.compile('[^\x00-\x1f\x7f-\x9f"*:;<>?\\\\|/]{1,255}')
"""One folder or file name of a dependency's path: no control characters, nothing smbclient's
command line or Windows cannot carry (``" * : ; < > ? \\ |``)."""
_NAME = re.compile("[^\x00-\x1f\x7f-\x9f\u2028\u2029/\\\\]{1,80}")
"""Patterns are used with fullmatch only: ``$`` would accept a final newline."""

HINTS = {
    "Build without OpenImageDenoiser": (
        "this worker's Blender is built without OpenImageDenoise (Debian's is): turn Cycles "
        "denoising off in the scene (Render Properties > Sampling > Denoise, and the View "
        "Layer's Denoising Data), or choose the OptiX denoiser on NVIDIA workers, or install "
        "Blender from blender.org on the workers"
    ),
}
"""What farmhand knows to say about some of Blender's reasons."""


class Refused(Exception):
    """What was asked cannot be done; ``reason`` is a stable word, the text says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --- files ----------------------------------------------------------------------------------


def atomic_write(path: str, data: bytes, mode: int = 0o644) -> None:
    """``path`` holds all of ``data`` or what it held before (temporary file, fsync, rename)."""
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read_json(path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def blend_kind(head: bytes) -> str:
    """'' when ``head`` (a file's first bytes) starts a .blend: plain (``BLENDER``), or gzip or
    zstd compressed (Blender's "Compress" option); else what it seems to be instead."""
    if head.startswith(b"BLENDER"):
        return ""
    if head.startswith(b"\x1f\x8b"):
        try:
            inner = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 16)
        except zlib.error:
            return "a gzip file that is not a compressed .blend"
        return "" if inner.startswith(b"BLENDER") else "a gzip file that is not a .blend"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return ""  # zstd (Blender 3.0+): the standard library cannot look inside; trust it
    if not head:
        return "an empty file"
    return "not a .blend file (it does not start with BLENDER)"


def read_head(path: str, size: int = 4096) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(size)


def saved_with(head: bytes) -> str:
    """The Blender version a plain .blend was saved with (``BLENDER-v304`` is 3.4), or ''."""
    match = re.match(rb"^BLENDER[-_][vV](\d)(\d\d)", head)
    return "{}.{}".format(int(match.group(1)), int(match.group(2))) if match else ""


def file_path_problem(path: Any) -> str:
    """Why ``path`` cannot be a dependency's path inside a job folder, or ''."""
    if not isinstance(path, str) or not path or len(path) > 1024:
        return "not a path of 1 to 1024 characters"
    for part in path.split("/"):
        if part in ("", ".", "..") or part.startswith("."):
            return "a name that is empty or starts with a dot"
        if not _PATH_PART.fullmatch(part):
            return 'a control character or one of " * : ; < > ? \\ |'
    if path == SCENE_FILE:
        return "the job's own scene file name"
    return ""


def _check_files(config: Dict[str, Any], job: str, files: Any) -> List[List[str]]:
    """A job's dependencies from a submit request: [[path, sha256], ...], each already on the
    share."""
    if files is None:
        return []
    if not isinstance(files, list) or len(files) > MAX_FILES:
        raise Refused(
            "bad-request", "files must be a list of at most {} [PATH, SHA256]".format(MAX_FILES)
        )
    out = []  # type: List[List[str]]
    seen = set()
    for item in files:
        if not (isinstance(item, list) and len(item) == 2):
            raise Refused("bad-request", "bad file {!r}: [PATH, SHA256]".format(item))
        path, digest = item
        problem = file_path_problem(path)
        if problem:
            raise Refused("bad-request", "bad file path {!r}: {}".format(path, problem))
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise Refused("bad-request", "bad sha256 {!r} for {}".format(digest, path))
        if path.lower() in seen:
            raise Refused("bad-request", "file {} is listed twice".format(path))
        seen.add(path.lower())
        if not os.path.isfile(os.path.join(config["share_root"], FILES, digest)):
            raise Refused(
                "no-file",
                "job {}'s file {} is not on the share ({}/{})".format(job, path, FILES, digest),
            )
        out.append([path, digest])
    return out


# --- the hub: job records -------------------------------------------------------------------


def load_hub_config(path: str = HUB_CONFIG) -> Dict[str, Any]:
    config = dict(HUB_DEFAULTS)
    data = _read_json(path)
    if data:
        config.update(data)
    return config


def _slurm_env(config: Dict[str, Any]) -> Dict[str, str]:
    """The environment for Slurm's tools: SLURM_CONF when the config names one (tests)."""
    env = dict(os.environ)
    if config.get("slurm_conf"):
        env["SLURM_CONF"] = config["slurm_conf"]
    return env


def _record_path(config: Dict[str, Any], job: str) -> str:
    return os.path.join(config["state_dir"], job + ".json")


def load_job(config: Dict[str, Any], job: Any) -> Dict[str, Any]:
    if not isinstance(job, str) or not _JOB.fullmatch(job):
        raise Refused("unknown", "{!r} is not a job id (job ids are numbers)".format(job))
    record = _read_json(_record_path(config, job))
    if record is None:
        raise Refused("unknown", "the hub has no job {}".format(job))
    return record


def save_job(config: Dict[str, Any], record: Dict[str, Any]) -> None:
    atomic_write(_record_path(config, record["job"]), (json.dumps(record) + "\n").encode())


def _job_ids(config: Dict[str, Any]) -> List[str]:
    try:
        names = os.listdir(config["state_dir"])
    except OSError:
        return []
    ids = [n[: -len(".json")] for n in names if n.endswith(".json")]
    return sorted((i for i in ids if _JOB.fullmatch(i)), key=int)


@contextlib.contextmanager
def _locked(config: Dict[str, Any]) -> Any:
    fd = os.open(os.path.join(config["state_dir"], "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def scene_path(config: Dict[str, Any], job: str) -> str:
    return os.path.join(config["share_root"], SCENES, job, SCENE_FILE)


def reserve(config: Dict[str, Any], boss: str, now: float) -> Dict[str, Any]:
    """A new job id for ``boss``, and where its scene goes on the share."""
    with _locked(config):
        ids = _job_ids(config)
        job = str(int(ids[-1]) + 1 if ids else 1)
        save_job(config, {"job": job, "boss": boss, "state": "reserved", "created": now})
    return {"ok": True, "job": job, "scene": "{}/{}/{}".format(SCENES, job, SCENE_FILE)}


def _check_chunks(value: Any) -> List[List[int]]:
    if not isinstance(value, list) or not value or len(value) > MAX_TASKS:
        raise Refused("bad-request", "a job needs 1 to {} chunks of frames".format(MAX_TASKS))
    out = []  # type: List[List[int]]
    for item in value:
        ok = (
            isinstance(item, list)
            and len(item) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in item)
            and 1 <= item[0] <= item[1]
        )
        if not ok:
            raise Refused(
                "bad-request", "bad chunk {!r}: [FIRST, LAST], 1 <= FIRST <= LAST".format(item)
            )
        out.append([item[0], item[1]])
    return out


def task_script(config: Dict[str, Any], spec: Dict[str, Any]) -> str:
    """The batch script: this very file's ``task`` on the worker, the job's spec as base64 (so
    no name can break out of its quotes)."""
    blob = base64.b64encode(json.dumps(spec, sort_keys=True).encode()).decode()
    return "#!/bin/sh\nexec {} {} task {} {}\n".format(
        config["python"], config["lib"], config["worker_config"], blob
    )


def submit(
    config: Dict[str, Any], boss: str, request: Dict[str, Any], now: float
) -> Dict[str, Any]:
    """Queue a reserved job once its scene is on the share and is a .blend."""
    record = load_job(config, request.get("job"))
    job = record["job"]
    if record.get("boss") != boss:
        raise Refused("unknown", "the hub has no job {} of this boss".format(job))
    if record.get("state") != "reserved":
        raise Refused("bad-request", "job {} is already {}".format(job, record.get("state")))
    chunks = _check_chunks(request.get("chunks"))
    output = request.get("output") or DEFAULT_OUTPUT
    if not isinstance(output, str) or not _OUTPUT.fullmatch(output):
        raise Refused(
            "bad-request",
            "bad output pattern {!r}: letters, digits, _ . - and one run of # for the frame "
            "number (like frame_####)".format(output),
        )
    blender = request.get("blender") or ""
    if not isinstance(blender, str) or (blender and not _VERSION.fullmatch(blender)):
        raise Refused("bad-request", "bad Blender version {!r} (like 3.4.1)".format(blender))
    asked = bool(blender)
    if not asked:
        blender = farm_blender(config)
    name = request.get("name") or "job {}".format(job)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise Refused("bad-request", "bad job name {!r}".format(name))
    path = scene_path(config, job)
    try:
        head = read_head(path)
    except OSError:
        raise Refused(
            "no-scene",
            "job {} has no scene on the share ({}/{}/{})".format(job, SCENES, job, SCENE_FILE),
        ) from None
    kind = blend_kind(head)
    if kind:
        raise Refused("not-blend", "the scene of job {} is {}".format(job, kind))
    files = _check_files(config, job, request.get("files"))
    max_attempts = int(config["max_attempts"])
    spec = {
        "job": job,
        "chunks": chunks,
        "output": output,
        "blender": blender,
        "max_attempts": max_attempts,
        "scene": "{}/{}/{}".format(SCENES, job, SCENE_FILE),
        "files": files,
        "renders": "{}/{}".format(RENDERS, job),
    }
    renders = os.path.join(config["share_root"], RENDERS, job)
    argv = [
        config["sbatch"], "--parsable", "--requeue",
        "--partition=" + config["partition"],
        "--job-name=farmhand-" + job,
        "--array=0-{}".format(len(chunks) - 1),
        "--output=/dev/null",
        "--chdir=/tmp",
    ]  # fmt: skip
    if blender:
        argv.append("--constraint=blender-" + blender)
    try:
        result = subprocess.run(
            argv,
            input=task_script(config, spec).encode(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=30,
            env=_slurm_env(config),
        )
    except FileNotFoundError:
        raise Refused(
            "no-manager",
            "the hub has no Slurm (no {}): farmhand's jobs need the built-in render manager "
            '(render_manager = "slurm" in farm.toml, then farmhand deploy)'.format(
                config["sbatch"]
            ),
        ) from None
    except subprocess.TimeoutExpired:
        raise Refused("manager", "Slurm did not answer within 30 s") from None
    if result.returncode != 0:
        why = result.stderr.decode("utf-8", "replace").strip().splitlines()
        text = why[-1] if why else "sbatch exit {}".format(result.returncode)
        if blender and ("feature" in text.lower() or "configuration is not available" in text):
            text = "no worker has Blender {} ({})".format(blender, text)
            if not asked:
                text += "; the workers may be telling Slurm their Blender again: try once more"
        raise Refused("manager", "Slurm refused job {}: {}".format(job, text))
    slurm_id = result.stdout.decode().strip().split(";")[0]
    record.update(
        state="queued",
        name=name,
        chunks=chunks,
        frames=sum(b - a + 1 for a, b in chunks),
        output=output,
        blender=blender,
        saved_with=saved_with(head),
        files=len(files),
        slurm=slurm_id,
        submitted=now,
        max_attempts=max_attempts,
        renders=spec["renders"],
    )
    _job_folders(renders)
    save_job(config, record)
    return {
        "ok": True,
        "job": job,
        "slurm": slurm_id,
        "tasks": len(chunks),
        "frames": record["frames"],
        "blender": blender,
    }


def farm_blender(config: Dict[str, Any]) -> str:
    """The Blender version most workers have (ties: the newest), from their Slurm node
    features; '' when no worker has told Slurm yet (the job then takes any worker)."""
    try:
        result = subprocess.run(
            [config["sinfo"], "-h", "-N", "-o", "%N %f"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            timeout=30,
            env=_slurm_env(config),
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    if result.returncode != 0:
        return ""
    return most_common_blender(result.stdout.decode("utf-8", "replace"))


def most_common_blender(sinfo: str) -> str:
    """The most common full Blender version in ``sinfo -h -N -o "%N %f"`` lines (each node
    once, whatever its partitions); ties go to the newest."""
    versions = {}  # type: Dict[str, str]
    for line in sinfo.splitlines():
        fields = line.split()
        if len(fields) != 2:
            continue
        found = [f[len("blender-") :] for f in fields[1].split(",") if f.startswith("blender-")]
        found = [v for v in found if _VERSION.fullmatch(v)]
        if found:
            versions[fields[0]] = max(found, key=_version_key)
    counts = collections.Counter(versions.values())
    if not counts:
        return ""
    return max(counts, key=lambda v: (counts[v], _version_key(v)))


def _version_key(version: str) -> Tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _job_folders(renders: str) -> None:
    """The job's folder in renders/ and its status folder, group-writable for the workers and
    not sticky (2775, unlike renders/ itself): a frame a lost worker began is finished by
    another, whose files replace the lost one's."""
    for folder in (renders, os.path.join(renders, STATUS_DIR)):
        with contextlib.suppress(OSError):
            os.makedirs(folder, exist_ok=True)
            os.chmod(folder, 0o2775)  # noqa: S103 (the workers group: see above)


def frame_name(output: str, frame: int) -> str:
    """``frame_####`` and 7 -> ``frame_0007`` (Blender's rule: the run of # is the padding)."""
    match = re.search(r"#+", output)
    if match is None:
        return output + str(frame)
    width = len(match.group(0))
    return output[: match.start()] + str(frame).zfill(width) + output[match.end() :]


def frames_of(record: Dict[str, Any], config: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Each frame of a job with its state: done (its file is on the share under its final
    name), failed, running, or queued (cancelled when the job was)."""
    folder = os.path.join(
        config["share_root"], record.get("renders") or RENDERS + "/" + record["job"]
    )
    try:
        present = set(os.listdir(folder))
    except OSError:
        present = set()
    out = []
    for first, last in record.get("chunks", []):
        for frame in range(first, last + 1):
            status = _read_json(os.path.join(folder, STATUS_DIR, "{:06d}.json".format(frame))) or {}
            state = status.get("state", "queued")
            if state == "done" and status.get("file") not in present:
                state = "running"  # its file is not (yet) there: not done
            if record.get("state") == "cancelled" and state in ("queued", "running"):
                state = "cancelled"
            item = {"frame": frame, "state": state}
            for key in ("worker", "start", "end", "attempts", "error", "hint", "file"):
                if key in status:
                    item[key] = status[key]
            out.append(item)
    return out


def summary(
    record: Dict[str, Any], config: Dict[str, Any], now: float, with_frames: bool
) -> Dict[str, Any]:
    frames = frames_of(record, config)
    counts = {k: 0 for k in ("done", "running", "queued", "failed", "cancelled")}
    for item in frames:
        counts[item["state"]] = counts.get(item["state"], 0) + 1
    seconds = [
        f["end"] - f["start"]
        for f in frames
        if f["state"] == "done" and "end" in f and "start" in f
    ]
    busy = sum(max(0.0, (f.get("end") or now) - f["start"]) for f in frames if "start" in f)
    submitted = record.get("submitted")
    ends = [f["end"] for f in frames if "end" in f]
    finished = counts["queued"] + counts["running"] == 0 and bool(frames)
    elapsed = None  # type: Optional[float]
    if submitted:
        elapsed = (max(ends) if finished and ends else now) - submitted
    eta = None  # type: Optional[float]
    left = counts["queued"] + counts["running"]
    if seconds and left:
        per = sum(seconds) / len(seconds)
        eta = per * left / max(1, counts["running"])
    price = float(config.get("hourly_price") or 0)
    out = {
        "job": record["job"],
        "name": record.get("name", ""),
        "boss": record.get("boss", ""),
        "state": record.get("state"),
        "slurm": record.get("slurm", ""),
        "frames": len(frames),
        "blender": record.get("blender", ""),
        "saved_with": record.get("saved_with", ""),
        "output": record.get("output", ""),
        "renders": record.get("renders", ""),
        "elapsed": elapsed,
        "eta": eta,
        "worker_seconds": busy,
        "cost": busy / 3600.0 * price if price else None,
        "currency": config.get("currency", ""),
    }
    out.update(counts)
    if record.get("state") == "queued" and finished:
        out["state"] = "failed" if counts["failed"] else "done"
    elif record.get("state") == "queued" and counts["running"]:
        out["state"] = "running"
    if with_frames:
        out["frame_states"] = frames
    return out


def cancel(config: Dict[str, Any], boss: str, job: Any) -> Dict[str, Any]:
    record = load_job(config, job)
    if record.get("boss") != boss:
        raise Refused("unknown", "the hub has no job {} of this boss".format(record["job"]))
    if record.get("slurm"):
        try:
            result = subprocess.run(
                [config["scancel"], record["slurm"]],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                timeout=30,
                env=_slurm_env(config),
            )
        except FileNotFoundError:
            raise Refused("no-manager", "the hub has no Slurm (no scancel)") from None
        if result.returncode != 0:
            why = result.stderr.decode("utf-8", "replace").strip()
            raise Refused("manager", "Slurm could not cancel job {}: {}".format(record["job"], why))
    record["state"] = "cancelled"
    save_job(config, record)
    return {"ok": True, "job": record["job"]}


def handle(request: Any, boss: str, config: Dict[str, Any], now: float) -> Dict[str, Any]:
    if not isinstance(request, dict) or not isinstance(request.get("op"), str):
        raise Refused("bad-request", "not a job request")
    op = request["op"]
    if op == "reserve":
        return reserve(config, boss, now)
    if op == "submit":
        return submit(config, boss, request, now)
    if op == "list":
        jobs = []
        for job in _job_ids(config):
            record = load_job(config, job)
            if record.get("state") != "reserved":
                jobs.append(summary(record, config, now, with_frames=False))
        return {"ok": True, "jobs": jobs}
    if op == "show":
        record = load_job(config, request.get("job"))
        if record.get("state") == "reserved":
            raise Refused("unknown", "job {} was never submitted".format(record["job"]))
        return {"ok": True, "job": summary(record, config, now, with_frames=True)}
    if op == "cancel":
        return cancel(config, boss, request.get("job"))
    if op == "abandon":  # the boss could not upload the scene: forget the reservation
        record = load_job(config, request.get("job"))
        if record.get("boss") == boss and record.get("state") == "reserved":
            with contextlib.suppress(OSError):
                os.unlink(_record_path(config, record["job"]))
        return {"ok": True}
    raise Refused("bad-request", "unknown operation {!r}".format(op))


class _SessionOver(Exception):
    pass


def _session_over(signum: int, frame: Any) -> None:
    raise _SessionOver()


def read_request(fd: int = 0, limit: int = MAX_REQUEST, seconds: float = SESSION_SECONDS) -> bytes:
    """The request on ``fd`` up to its end: at most ``limit`` bytes within ``seconds``."""
    deadline = time.monotonic() + seconds
    chunks = []  # type: List[bytes]
    size = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Refused("timeout", "no complete request within {:.0f} s".format(seconds))
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        data = os.read(fd, limit + 1 - size)
        if not data:
            return b"".join(chunks)
        chunks.append(data)
        size += len(data)
        if size > limit:
            raise Refused("bad-request", "request too long")


def serve(boss: str, config_path: str = HUB_CONFIG) -> int:
    """The forced command for ``boss`` (named by its authorized_keys line)."""
    signal.signal(signal.SIGALRM, _session_over)
    signal.alarm(SESSION_LIMIT)
    try:
        try:
            if not _BOSS.fullmatch(boss):
                raise Refused("bad-request", "bad boss name in the hub's authorized_keys")
            config = load_hub_config(config_path)
            raw = read_request()
            try:
                request = json.loads(raw.decode("utf-8"))
            except ValueError:
                request = None
            answer = handle(request, boss, config, time.time())
        except Refused as exc:
            answer = {"ok": False, "reason": exc.reason, "message": str(exc)}
        except _SessionOver:
            answer = {"ok": False, "reason": "busy", "message": "the hub could not answer in time"}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            answer = {
                "ok": False,
                "reason": "hub-error",
                "message": "the hub failed: {}".format(exc),
            }
    finally:
        signal.alarm(0)
    sys.stdout.write(json.dumps(answer) + "\n")
    return 0


# --- workers: one Slurm array task --------------------------------------------------------


class Share:
    """The farm share from a worker: the mounted share when there is one, else smbclient."""

    def __init__(self, config: Dict[str, Any]) -> None:
        self.config = config
        mount = config.get("mount") or ""
        self.mount = mount if mount and os.path.isdir(os.path.join(mount, RENDERS)) else ""

    def _smb(self, commands: str) -> str:
        """Run smbclient ``commands`` (its output); while the hub cannot be reached (it
        reboots), try again for ``share_patience`` seconds, so a frame rendered meanwhile is
        not lost."""
        c = self.config
        argv = [
            c["smbclient"], "//{}/{}".format(c["hub"], c["share"]), "-A", c["credentials"],
            "-E", "-t", "20", "-c", commands,
        ]  # fmt: skip
        deadline = time.monotonic() + float(c.get("share_patience") or 0)
        pause = 2.0
        while True:
            result = subprocess.run(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600
            )
            text = result.stdout.decode("utf-8", "replace")
            bad = [ln for ln in text.splitlines() if "NT_STATUS_" in ln and "COLLISION" not in ln]
            if result.returncode == 0 and not bad:
                return text
            last = ((bad or text.splitlines() or ["failed"])[-1]).strip()
            if not _UNREACHABLE.search(text) or time.monotonic() + pause > deadline:
                raise OSError(errno.EIO, "smbclient: " + last)
            sys.stderr.write("farmhand: the hub's share is unreachable ({}); again\n".format(last))
            time.sleep(pause)
            pause = min(pause * 2, 15.0)

    def get(self, remote: str, local: str) -> None:
        if self.mount:
            shutil.copyfile(os.path.join(self.mount, remote), local)
        else:
            self._smb('get "{}" "{}"'.format(remote, local))

    def get_many(self, pairs: List[Tuple[str, str]]) -> None:
        """Each (remote, local): one smbclient run per 100 files, not one per file. Remote
        names are farmhand's own (hex digests), local ones the worker's cache."""
        if self.mount:
            for remote, local in pairs:
                shutil.copyfile(os.path.join(self.mount, remote), local)
            return
        for start in range(0, len(pairs), 100):
            batch = pairs[start : start + 100]
            self._smb("; ".join('get "{}" "{}"'.format(r, loc) for r, loc in batch))

    def names(self, remote: str) -> List[str]:
        """The file names in folder ``remote`` (farmhand's own names: no spaces)."""
        if self.mount:
            return os.listdir(os.path.join(self.mount, remote))
        listed = self._smb('ls "{}/*"'.format(remote))
        return [ln.split()[0] for ln in listed.splitlines() if ln.startswith("  ") and ln.split()]

    def makedirs(self, remote: str) -> None:
        if self.mount:
            os.makedirs(os.path.join(self.mount, remote), exist_ok=True)
            return
        parts = remote.split("/")
        for i in range(1, len(parts) + 1):
            with contextlib.suppress(OSError):  # exists already
                self._smb('mkdir "{}"'.format("/".join(parts[:i])))

    def put(self, local: str, remote: str) -> None:
        """``local`` becomes ``remote`` whole or not at all: written as ``.NAME.part``, then
        renamed over the final name."""
        folder, name = remote.rsplit("/", 1)
        # Each writer its own temporary name: another worker's leftover (it was lost mid-put)
        # is a file this one may not overwrite, only replace by a rename.
        part = "{}/.{}.{}.part".format(
            folder, name, re.sub(r"[^A-Za-z0-9-]", "", self.config["name"])
        )
        if self.mount:
            target = os.path.join(self.mount, part)
            shutil.copyfile(local, target)
            with open(target, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(target, os.path.join(self.mount, remote))
        else:
            self._smb('put "{}" "{}"; rename "{}" "{}" -f'.format(local, part, part, remote))


def load_worker_config(path: str) -> Dict[str, Any]:
    config = dict(WORKER_DEFAULTS)
    data = _read_json(path)
    if data:
        config.update(data)
    if not config.get("name"):
        # Under Slurm the node's name, which is the certificate's (a clone's hostname is not).
        config["name"] = os.environ.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]
    return config


def job_cache(config: Dict[str, Any], spec: Dict[str, Any]) -> str:
    """The job's folder in this worker's scene cache (made, 0700, if it is not there)."""
    folder = os.path.join(str(config["cache"]), str(spec["job"]))
    os.makedirs(folder, mode=0o700, exist_ok=True)
    return folder


def fetch_scene(share: Share, config: Dict[str, Any], spec: Dict[str, Any]) -> str:
    """The job's scene in this worker's cache, fetched once per job: the first task fetches it
    under a lock, the job's later tasks on this worker find it there."""
    folder = job_cache(config, spec)
    prune_cache(config["cache"], spec["job"], float(config.get("cache_hours") or 24) * 3600)
    scene = os.path.join(folder, SCENE_FILE)
    fd = os.open(os.path.join(folder, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.utime(folder)  # in use: not pruned while the job's tasks keep coming
        if not os.path.exists(scene):  # the scene comes last: there, the job folder is whole
            fetch_files(share, folder, spec.get("files") or [])
            tmp = scene + ".part"
            share.get(spec["scene"], tmp)
            os.replace(tmp, scene)
            _append(os.path.join(folder, "fetches.log"), "{}\n".format(time.time()))
    finally:
        os.close(fd)
    return scene


class FetchError(Exception):
    """A job's file could not be had whole: every frame of the task fails with this reason."""


def fetch_files(share: Share, folder: str, files: List[List[str]]) -> None:
    """The job's dependencies into ``folder`` at their paths, each checked against its sha256
    (a file on the share under the wrong name fails the task, it is never rendered with)."""
    store = os.path.join(folder, ".files")
    os.makedirs(store, exist_ok=True)
    wanted = sorted({digest for _, digest in files})
    missing = [d for d in wanted if not os.path.exists(os.path.join(store, d))]
    share.get_many([("{}/{}".format(FILES, d), os.path.join(store, d + ".part")) for d in missing])
    for digest in missing:
        part = os.path.join(store, digest + ".part")
        if sha256_of(part) != digest:
            os.unlink(part)
            raise FetchError(
                "the share's {}/{} does not match its sha256: upload the job again".format(
                    FILES, digest
                )
            )
        os.replace(part, os.path.join(store, digest))
    for path, digest in files:
        if file_path_problem(path):
            raise FetchError("bad file path {!r} in the job".format(path))
        target = os.path.join(folder, *path.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.lexists(target):
            os.unlink(target)
        try:
            os.link(os.path.join(store, digest), target)
        except OSError:  # a cache on a file system without hard links
            shutil.copyfile(os.path.join(store, digest), target)


def sha256_of(path: str) -> str:
    """The file's sha256, hex (also how a boss names a dependency in the share's store)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prune_cache(cache: str, current: str, max_age: float) -> List[str]:
    """Remove the scenes of other jobs that no task of theirs used for ``max_age`` seconds
    (a job's folder is touched by each of its tasks); a folder whose lock is held is in use and
    stays. Returns the jobs removed."""
    removed = []  # type: List[str]
    now = time.time()
    for name in sorted(os.listdir(cache)):
        folder = os.path.join(cache, name)
        if name == current or not _JOB.fullmatch(name) or not os.path.isdir(folder):
            continue
        try:
            if now - os.stat(folder).st_mtime < max_age:
                continue
            fd = os.open(os.path.join(folder, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        try:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(name)
        finally:
            os.close(fd)
    return removed


def _append(path: str, text: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)


def known_blender_version(config: Dict[str, Any], memo: Optional[str] = None) -> str:
    """The worker's Blender version, asked once per Blender binary (``blender --version``
    takes a second that would be idle time before every task), remembered in ``memo`` (by
    default in the job user's cache)."""
    path = shutil.which(config["blender"]) or config["blender"]
    try:
        info = os.stat(path)
    except OSError:
        return ""
    key = "{} {} {}".format(os.path.realpath(path), info.st_mtime_ns, info.st_size)
    memo = memo or os.path.join(config["cache"], "blender-version.json")
    known = _read_json(memo) or {}
    if known.get("key") == key:
        return str(known.get("version", ""))
    version = blender_version(path)
    if version:
        tmp = "{}.{}".format(memo, os.getpid())
        with contextlib.suppress(OSError):
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump({"key": key, "version": version}, handle)
            os.replace(tmp, memo)
    return version


def blender_features(version: str) -> List[str]:
    """The Slurm node features of a worker with Blender ``version``: ``blender-4.2`` and,
    for a full version, ``blender-4.2.3``, so a job may ask for either."""
    if not _VERSION.fullmatch(version):
        return []
    parts = version.split(".")
    features = ["blender-" + ".".join(parts[:2])]
    if len(parts) > 2:
        features.append("blender-" + version)
    return features


_NODE = re.compile(r"[A-Za-z0-9-]{1,64}")


def advertise_features(config: Dict[str, Any]) -> int:
    """Tell Slurm this worker's Blender version as features of its node (run as root: only
    an administrator may change a node), when Slurm does not show them already."""
    lease = _read_json(config["lease_state"]) or {}
    name = lease.get("name") if isinstance(lease, dict) else None
    if not isinstance(name, str) or not _NODE.fullmatch(name):
        sys.stderr.write("features: no leased certificate in {}\n".format(config["lease_state"]))
        return 1
    version = known_blender_version(config, config["features_memo"])
    wanted = blender_features(version)
    if not wanted:
        sys.stderr.write(
            "features: cannot tell this worker's Blender version ({} --version)\n".format(
                config["blender"]
            )
        )
        return 1
    shown = _scontrol(config, ["show", "node", "-o", name])
    if shown is None:
        return 1
    available = _features_field(shown, "AvailableFeatures")
    active = _features_field(shown, "ActiveFeatures")
    others = [f for f in available if not f.startswith("blender-")]
    features = others + wanted
    if sorted(available) == sorted(features) and sorted(active) == sorted(features):
        return 0
    joined = ",".join(features)
    fields = ["NodeName=" + name, "AvailableFeatures=" + joined, "ActiveFeatures=" + joined]
    if _scontrol(config, ["update", *fields]) is None:
        return 1
    sys.stdout.write("features: node {} has {}\n".format(name, joined))
    return 0


def _scontrol(config: Dict[str, Any], args: List[str]) -> Optional[str]:
    """scontrol's output, or None after one line on stderr saying why it failed."""
    try:
        result = subprocess.run(
            [config["scontrol"], *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=30,
            env=_slurm_env(config),
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        sys.stderr.write("features: scontrol: {}\n".format(error))
        return None
    if result.returncode != 0:
        why = result.stderr.decode("utf-8", "replace").strip().splitlines()
        sys.stderr.write("features: {}\n".format(why[-1] if why else "scontrol failed"))
        return None
    return result.stdout.decode("utf-8", "replace")


def _features_field(shown: str, field: str) -> List[str]:
    match = re.search(r"\b" + field + r"=(\S*)", shown)
    value = match.group(1) if match else ""
    return [] if value in ("", "(null)") else value.split(",")


def blender_version(blender: str) -> str:
    try:
        out = subprocess.run(
            [blender, "--version"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    match = re.search(r"Blender (\d+\.\d+(?:\.\d+)?)", out.stdout.decode("utf-8", "replace"))
    return match.group(1) if match else ""


def blender_reason(output: str) -> str:
    """Blender's own reason from its output: the last ``Error:`` line, else its last line."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error:") or "Error: " in ln]
    chosen = errors[-1] if errors else (lines[-1] if lines else "Blender said nothing")
    return chosen[:500]


def hint_for(reason: str) -> str:
    for key, hint in HINTS.items():
        if key in reason:
            return hint
    return ""


_SAVED = re.compile(r"^\s*Saved: [\'\"](.+)[\'\"]\s*$")
"""Blender's line once a frame's file is written whole (``Saved: '/tmp/out/frame_0001.png'``)."""


def frame_of_file(output: str, name: str) -> Optional[int]:
    """The frame a file Blender saved for ``output`` is, by its name (any extension)."""
    match = re.search(r"#+", output)
    if match is None:
        return None
    found = re.fullmatch(
        re.escape(output[: match.start()]) + r"([0-9]{%d,})" % len(match.group(0))
        + re.escape(output[match.end() :]) + r"(?:\.[A-Za-z0-9]+)?",
        name,
    )  # fmt: skip
    return int(found.group(1)) if found else None


def render_frames(
    config: Dict[str, Any],
    scene: str,
    output: str,
    frames: Tuple[int, int],
    work: str,
    started: Callable[[int, float], None],
    saved: Callable[[int, str], None],
) -> Tuple[List[int], str]:
    """Render frames ``first..last`` with ONE Blender (the scene loaded once, each frame begun
    as the last is written): ``started(frame, when)`` as each frame begins, ``saved(frame,
    path)`` as each one's file is whole (Blender's ``Saved:`` line). Returns the frames saved
    and, when Blender stopped before the last one, its reason."""
    first, last = frames
    argv = [
        config["blender"], "-b",
        "--enable-autoexec" if config.get("autoexec") else "--disable-autoexec",
        scene, "-o", os.path.join(work, output),
        "-s", str(first), "-e", str(last), "-j", "1", "-a",
    ]  # fmt: skip
    tail: Deque[str] = collections.deque(maxlen=400)
    done = []  # type: List[int]
    try:
        blender = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as exc:
        return done, "cannot run Blender: {}".format(exc)
    started(first, time.time())
    assert blender.stdout is not None
    for raw in blender.stdout:
        line = raw.decode("utf-8", "replace")
        tail.append(line)
        match = _SAVED.match(line)
        if match is None:
            continue
        path = match.group(1)
        frame = frame_of_file(output, os.path.basename(path))
        if frame is None or not first <= frame <= last or frame in done:
            continue
        done.append(frame)
        saved(frame, path)
        if frame < last:
            started(frame + 1, time.time())
    code = blender.wait()
    if done and done[-1] == last:
        return done, ""
    text = "".join(tail)
    if code == 0:
        missing = (done[-1] + 1) if done else first
        return done, "Blender wrote no file for frame {} ({})".format(missing, blender_reason(text))
    return done, blender_reason(text)


class ShareWriter:
    """A task's writes to the share, in order, on a thread of their own: Blender renders the
    next frame while the last one (and the status files) go up."""

    def __init__(self, share: "Share", work: str) -> None:
        self.share, self.work = share, work
        self.errors = []  # type: List[str]
        self._queue = queue.Queue()  # type: Any
        self._count = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def put_file(self, local: str, remote: str) -> None:
        self._queue.put((local, remote, None))

    def put_json(self, data: Dict[str, Any], remote: str) -> None:
        self._count += 1
        path = os.path.join(self.work, "status-{}.json".format(self._count))
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        self._queue.put((path, remote, path))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            local, remote, remove = item
            try:
                self.share.put(local, remote)
            except OSError as exc:
                self.errors.append(str(exc))
            finally:
                if remove:
                    with contextlib.suppress(OSError):
                        os.unlink(remove)

    def close(self) -> None:
        """Wait until everything queued is on the share."""
        self._queue.put(None)
        self._thread.join()


def run_task(config: Dict[str, Any], spec: Dict[str, Any], index: int) -> int:
    """Render chunk ``index`` of the job in ``spec``; 0 when every frame of it is done."""
    share = Share(config)
    first, last = spec["chunks"][index]
    renders = spec["renders"]
    made = os.path.join(job_cache(config, spec), ".share-folders")
    if not os.path.exists(made):  # once per job on this worker: each smbclient run costs time
        share.makedirs(renders + "/" + STATUS_DIR)
        open(made, "w").close()
    restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
    limit = max(1, int(spec.get("max_attempts", 2)))
    work = tempfile.mkdtemp(prefix="farmhand-task-")
    writer = ShareWriter(share, work)
    failed = []  # type: List[int]

    def status(frame: int, fields: Dict[str, Any]) -> None:
        writer.put_json(
            dict(fields, frame=frame, worker=config["name"]),
            "{}/{}/{:06d}.json".format(renders, STATUS_DIR, frame),
        )

    def fail(frames: List[int], fields: Dict[str, Any]) -> None:
        now = time.time()
        for frame in frames:
            status(frame, dict({"state": "failed", "start": now, "end": now}, **fields))
        failed.extend(frames)

    try:
        version = known_blender_version(config)
        chunk = list(range(first, last + 1))
        try:
            scene = fetch_scene(share, config, spec)
        except FetchError as exc:
            fail(chunk, {"attempts": restarts + 1, "error": str(exc)})
            return 1
        if spec.get("blender") and not version.startswith(spec["blender"]):
            why = "this worker has Blender {}, the job needs {}".format(
                version or "?", spec["blender"]
            )
            fail(chunk, {"attempts": restarts + 1, "error": why})
            return 1
        out_dir = os.path.join(work, "out")
        os.mkdir(out_dir)
        tries: TypingCounter[int] = collections.Counter()
        starts = {}  # type: Dict[int, float]
        todo = chunk
        if restarts:  # requeued (its worker was lost): frames already on the share stay done
            try:
                on_share = {frame_of_file(spec["output"], n) for n in share.names(renders)}
            except OSError:  # no frame there yet, or the share away: render them all
                on_share = set()
            todo = [f for f in chunk if f not in on_share]

        def started(frame: int, when: float) -> None:
            starts[frame] = when
            tries[frame] += 1
            status(frame, {"state": "running", "start": when,
                           "attempts": restarts + tries[frame], "blender": version})  # fmt: skip

        def saved(frame: int, path: str) -> None:
            name = os.path.basename(path)
            writer.put_file(path, "{}/{}".format(renders, name))
            status(frame, {
                "state": "done", "start": starts[frame], "end": time.time(),
                "attempts": restarts + tries[frame], "file": name, "blender": version,
            })  # fmt: skip

        while todo:
            done, reason = render_frames(
                config, scene, spec["output"], (todo[0], todo[-1]), out_dir, started, saved
            )
            todo = [f for f in todo if f not in done]
            if not todo:
                break
            stuck = todo[0]  # the frame Blender stopped on
            if restarts + tries[stuck] >= limit:
                fail([stuck], {
                    "start": starts.get(stuck, time.time()), "attempts": restarts + tries[stuck],
                    "error": reason, "hint": hint_for(reason), "blender": version,
                })  # fmt: skip
                todo = todo[1:]
    finally:
        writer.close()
        shutil.rmtree(work, ignore_errors=True)
    if writer.errors:
        sys.stderr.write("farmhand: {}\n".format(writer.errors[-1]))
        return 1
    return 1 if failed else 0


def task_main(worker_config: str, blob: str) -> int:
    spec = json.loads(base64.b64decode(blob.encode()).decode())
    index = int(os.environ.get("SLURM_ARRAY_TASK_ID", "0"))
    return run_task(load_worker_config(worker_config), spec, index)


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) in (2, 3) and args[0] == "serve":
        return serve(args[1], *args[2:])
    if len(args) == 3 and args[0] == "task":
        return task_main(args[1], args[2])
    if len(args) == 2 and args[0] == "features":
        return advertise_features(load_worker_config(args[1]))
    sys.stderr.write(
        "usage: jobs.py serve BOSS [CONFIG] | task WORKER_CONFIG SPEC | features WORKER_CONFIG\n"
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
