"""Flamenco 3 on hosts (the spec is farmhand/queue/flamenco.py): the manager on the hub
(overlay only), workers as the farm user."""

from __future__ import annotations

from pyinfra.operations import files

from farmhand.deploy.tasks import deploy, ops
from farmhand.deploy.tasks import files as farm_files
from farmhand.deploy.tasks.installers import take, unpack
from farmhand.hostfiles.base import HostFiles
from farmhand.model.host import HostModel
from farmhand.model.paths import FLAMENCO_MANAGER_DIR, OPT
from farmhand.queue.artifacts import FLAMENCO
from farmhand.queue.flamenco import part as flamenco_part

STATE_PARENT = FLAMENCO_MANAGER_DIR.rsplit("/", 1)[0]
STORAGE = "flamenco-manager-storage"
"""``local_manager_storage_path`` in our flamenco-manager.yaml."""


def hub(model: HostModel, host_files: HostFiles) -> None:
    flamenco(model, host_files)


def worker(model: HostModel, host_files: HostFiles) -> None:
    flamenco(model, host_files)


@deploy("Flamenco")
def flamenco(model: HostModel, host_files: HostFiles) -> None:
    part, workdir, unit_name = flamenco_part(model)
    archive = take(model, FLAMENCO)
    top = FLAMENCO.filename.removesuffix(".tar.gz")
    unpack(archive, top, OPT, f"{OPT}/flamenco", f"flamenco-{part}")
    # Its own state (SQLite, worker credentials) lives here, owned by the farm user. The parent
    # is root's and may be made 0700 elsewhere: the farm user may pass through it (0711: no
    # listing; its other folders keep their own modes), or systemd cannot chdir there.
    files.directory(
        name=f"Let the farm user pass through {STATE_PARENT} (0711)",
        path=STATE_PARENT,
        mode="711",
        user="root",
        group="root",
        present=True,
    )
    files.directory(
        name=f"Flamenco {part} folder {workdir}",
        path=workdir,
        mode="750",
        user=model.farm_user,
        group=model.farm_user,
        present=True,
    )
    if part == "manager":
        _manager_storage(model, f"{OPT}/{top}", workdir)
    config = farm_files.install(host_files.plain("flamenco"))
    ops.managed_service(
        "flamenco",
        unit_name,
        host_files.units("flamenco"),
        depends=config,
        restart_name=f"Restart {unit_name} after its configuration changed",
    )


def _manager_storage(model: HostModel, unpacked: str, workdir: str) -> None:
    """The manager keeps task logs and last-rendered images in ``local_manager_storage_path``
    resolved next to its executable (in root's /opt), whatever the path says: point that name
    at a folder the farm user owns, beside its database."""
    storage = f"{workdir}/{STORAGE}"
    files.directory(
        name=f"Flamenco manager storage {storage}",
        path=storage,
        mode="750",
        user=model.farm_user,
        group=model.farm_user,
        present=True,
    )
    files.link(
        name=f"{unpacked}/{STORAGE} -> {storage}",
        path=f"{unpacked}/{STORAGE}",
        target=storage,
        present=True,
    )
