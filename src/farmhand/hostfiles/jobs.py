"""The render jobs service (onhost/jobs.py): on the hub, the service itself, its config and
the ``farmhand-jobs`` authorized_keys (one forced-command line per live boss, from the hub
bundle); on workers, the same file (the Slurm task runs ``jobs.py task``) and its config.

Not yet called by the deploy: the Slurm roles (branch ``slurm``) install these next to
slurmctld and slurmd, with the ``farmhand-jobs`` user on hub and workers (Slurm runs a job as
the uid that submitted it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from farmhand.errors import UsageError
from farmhand.hostfiles.base import HostFile
from farmhand.keystore.job_keys import BOSS_KEYS, parse_boss_keys
from farmhand.keystore.plan import Role
from farmhand.model.host import HostModel
from farmhand.model.paths import MOUNTS_ROOT
from farmhand.onhost import jobs

WORKER_SMB_CREDENTIALS = "/etc/farmhand/jobs-smb-credentials"
"""The worker's share login for its tasks: readable by the farmhand-jobs group, as Slurm runs
the tasks as that user (the worker's own credentials file stays root's)."""


def job_files(model: HostModel, expand: Callable[..., bytes]) -> list[HostFile]:
    module = Path(jobs.__file__).read_bytes()
    files = [HostFile(jobs.LIB, b"#!/usr/bin/python3\n" + module, 0o755)]
    settings = model.plan.settings
    if model.role is Role.HUB:
        listed = model.bundle.extras.get(BOSS_KEYS)
        if listed is None:
            raise UsageError(
                "the hub bundle has no bosses' job keys: it comes from an older farmhand: run "
                "`farmhand keys rebundle`"
            )
        config = {
            "max_attempts": 2,
            "hourly_price": settings.worker_hourly_price or 0.0,
            "currency": settings.currency,
        }
        files += [
            HostFile(jobs.HUB_CONFIG, json.dumps(config, indent=1).encode() + b"\n"),
            HostFile(
                jobs.JOBS_AUTHORIZED_KEYS,
                expand("jobs/jobs-authorized_keys.j2", jobs=jobs, bosses=parse_boss_keys(listed)),
            ),
        ]
        return files
    if model.role is Role.WORKER:
        config = {
            "mount": f"{MOUNTS_ROOT}/farm",
            "hub": str(model.hub_overlay_ip),
            "share": "farm",
            "credentials": WORKER_SMB_CREDENTIALS,
            "autoexec": settings.blender_autorun,
        }
        files.append(HostFile(jobs.WORKER_CONFIG, json.dumps(config, indent=1).encode() + b"\n"))
    return files
