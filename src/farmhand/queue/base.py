"""The render queue the farm runs: which manager and renderer, and where the queue listens.

The farm plan (farm.toml) chooses them: ``render_manager = "deadline" | "flamenco"`` and
``renderer = "blender" | "bella"``. Deploys open the Nebula firewall for exactly the queue's
port and only to the groups that use it; ``farmhand status`` checks it with
:func:`queue_service`.
"""

from __future__ import annotations

from dataclasses import dataclass

from farmhand.keystore.plan import FarmPlan
from farmhand.settings import Renderer as Renderer  # declared with farm.toml's settings
from farmhand.settings import RenderManager as RenderManager

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
    return plan.settings.render_manager


def renderer(plan: FarmPlan) -> Renderer:
    return plan.settings.renderer


def queue_service(plan: FarmPlan) -> QueueService:
    manager = render_manager(plan)
    return QueueService(manager, QUEUE_PORTS[manager])
