"""The render queue the farm runs: which manager and renderer, and where the queue listens.

The farm plan (farm.toml) chooses them: ``render_manager = "deadline" | "flamenco"`` and
``renderer = "blender" | "bella"``. Deploys open the Nebula firewall for exactly the queue's
port and only to the groups that use it; ``farmhand status`` checks it with
:func:`queue_service`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from farmhand.errors import UsageError
from farmhand.keystore.plan import FarmPlan


class RenderManager(str, Enum):
    DEADLINE = "deadline"
    FLAMENCO = "flamenco"


class Renderer(str, Enum):
    BLENDER = "blender"
    BELLA = "bella"


DEFAULT_MANAGER = RenderManager.DEADLINE
DEFAULT_RENDERER = Renderer.BLENDER
QUEUE_PORTS = {RenderManager.DEADLINE: 27100, RenderManager.FLAMENCO: 8080}
"""MongoDB for Deadline (always passed explicitly: Deadline's installers disagree on the
default, 27100 or 27017), Flamenco's manager API."""

QUEUE_CLIENT_GROUPS = ("worker", "boss")
"""Nebula groups that may reach the queue port on the hub; nobody else."""

DEADLINE_VERSION = "10.4.0.10"
DEADLINE_DB_NAME = "deadline10db"
DEADLINE_DB_USER = "deadline"
MONGODB_USER = "farmhand-mongodb"


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


def renderer(plan: FarmPlan) -> Renderer:
    value = str(plan.extra.get("renderer", DEFAULT_RENDERER.value))
    try:
        return Renderer(value)
    except ValueError:
        choices = ", ".join(r.value for r in Renderer)
        raise UsageError(f"renderer {value!r} in farm.toml: choose {choices}") from None


def queue_service(plan: FarmPlan) -> QueueService:
    manager = render_manager(plan)
    return QueueService(manager, QUEUE_PORTS[manager])
