"""Flamenco 3: the manager on the hub (overlay only), workers as the farm user.

The pyinfra tasks are in farmhand/deploy/tasks/queue_flamenco.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from farmhand.keystore.plan import Role
from farmhand.model.distro import Distro
from farmhand.model.paths import FLAMENCO_MANAGER_DIR, FLAMENCO_WORKER_DIR, SYSTEMD_DIR
from farmhand.queue import artifacts
from farmhand.queue.artifacts import Artifact
from farmhand.queue.base import QueueFile, RenderManager, RenderManagerSpec

if TYPE_CHECKING:
    from farmhand.model.host import HostModel

PORT = 8080
"""The manager's API (and web interface), on the hub's overlay address."""
MANAGER_UNIT = "farmhand-flamenco-manager.service"
WORKER_UNIT = "farmhand-flamenco-worker.service"


def part(model: HostModel) -> tuple[str, str, str]:
    """``manager`` on the hub, ``worker`` elsewhere: (part, its folder, its unit)."""
    if model.role is Role.HUB:
        return "manager", FLAMENCO_MANAGER_DIR, MANAGER_UNIT
    return "worker", FLAMENCO_WORKER_DIR, WORKER_UNIT


class Flamenco(RenderManagerSpec):
    manager = RenderManager.FLAMENCO
    label = "Flamenco manager"
    port = PORT
    deploy_module = "farmhand.deploy.tasks.queue_flamenco"
    boss_hint = (
        "this farm runs Flamenco: bosses submit with `farmhand submit` (or open "
        "http://HUB-OVERLAY-IP:8080)"
    )

    def artifacts(self, distro: Distro) -> tuple[Artifact, ...]:
        return (artifacts.FLAMENCO,)

    def host_files(self, model: HostModel) -> list[QueueFile]:
        name, workdir, unit = part(model)
        return [
            QueueFile(
                "flamenco", f"{workdir}/flamenco-{name}.yaml", f"flamenco/flamenco-{name}.yaml.j2"
            ),
            QueueFile(
                "flamenco",
                f"{SYSTEMD_DIR}/{unit}",
                "flamenco/farmhand-flamenco.service.j2",
                values={"part": name, "workdir": workdir},
            ),
        ]


MANAGER = Flamenco()
