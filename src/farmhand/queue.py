"""The render queue the farm runs: which manager, and where its service listens on the hub.

The farm plan's ``render_manager`` (farm.toml) chooses it; deploys open the Nebula firewall
for exactly this port, and ``farmhand status`` checks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from farmhand.errors import UsageError
from farmhand.keystore.plan import FarmPlan


class RenderManager(str, Enum):
    DEADLINE = "deadline"
    FLAMENCO = "flamenco"


DEFAULT_MANAGER = RenderManager.DEADLINE
QUEUE_PORTS = {RenderManager.DEADLINE: 27100, RenderManager.FLAMENCO: 8080}
"""MongoDB for Deadline (always passed explicitly: DESIGN.md §7), Flamenco's manager API."""


@dataclass(frozen=True)
class QueueService:
    manager: RenderManager
    port: int

    @property
    def label(self) -> str:
        if self.manager is RenderManager.DEADLINE:
            return "Deadline database (MongoDB)"
        return "Flamenco manager"


def render_manager(plan: FarmPlan) -> RenderManager:
    value = str(plan.extra.get("render_manager", DEFAULT_MANAGER.value))
    try:
        return RenderManager(value)
    except ValueError:
        choices = ", ".join(m.value for m in RenderManager)
        raise UsageError(f"render_manager {value!r} in farm.toml: choose {choices}") from None


def queue_service(plan: FarmPlan) -> QueueService:
    manager = render_manager(plan)
    return QueueService(manager, QUEUE_PORTS[manager])
