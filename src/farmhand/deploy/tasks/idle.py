"""A worker's idle shutdown: the decision script, its settings, and the timer that runs it."""

from __future__ import annotations

from pyinfra.operations import systemd
from pyinfra.operations.util import any_changed

from farmhand.deploy.tasks import deploy
from farmhand.deploy.tasks import files as farm_files
from farmhand.hostfiles.base import RenderedFile
from farmhand.model.host import HostModel
from farmhand.model.idle import IDLE_SERVICE, IDLE_TIMER
from farmhand.model.paths import IDLE_ENV, IDLE_SCRIPT, SYSTEMD_DIR


@deploy("Idle shutdown")
def idle(model: HostModel, rendered: dict[str, RenderedFile]) -> None:
    paths = (
        IDLE_SCRIPT,
        IDLE_ENV,
        f"{SYSTEMD_DIR}/{IDLE_SERVICE}",
        f"{SYSTEMD_DIR}/{IDLE_TIMER}",
    )
    installed = farm_files.install(rendered[path] for path in paths)
    systemd.daemon_reload(name="Reload systemd units (idle shutdown)", _if=any_changed(*installed))
    # Only the timer is enabled: it starts the check; the check itself is a oneshot.
    systemd.service(
        name="Idle shutdown timer running and enabled",
        service=IDLE_TIMER,
        enabled=True,
        running=True,
    )
