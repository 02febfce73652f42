"""The render queue: render managers and renderers, their pinned artifacts and their TLS.

Each render manager is one module implementing :class:`~farmhand.queue.base.RenderManagerSpec`
(queue/slurm.py, the default; queue/deadline.py, queue/flamenco.py), with its constants, and a
pyinfra task module it names (deploy/tasks/queue_*.py). The rest of farmhand asks
:data:`MANAGERS` (through :func:`manager_for`), never which manager it is. Adding a manager is
adding its module (and its task module) and one line in :data:`MANAGERS`, plus its value in
settings.RenderManager.

Importing this package declares the queue's farm-wide secrets (queue/tls.py, and Slurm's munge
key in queue/slurm.py).
"""

from __future__ import annotations

from farmhand.keystore.plan import FarmPlan
from farmhand.model.distro import Distro
from farmhand.queue import deadline, flamenco, slurm
from farmhand.queue import tls as tls  # declares the queue's farm-wide secret (queue-tls)
from farmhand.queue.artifacts import Artifact, renderer_artifacts
from farmhand.queue.base import QueueService, RenderManager, RenderManagerSpec, render_manager

MANAGERS: dict[RenderManager, RenderManagerSpec] = {
    RenderManager.SLURM: slurm.MANAGER,
    RenderManager.DEADLINE: deadline.MANAGER,
    RenderManager.FLAMENCO: flamenco.MANAGER,
}
"""Every render manager, by its farm.toml value."""


def manager_for(plan: FarmPlan) -> RenderManagerSpec:
    """The render manager this farm runs."""
    return MANAGERS[render_manager(plan)]


def queue_service(plan: FarmPlan) -> QueueService:
    """What ``farmhand status`` probes on the hub."""
    return manager_for(plan).service()


def needed(plan: FarmPlan, distro: Distro) -> tuple[Artifact, ...]:
    """The artifacts this farm's choices need, on a host of ``distro``."""
    return (*manager_for(plan).artifacts(distro), *renderer_artifacts(plan, distro))
