"""Slurm, the default render manager: slurmctld on the hub, slurmd on workers, over Nebula.

- Packages from the distribution (no download, no checksum): Debian/Ubuntu ``slurmctld`` or
  ``slurmd``, ``slurm-client`` and ``munge``; EL 8/9 the same from EPEL (``slurm-slurmctld``,
  ``slurm-slurmd``, ``slurm``, ``munge``).
- One ``slurm.conf``, the same on the hub and every worker, rendered from the certificate pool:
  every pool certificate is a node named like it (``worker0007``) at its overlay address, so a
  cloned worker that claims a free certificate joins with no change on the hub.
- slurmctld believes its host is named :data:`CONTROLLER_NAME` whatever the machine is called
  (it runs in its own UTS namespace); slurmd is started with ``-N`` and the certificate this
  worker leased (``/usr/local/lib/farmhand/slurmd-start``), and stops with Nebula.
- Authentication is munge with one farm-wide key (``munge-key``, declared below: hub and worker
  bundles only, never a boss's).

The pyinfra tasks are in farmhand/deploy/tasks/queue_slurm.py.
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING

from farmhand.errors import UsageError
from farmhand.keystore.farm_secrets import ExtraSecret, declare
from farmhand.keystore.plan import Role
from farmhand.model.distro import Distro
from farmhand.model.paths import FARMHAND_LIB, SYSTEMD_DIR
from farmhand.onhost import jobs
from farmhand.onhost.leases import WORKER_STATE
from farmhand.queue.artifacts import Artifact
from farmhand.queue.base import QueueFile, RenderManager, RenderManagerSpec
from farmhand.queue.slurm_jobs import job_files

if TYPE_CHECKING:
    from farmhand.model.host import HostModel

PARTITION = "render"
"""The one partition: every node, the default one."""
CONTROLLER_NAME = "hub"
"""The name slurmctld answers to (``SlurmctldHost=hub(OVERLAY-IP)``)."""
SLURM_CONF = "/etc/slurm/slurm.conf"
CONTROLLER_PORT = 6817
"""slurmctld on the hub's overlay address, opened to Nebula group ``worker`` only: bosses do
not reach slurmctld (jobs come to it through a service of the hub's)."""
NODE_PORT = 6818
"""slurmd on each worker, opened to the hub (Nebula group ``hub``) only."""
CONTROLLER_UNIT = "farmhand-slurmctld.service"
NODE_UNIT = "farmhand-slurmd.service"
FEATURES_SERVICE = "farmhand-slurm-features.service"
FEATURES_TIMER = "farmhand-slurm-features.timer"
"""On workers: tells Slurm the worker's Blender version as node features, every 10 s (see
farmhand/onhost/jobs.py: which Blender a job needs)."""
FEATURES_COMPONENT = "slurm-features"
NODE_START = f"{FARMHAND_LIB}/slurmd-start"
"""Reads which certificate this worker leased, then execs ``slurmd -D -N NAME``."""
MUNGE_KEY = "/etc/munge/munge.key"
STATE_DIR = "/var/lib/slurm"
CONTROLLER_STATE = f"{STATE_DIR}/slurmctld"
NODE_SPOOL = f"{STATE_DIR}/slurmd"
SLURM_USER = "slurm"
SLURM_UID = 64030
"""Debian's fixed uid for ``slurm``: slurmd accepts slurmctld's messages only from SlurmUser's
uid *as the node knows it*, so every host gets the same one (deploys make the user before the
packages do, also on EL where it would otherwise be any free system uid)."""
VERSION_FILE = "slurm-version"
"""In the hub's read-only installers share: the hub's ``slurmctld -V``, which a worker reads
before it starts slurmd (:func:`version_rule`)."""

MUNGE_KEY_SECRET = declare(
    ExtraSecret(
        name="munge-key",
        # munge takes any key of 32 bytes or more; text keeps the bundle's files readable.
        make=lambda: secrets.token_hex(512).encode() + b"\n",
        private_roles=frozenset({Role.HUB, Role.WORKER}),
    )
)
"""The farm's munge key: whoever holds it can speak to slurmctld as any non-root user."""

RELEASES = (
    "17.11", "18.08", "19.05", "20.02", "20.11", "21.08",
    "22.05", "23.02", "23.11", "24.05", "24.11", "25.05", "25.11",
)  # fmt: skip
"""Slurm's major releases in order (YY.MM); one not listed is placed by its number."""

_MAJOR = re.compile(r"(\d{2})\.(\d{2})")


def major(version: str) -> str | None:
    """The major release (``23.11``) in a version string (``slurm 23.11.4``,
    ``23.11.4-1ubuntu2``), or None."""
    found = _MAJOR.search(version)
    return f"{found.group(1)}.{found.group(2)}" if found else None


def _window(controller: str) -> int:
    """How many releases older than itself a controller of ``controller`` still serves."""
    return 3 if controller >= "24.05" else 2


def version_rule(controller: str, node: str) -> str | None:
    """None when a slurmd of version ``node`` may register with a slurmctld of ``controller``,
    else the one line that says why not and the way out.

    From Slurm's upgrade guide (slurm.schedmd.com/upgrades.html, "Version compatibility"):
    slurmctld must be at least as new as every slurmd, and speaks with daemons at most two
    major releases older (three from 24.05 on: 24.05 serves 23.02, 23.11 and 24.05's own)."""
    ctl, nod = major(controller), major(node)
    if ctl is None or nod is None:
        unknown = controller if ctl is None else node
        return f"cannot tell the Slurm release from {unknown!r}"
    order = sorted({*RELEASES, ctl, nod})
    behind = order.index(ctl) - order.index(nod)
    if behind < 0:
        return (
            f"this worker's slurmd {nod} is newer than the hub's slurmctld {ctl}: "
            "upgrade the hub's slurm first (deploy the hub), or pin this worker's slurm packages "
            f"to {ctl}"
        )
    if behind > _window(ctl):
        return (
            f"this worker's slurmd {nod} is too old for the hub's slurmctld {ctl} "
            f"(it serves daemons at most {_window(ctl)} releases older): upgrade this worker's "
            "slurm packages (its distribution release)"
        )
    return None


CGROUP_CONF = "/etc/slurm/cgroup.conf"
CGROUP_FS_FACT = "stat -fc %T /sys/fs/cgroup 2>/dev/null || true"


def cgroup_conf(fs_type: str) -> bytes:
    """slurmd's cgroup.conf for a host whose /sys/fs/cgroup is ``fs_type``: slurmd finds a pure
    cgroup v2 host (``cgroup2fs``, every supported release's default) by itself, but refuses a
    hybrid or v1 one (``tmpfs``: some containers and older hosts) unless told v1."""
    plugin = "autodetect" if fs_type.strip() == "cgroup2fs" else "cgroup/v1"
    seen = fs_type.strip() or "unknown"
    return f"# farmhand: slurmd's cgroups on this host ({seen}).\nCgroupPlugin={plugin}\n".encode()


def packages(distro: Distro, role: Role) -> tuple[str, ...]:
    """The distribution's packages for the hub's controller or a worker's node (and the
    client tools everywhere)."""
    if distro.package_manager == "apt":
        daemon = "slurmctld" if role is Role.HUB else "slurmd"
        return (daemon, "slurm-client", "munge")
    daemon = "slurm-slurmctld" if role is Role.HUB else "slurm-slurmd"
    return (daemon, "slurm", "munge")


def nodes(model: HostModel) -> list[tuple[str, str]]:
    """(name, overlay address) of every pool worker: the hub's and the workers' bundles carry
    the same peers, so every host renders the same slurm.conf."""
    return sorted((p.name, str(p.ip)) for p in model.bundle.peers_of(Role.WORKER))


class Slurm(RenderManagerSpec):
    manager = RenderManager.SLURM
    label = "Slurm controller"
    port = CONTROLLER_PORT
    client_groups = ("worker",)
    deploy_module = "farmhand.deploy.tasks.queue_slurm"
    boss_hint = "this farm runs Slurm: bosses submit with `farmhand submit`"

    def worker_ports(self) -> tuple[tuple[int, str], ...]:
        # Batch jobs (sbatch) need only these two ports: srun's interactive steps would also
        # open ephemeral ports between the submitting host and the nodes; we do not use srun.
        return ((NODE_PORT, "hub"),)

    def artifacts(self, distro: Distro) -> tuple[Artifact, ...]:
        return ()  # the distribution's packages

    def host_files(self, model: HostModel) -> list[QueueFile]:
        key = model.bundle.extras.get(MUNGE_KEY_SECRET.name)
        if key is None:
            raise UsageError(
                f"the {model.role.value} bundle has no munge key: it comes from an older "
                "farmhand: run `farmhand keys rebundle`"
            )
        values = {
            "nodes": nodes(model),
            "hub_ip": str(model.hub_overlay_ip),
            "slurm": {
                "partition": PARTITION,
                "controller": CONTROLLER_NAME,
                "controller_port": CONTROLLER_PORT,
                "node_port": NODE_PORT,
                "controller_state": CONTROLLER_STATE,
                "node_spool": NODE_SPOOL,
                "user": SLURM_USER,
                "conf": SLURM_CONF,
                "node_start": NODE_START,
                "features_service": FEATURES_SERVICE,
                "features_timer": FEATURES_TIMER,
            },
            "lease_state": WORKER_STATE,
            "jobs_lib": jobs.LIB,
            "worker_config": jobs.WORKER_CONFIG,
        }
        files = [
            QueueFile("munge", MUNGE_KEY, content=key, mode=0o400, secret=True,
                      owner="munge", group="munge"),
            QueueFile("slurm", SLURM_CONF, "slurm/slurm.conf.j2", values=values),
        ]  # fmt: skip
        if model.role is Role.HUB:
            files.append(
                QueueFile(
                    "slurm",
                    f"{SYSTEMD_DIR}/{CONTROLLER_UNIT}",
                    "slurm/farmhand-slurmctld.service.j2",
                    values=values,
                )
            )
        else:
            files += [
                QueueFile(
                    "slurm", NODE_START, "slurm/slurmd-start.sh.j2", values=values, mode=0o755
                ),
                QueueFile(
                    "slurm",
                    f"{SYSTEMD_DIR}/{NODE_UNIT}",
                    "slurm/farmhand-slurmd.service.j2",
                    values=values,
                ),
                *(
                    QueueFile(
                        FEATURES_COMPONENT,
                        f"{SYSTEMD_DIR}/{unit}",
                        f"slurm/{unit}.j2",
                        values=values,
                    )
                    for unit in (FEATURES_SERVICE, FEATURES_TIMER)
                ),
            ]
        return files + job_files(model)


MANAGER = Slurm()
"""Slurm on hosts (this module): slurmctld on the hub, slurmd on workers."""
