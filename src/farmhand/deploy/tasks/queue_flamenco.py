"""Flamenco 3 on hosts (the spec is farmhand/queue/flamenco.py): the manager on the hub
(overlay only), workers as the farm user."""

from __future__ import annotations

from pyinfra.operations import files, systemd
from pyinfra.operations.util import any_changed

from farmhand.deploy.tasks import deploy
from farmhand.deploy.tasks import files as farm_files
from farmhand.deploy.tasks.installers import take, unpack
from farmhand.hostfiles.base import RenderedFile
from farmhand.model.host import HostModel
from farmhand.model.paths import FLAMENCO_MANAGER_DIR, OPT, SYSTEMD_DIR
from farmhand.queue.artifacts import FLAMENCO
from farmhand.queue.flamenco import part as flamenco_part

STATE_PARENT = FLAMENCO_MANAGER_DIR.rsplit("/", 1)[0]
STORAGE = "flamenco-manager-storage"
"""``local_manager_storage_path`` in our flamenco-manager.yaml."""


def hub(model: HostModel, rendered: dict[str, RenderedFile]) -> None:
    flamenco(model, rendered)


def worker(model: HostModel, rendered: dict[str, RenderedFile]) -> None:
    flamenco(model, rendered)


@deploy("Flamenco")
def flamenco(model: HostModel, rendered: dict[str, RenderedFile]) -> None:
    part, workdir, unit_name = flamenco_part(model)
    archive, _ = take(model, FLAMENCO)
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
    config = farm_files.install([rendered[f"{workdir}/flamenco-{part}.yaml"]])
    unit = farm_files.install([rendered[f"{SYSTEMD_DIR}/{unit_name}"]])
    systemd.daemon_reload(name="Reload systemd units (flamenco)", _if=any_changed(*unit))
    started = systemd.service(
        name=f"{unit_name} running and enabled", service=unit_name, enabled=True, running=True
    )
    systemd.service(
        name=f"Restart {unit_name} after its configuration changed",
        service=unit_name,
        restarted=True,
        _if=lambda: any_changed(*config, *unit)() and not started.did_change(),
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
