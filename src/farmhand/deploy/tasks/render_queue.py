"""The render queue on a host (the plan's manager) and the renderer on workers.

The manager's tasks are in the module its spec names (``deploy_module``, deploy/tasks/queue_*.py):
imported here, by name, so that nothing the CLI imports at start-up imports pyinfra.
"""

from __future__ import annotations

import importlib

from pyinfra.context import host
from pyinfra.operations import files

from farmhand.deploy.tasks import deploy, ops, packages
from farmhand.deploy.tasks import files as farm_files
from farmhand.deploy.tasks.installers import cache_on_hub, root_only_folders, take, unpack
from farmhand.hostfiles.base import HostFiles
from farmhand.keystore.plan import Role
from farmhand.model.distro import Distro
from farmhand.model.host import HostModel
from farmhand.model.paths import DEADLINE_PREFIX, OPT
from farmhand.queue import manager_for, needed
from farmhand.queue.artifacts import (
    BELLA,
    BLENDER,
    FLAMENCO,
    blender_from_package,
    mongodb,
    mongosh,
)
from farmhand.queue.base import Renderer, renderer


@deploy("Render queue")
def render_queue(model: HostModel, host_files: HostFiles) -> None:
    if not host.data.get("farmhand_queue", True):
        return  # `farmhand deploy --no-queue`: the overlay and shares only
    farm_files.install(host_files.of("queue"))  # the artifact fetcher
    if model.role is Role.WORKER:
        # Workers take artifacts from the hub's share with smbclient (no mount needed).
        packages.install(model, "smbclient" if not model.distro.selinux else "samba-client")
    root_only_folders(model)
    if model.distro.selinux:
        _selinux_contexts(model)
    if model.role is Role.HUB:
        # Everything the farm's choices need lands in the root-only cache first (once), and
        # a root-owned copy in the read-only installers share.
        for artifact in needed(model.plan, model.distro):
            cache_on_hub(model, artifact)
    tasks = importlib.import_module(manager_for(model.plan).deploy_module)
    (tasks.hub if model.role is Role.HUB else tasks.worker)(model, host_files)
    if model.role is Role.WORKER:
        render_engine(model)


def render_engine(model: HostModel) -> None:
    """Blender from the distribution where it has a package, else the pinned release; or Bella."""
    if renderer(model.plan) is Renderer.BELLA:
        archive = take(model, BELLA)
        top = BELLA.filename.removesuffix(".tar.gz")
        files.directory(name=f"Folder {OPT}/{top}", path=f"{OPT}/{top}", mode="755")
        unpack(archive, ".", f"{OPT}/{top}", f"{OPT}/bella", "bella_cli")
        files.link(
            name="/usr/local/bin/bella_cli", path="/usr/local/bin/bella_cli",
            target=f"{OPT}/bella/bella_cli",
        )  # fmt: skip
        return
    if blender_from_package(model.distro):
        packages.install(model, "blender")
        return
    archive = take(model, BLENDER)
    unpack(archive, BLENDER.filename.removesuffix(".tar.xz"), OPT, f"{OPT}/blender", "blender")
    files.link(
        name="/usr/local/bin/blender", path="/usr/local/bin/blender",
        target=f"{OPT}/blender/blender",
    )  # fmt: skip


def selinux_rules(distro: Distro) -> list[tuple[str, str]]:
    """(path, type) for what we unpack under /opt and the Deadline client installs: each
    folder written out from the artifacts' names (tar's top folder is the archive's name), as
    pyinfra's mapping fact finds only literal paths (ops.selinux_labels)."""
    tops = [a.filename.removesuffix(".tgz") for a in (mongodb(distro), mongosh(distro))]
    flamenco = FLAMENCO.filename.removesuffix(".tar.gz")
    blender = BLENDER.filename.removesuffix(".tar.xz")
    return [
        *((f"{OPT}/{top}/bin(/.*)?", "bin_t") for top in tops),
        (f"{OPT}/{flamenco}/flamenco-manager", "bin_t"),
        (f"{OPT}/{flamenco}/flamenco-worker", "bin_t"),
        (f"{OPT}/{blender}/blender", "bin_t"),
        (f"{DEADLINE_PREFIX}/bin(/.*)?", "bin_t"),
    ]


def _selinux_contexts(model: HostModel) -> None:
    """Persistent labels (never chcon) for the queue's binaries."""
    ops.selinux_labels(
        "the queue's folders",
        selinux_rules(model.distro),
        restore=f"restorecon -R {OPT} /opt/Thinkbox 2>/dev/null || restorecon -R {OPT}",
    )
