"""The job service under Slurm (files: farmhand/queue/slurm_jobs.py; the service:
onhost/jobs.py): the ``farmhand-jobs`` user on the hub, whose forced command bosses reach over
SSH, and the same user on workers, as which Slurm runs the render tasks."""

from __future__ import annotations

from pyinfra.operations import files, server

from farmhand.deploy.tasks import files as farm_files
from farmhand.hostfiles.base import HostFiles
from farmhand.keystore.plan import Role
from farmhand.model.host import HostModel
from farmhand.model.smb import WORKERS_GROUP
from farmhand.onhost import jobs
from farmhand.queue.slurm_jobs import COMPONENT, JOBS_UID, TASK_CACHE


def job_service(model: HostModel, host_files: HostFiles) -> None:
    """The job user and the service's files; on workers also the task cache (the share login
    the tasks use is made readable to the job group by the picker, deploy/tasks/leases.py)."""
    hub = model.role is Role.HUB
    server.group(
        name=f"Group {jobs.JOBS_USER} (gid {JOBS_UID})",
        group=jobs.JOBS_USER,
        gid=JOBS_UID,
        system=True,
    )
    # On the hub: a real shell, since sshd runs the forced command through it, and the
    # workers' group, to make each job's folder in renders/ (sticky, the workers' group's).
    server.user(
        name=f"User {jobs.JOBS_USER} (uid {JOBS_UID} on every host; the job service, the tasks)",
        user=jobs.JOBS_USER,
        uid=JOBS_UID,
        group=jobs.JOBS_USER,
        groups=[WORKERS_GROUP] if hub else [],
        home=jobs.JOBS_HOME,
        shell="/bin/sh" if hub else "/usr/sbin/nologin",
        system=True,
        create_home=False,
        ensure_home=False,
        present=True,
    )
    # The home and authorized_keys are root's: the job user cannot change who gets in.
    for path in (jobs.JOBS_HOME, f"{jobs.JOBS_HOME}/.ssh"):
        files.directory(
            name=f"Folder {path}", path=path, mode="755", user="root", group="root", present=True
        )
    state = f"{jobs.JOBS_HOME}/jobs" if hub else TASK_CACHE
    files.directory(
        name=f"Folder {state} (the job user's, 0700)",
        path=state,
        mode="700",
        user=jobs.JOBS_USER,
        group=jobs.JOBS_USER,
        present=True,
    )
    farm_files.install(host_files.of(COMPONENT))
