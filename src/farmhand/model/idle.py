"""Idle shutdown settings: farm.toml's ``idle_*`` keys (declared in farmhand/settings.py).

The decision itself is a POSIX sh script on the worker (templates/idle/idle-check.sh.j2)
run by a systemd timer; this module only turns the farm's settings into its environment file.
"""

from __future__ import annotations

from dataclasses import dataclass

from farmhand.settings import DEFAULT_RENDER_PROCESSES as DEFAULT_RENDER_PROCESSES
from farmhand.settings import FarmSettings

IDLE_SERVICE = "farmhand-idle.service"
IDLE_TIMER = "farmhand-idle.timer"


@dataclass(frozen=True)
class IdleSettings:
    """When a worker powers itself off. Each duration ``0`` turns its rule off."""

    after_minutes: int
    boot_grace_minutes: int
    max_uptime_minutes: int
    cap_grace_minutes: int
    cpu_percent: int
    render_processes: tuple[str, ...]

    @classmethod
    def from_farm(cls, settings: FarmSettings) -> IdleSettings:
        """The settings from farm.toml (``idle_after_minutes = 30`` ...), checked there."""
        return cls(
            after_minutes=settings.idle_after_minutes,
            boot_grace_minutes=settings.idle_boot_grace_minutes,
            max_uptime_minutes=settings.idle_max_uptime_minutes,
            cap_grace_minutes=settings.idle_cap_grace_minutes,
            cpu_percent=settings.idle_cpu_percent,
            render_processes=settings.idle_render_processes,
        )
