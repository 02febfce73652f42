"""The interface every render manager implements, and what the farm plan chooses.

The farm plan (farm.toml) chooses ``render_manager = "slurm" | "deadline" | "flamenco"``
(slurm by default) and ``renderer = "blender" | "bella"``. Each manager is one module with one
:class:`RenderManagerSpec` (see farmhand/queue/__init__.py for the registry): deploys open the
Nebula firewall for exactly its ports and only to the groups that use them, hostfiles renders
the files it declares, ``farmhand status`` probes its :class:`QueueService`.

This module imports no manager, no host files and no pyinfra: everything may build on it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from farmhand.keystore.plan import FarmPlan
from farmhand.model.distro import Distro
from farmhand.settings import Renderer as Renderer  # declared with farm.toml's settings
from farmhand.settings import RenderManager as RenderManager

if TYPE_CHECKING:
    from farmhand.model.host import HostModel
    from farmhand.queue.artifacts import Artifact

QUEUE_CLIENT_GROUPS = ("worker", "boss")
"""Nebula groups that may reach the queue port on the hub; nobody else."""


@dataclass(frozen=True)
class QueueService:
    """What ``farmhand status`` probes on the hub: the manager's service and its port."""

    manager: RenderManager
    port: int
    label: str


@dataclass(frozen=True)
class QueueFile:
    """A file a manager puts on a host, as part of ``component`` (what its deploy task asks
    for: one service and what it reads): a template (expanded by farmhand/hostfiles with the
    queue's common values and ``values``) or ready ``content``. ``group`` is the service's
    group for a secret that service must read (mode 0640); ``owner`` the service's user for a
    secret it insists on owning (munge's key)."""

    component: str
    path: str
    template: str = ""
    content: bytes = field(default=b"", repr=False)
    values: Mapping[str, Any] = field(default_factory=dict, repr=False)
    mode: int = 0o644
    secret: bool = False
    group: str = "root"
    owner: str = "root"


class RenderManagerSpec(ABC):
    """One render manager: everything the rest of farmhand asks of it.

    - ``manager``: its name, the farm.toml value;
    - ``port``/``client_groups``: what the hub opens, to which Nebula groups (:meth:`hub_ports`);
      :meth:`worker_ports`: what workers open (none but Slurm's slurmd, to the hub);
    - :meth:`artifacts`: the pinned downloads it needs on a host of a distribution;
    - :meth:`host_files`: the files it adds on a hub or worker (bosses install by hand), each
      in a named component its deploy task asks for;
    - :meth:`service`: what ``farmhand status`` checks;
    - ``deploy_module``: the pyinfra task module (farmhand/deploy/tasks/queue_*.py) with
      ``hub(model, files)`` and ``worker(model, files)`` (files: the host's HostFiles); named,
      not imported, so that nothing the CLI imports at start-up imports pyinfra;
    - ``boss_hint``: empty if bosses install its client with ``farmhand queue``, else what to
      tell them instead.
    """

    manager: ClassVar[RenderManager]
    label: ClassVar[str]
    port: ClassVar[int]
    client_groups: ClassVar[tuple[str, ...]] = QUEUE_CLIENT_GROUPS
    deploy_module: ClassVar[str]
    boss_hint: ClassVar[str] = ""

    @property
    def name(self) -> str:
        return self.manager.value

    def hub_ports(self) -> tuple[tuple[int, str], ...]:
        """(TCP port, Nebula group) pairs the hub's firewall opens for this manager."""
        return tuple((self.port, group) for group in self.client_groups)

    def worker_ports(self) -> tuple[tuple[int, str], ...]:
        """(TCP port, Nebula group) pairs a worker's firewall opens for this manager."""
        return ()

    def service(self) -> QueueService:
        return QueueService(self.manager, self.port, self.label)

    @abstractmethod
    def artifacts(self, distro: Distro) -> tuple[Artifact, ...]:
        """The manager's pinned artifacts for a host of ``distro`` (the renderer's are apart)."""

    @abstractmethod
    def host_files(self, model: HostModel) -> list[QueueFile]:
        """The manager's files on a hub or a worker."""


def render_manager(plan: FarmPlan) -> RenderManager:
    return plan.settings.render_manager


def renderer(plan: FarmPlan) -> Renderer:
    return plan.settings.renderer


BLENDER_AUTORUN_ON = "--enable-autoexec"
BLENDER_AUTORUN_OFF = "--disable-autoexec"


def blender_autoexec_flag(plan: FarmPlan) -> str:
    """The flag every Blender that farmhand starts gets, before the scene file.

    Off unless farm.toml says ``blender_autorun = true``: with auto-run, the Python inside any
    scene runs on every worker as the farm user, so whoever can submit or change a scene
    runs code on the farm. Every render manager (and anything else that starts Blender for
    farmhand) takes the flag from here."""
    return BLENDER_AUTORUN_ON if plan.settings.blender_autorun else BLENDER_AUTORUN_OFF
