"""Idle shutdown settings: farm.toml's ``idle_*`` keys, checked, with sensible defaults.

The decision itself is a POSIX sh script on the worker (templates/idle/idle-check.sh.j2)
run by a systemd timer; this module only turns the farm's settings into its environment file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from farmhand.errors import UsageError

IDLE_SERVICE = "farmhand-idle.service"
IDLE_TIMER = "farmhand-idle.timer"

DEFAULT_RENDER_PROCESSES = (
    "blender",  # Blender, also as flamenco-worker's and Deadline's child
    "bella_cli",  # Bella (oomerfarm's renderer)
    "deadlinesandbox",  # Deadline 10.1+: one per task being rendered (deadlineworker idles)
    "kick",  # Arnold
    "husk",  # Houdini/USD
    "hython",
    "vray",
    "ffmpeg",  # Flamenco's video-encoding tasks
)
"""Names that mean a render is running. Long-lived agents (deadlineworker, flamenco-worker)
are deliberately absent: they run while idle too, and would keep a worker up forever."""

_NAME = re.compile(r"^[A-Za-z0-9._+-]{1,64}$")


@dataclass(frozen=True)
class IdleSettings:
    """When a worker powers itself off. Each duration ``0`` turns its rule off."""

    after_minutes: int = 20
    boot_grace_minutes: int = 15
    max_uptime_minutes: int = 0
    cap_grace_minutes: int = 60
    cpu_percent: int = 10
    render_processes: tuple[str, ...] = DEFAULT_RENDER_PROCESSES

    @classmethod
    def from_farm(cls, extra: Mapping[str, Any]) -> IdleSettings:
        """The settings from farm.toml's extra keys (``idle_after_minutes = 30`` ...)."""
        defaults = cls()

        def minutes(key: str, default: int, top: int = 60 * 24 * 365) -> int:
            value = extra.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
                raise UsageError(
                    f"farm.toml: {key} must be a whole number from 0 to {top}, not {value!r}"
                )
            return value

        names = extra.get("idle_render_processes", list(defaults.render_processes))
        if isinstance(names, str):
            names = names.split()
        if not isinstance(names, list) or not all(
            isinstance(n, str) and _NAME.match(n) for n in names
        ):
            raise UsageError(
                "farm.toml: idle_render_processes must be a list of process names "
                "(letters, digits, . _ + -)"
            )
        return cls(
            after_minutes=minutes("idle_after_minutes", defaults.after_minutes),
            boot_grace_minutes=minutes("idle_boot_grace_minutes", defaults.boot_grace_minutes),
            max_uptime_minutes=minutes("idle_max_uptime_minutes", defaults.max_uptime_minutes),
            cap_grace_minutes=minutes("idle_cap_grace_minutes", defaults.cap_grace_minutes),
            cpu_percent=minutes("idle_cpu_percent", defaults.cpu_percent, 100),
            render_processes=tuple(names),
        )
