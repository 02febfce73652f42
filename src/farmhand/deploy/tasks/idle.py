"""A worker's idle shutdown: the decision script, its settings, and the timer that runs it."""

from __future__ import annotations

from farmhand.deploy.tasks import deploy, ops
from farmhand.deploy.tasks import files as farm_files
from farmhand.hostfiles.base import HostFiles
from farmhand.model.host import HostModel
from farmhand.model.idle import IDLE_TIMER


@deploy("Idle shutdown")
def idle(model: HostModel, host_files: HostFiles) -> None:
    farm_files.install(host_files.plain("idle"))
    # Only the timer is enabled: it starts the check; the check itself is a oneshot, and reads
    # the script and settings anew each time (nothing to restart).
    ops.managed_service(
        "idle shutdown",
        IDLE_TIMER,
        host_files.units("idle"),
        on_change="nothing",
        start_name="Idle shutdown timer running and enabled",
    )
