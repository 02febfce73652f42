"""A worker's idle shutdown: the decision script, the farm's settings, timer and service."""

from __future__ import annotations

from collections.abc import Callable

from farmhand.hostfiles.base import HostFile
from farmhand.model.host import HostModel
from farmhand.model.idle import IDLE_SERVICE, IDLE_TIMER, IdleSettings
from farmhand.model.paths import IDLE_ENV, IDLE_LOCAL_ENV, IDLE_SCRIPT, SYSTEMD_DIR


def idle_files(model: HostModel, expand: Callable[..., bytes]) -> list[HostFile]:
    """A worker's idle shutdown: the decision script, the farm's settings, timer and service."""
    extra = {
        "idle": IdleSettings.from_farm(model.plan.settings),
        "idle_env": IDLE_ENV,
        "idle_local_env": IDLE_LOCAL_ENV,
        "idle_script": IDLE_SCRIPT,
    }
    units = "idle/farmhand-idle"
    return [
        HostFile(IDLE_SCRIPT, expand("idle/idle-check.sh.j2", **extra), 0o755),
        HostFile(IDLE_ENV, expand("idle/idle-settings.env.j2", **extra)),
        HostFile(f"{SYSTEMD_DIR}/{IDLE_SERVICE}", expand(f"{units}.service.j2", **extra)),
        HostFile(f"{SYSTEMD_DIR}/{IDLE_TIMER}", expand(f"{units}.timer.j2", **extra)),
    ]
