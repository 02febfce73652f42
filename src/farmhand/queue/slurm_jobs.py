"""The job service's files under Slurm (onhost/jobs.py is the service): what ``farmhand
submit`` and the other job commands reach on the hub, and what Slurm's tasks run on workers.

- hub: the service itself, its config (the farm share's folder, the hourly price for
  ``farmhand jobs``) and the ``farmhand-jobs`` user's authorized_keys, one forced-command line
  per live boss, made from the hub bundle's list of the bosses' job keys (keystore/job_keys.py;
  a revoked boss is left out of it, so the next hub deploy shuts that boss out);
- workers: the service again (its ``task`` half) and the task's config: where the farm share
  is mounted (the task uses smbclient when it is not: containers, mounts off) and the worker's own
  share login, which the picker makes readable to the ``farmhand-jobs`` group only.

The pyinfra side is farmhand/deploy/tasks/jobs.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from farmhand.errors import UsageError
from farmhand.keystore.job_keys import BOSS_KEYS
from farmhand.keystore.plan import Role
from farmhand.model.paths import SMB_CREDENTIALS
from farmhand.onhost import jobs
from farmhand.queue.artifacts import blender_path
from farmhand.queue.base import QueueFile, blender_autoexec_flag

if TYPE_CHECKING:
    from farmhand.model.host import HostModel

COMPONENT = "jobs"
JOBS_UID = 64031
"""``farmhand-jobs``'s uid and gid, the same on the hub and every worker: Slurm runs a task
on the worker as the uid that submitted it on the hub."""
FARM_SHARE = "farm"
TASK_CACHE = "/var/tmp/farmhand-jobs"
"""Where a worker keeps each job's scene (once per job), the job user's own."""
MAX_ATTEMPTS = 2
"""Attempts of a frame Blender fails on, before it is marked failed with Blender's reason."""
_BOSS_LINE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])? ssh-ed25519 [A-Za-z0-9+/=]+( .*)?")


def live_bosses(listing: bytes) -> list[tuple[str, str]]:
    """(name, public key) of each ``NAME KEY`` line of the hub bundle's boss key list, for
    the authorized_keys template (templates/jobs/jobs-authorized_keys.j2)."""
    bosses = []
    for raw in listing.decode().splitlines():
        if not raw.strip():
            continue
        if not _BOSS_LINE.fullmatch(raw):
            raise UsageError(
                f"the hub bundle's {BOSS_KEYS} has a bad line: run `farmhand keys rebundle`"
            )
        name, key = raw.split(" ", 1)
        bosses.append((name, key))
    return bosses


def job_files(model: HostModel) -> list[QueueFile]:
    """The job service's files on ``model``'s host (hub or worker)."""
    shebang = b"#!/usr/bin/python3\n"
    files = [
        QueueFile(
            COMPONENT, jobs.LIB, content=shebang + Path(jobs.__file__).read_bytes(), mode=0o755
        )
    ]
    settings = model.plan.settings
    if model.role is Role.HUB:
        listing = model.bundle.extras.get(BOSS_KEYS)
        if listing is None:
            raise UsageError(
                "the hub bundle has no bosses' job keys: it comes from an older farmhand: "
                "run `farmhand keys rebundle`"
            )
        share = next(s for s in model.shares if s.name == FARM_SHARE)
        config = {
            "share_root": share.path,
            "state_dir": f"{jobs.JOBS_HOME}/jobs",
            "max_attempts": MAX_ATTEMPTS,
            "hourly_price": settings.worker_hourly_price or 0.0,
            "currency": settings.currency,
        }
        files += [
            QueueFile(COMPONENT, jobs.HUB_CONFIG, content=_json(config)),
            QueueFile(
                COMPONENT,
                jobs.JOBS_AUTHORIZED_KEYS,
                "jobs/jobs-authorized_keys.j2",
                values={"jobs": jobs, "bosses": live_bosses(listing)},
            ),
        ]
        return files
    mounted = next((s for s in model.shares if s.name == FARM_SHARE), None)
    config = {
        # Used when it is mounted (the task looks for renders/ in it), else smbclient.
        "mount": mounted.mount_point if mounted else "",
        "hub": str(model.hub_overlay_ip),
        "share": FARM_SHARE,
        "credentials": SMB_CREDENTIALS,
        "cache": TASK_CACHE,
        "blender": blender_path(model.distro),
        "autoexec": blender_autoexec_flag(model.plan) == "--enable-autoexec",
    }
    files.append(QueueFile(COMPONENT, jobs.WORKER_CONFIG, content=_json(config)))
    return files


def _json(data: object) -> bytes:
    return json.dumps(data, indent=1, sort_keys=True).encode() + b"\n"
