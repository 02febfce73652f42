"""Deadline 10: the Repository into the hub's queue share, the Client on workers, and the
worker's own unit (``deadlineworker -nogui`` as the farm user)."""

from __future__ import annotations

import hashlib
import shlex

from pyinfra.context import host
from pyinfra.facts.files import File
from pyinfra.facts.server import Command
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from farmhand.deploy.tasks import deploy, packages
from farmhand.deploy.tasks import files as farm_files
from farmhand.deploy.tasks.installers import take
from farmhand.deploy.tasks.mongodb import group_readable
from farmhand.hostfiles.base import RenderedFile
from farmhand.hostfiles.queue import DEADLINE_UNIT
from farmhand.keystore.plan import Role
from farmhand.model.host import HostModel
from farmhand.model.paths import (
    CLIENT_PFX,
    DEADLINE_HOME,
    FARMHAND_STATE,
    LOCAL_CACHE,
    MOUNTS_ROOT,
    QUEUE_ETC,
    REPOSITORY_DIR,
    SYSTEMD_DIR,
)
from farmhand.queue.artifacts import DEADLINE
from farmhand.queue.deadline import (
    CLIENT_INSTALLER,
    INSTALLERS_DIR,
    PASSWORD_ENV,
    REPOSITORY_INSTALLER,
    client_args,
    repository_args,
)


def _installers(model: HostModel) -> str:
    """The Linux installers tar unpacked (once) beside the local artifacts; returns the folder."""
    archive, _ = take(model, DEADLINE)
    folder = f"{LOCAL_CACHE}/{INSTALLERS_DIR}"
    files.directory(name=f"Folder {folder}", path=folder, mode="700", present=True)
    probe = REPOSITORY_INSTALLER if model.role is Role.HUB else CLIENT_INSTALLER
    if not host.get_fact(File, path=f"{folder}/{probe}"):
        server.shell(
            name=f"Unpack {DEADLINE.filename}",
            commands=[f"tar --no-same-owner -xf {archive} -C {folder}"],
        )
    return folder


def _run_once(name: str, stamp: str, argv: list[str], env: str, then: list[str]) -> None:
    """Run an installer when its exact arguments (or version) changed since the last run."""
    digest = hashlib.sha256("\0".join(argv).encode()).hexdigest()
    applied = host.get_fact(Command, command=f"cat {stamp} 2>/dev/null || true")
    if (applied or "").strip() == digest:
        return
    command = " ".join(shlex.quote(part) for part in argv)
    server.shell(
        name=name,
        commands=[f"{env}{command}", *then, f"echo {digest} > {stamp}"],
    )


@deploy("Deadline Repository")
def repository(model: HostModel, rendered: dict[str, RenderedFile]) -> None:
    folder = _installers(model)
    group_readable(rendered[CLIENT_PFX], model.farm_user)
    argv = [f"{folder}/{REPOSITORY_INSTALLER}", *repository_args(model.overlay_ip)]
    _run_once(
        "Deadline Repository into the queue share (unattended)",
        f"{FARMHAND_STATE}/deadline-repository.sha256",
        argv,
        f'{PASSWORD_ENV}="$(cat {QUEUE_ETC}/db.password)" ',
        # The installer leaves files owned by uid 1000 (as oomerfarm found): the farm user's.
        [f"chown -R {model.farm_user}:{model.farm_user} {REPOSITORY_DIR}"],
    )


@deploy("Deadline Client (worker)")
def client(model: HostModel, rendered: dict[str, RenderedFile]) -> None:
    # Deadline's worker needs `file`; on EL 9 the installer needed initscripts (oomerfarm's notes).
    extra = ("initscripts",) if model.distro.selinux else ()
    packages.install(model, "file", *extra)
    # Holds the queue's keys: services pass through by name, nobody else lists it.
    files.directory(name=f"Folder {QUEUE_ETC}", path=QUEUE_ETC, mode="711", present=True)
    changed = farm_files.install([rendered[f"{QUEUE_ETC}/ca.crt"]])
    changed.append(group_readable(rendered[CLIENT_PFX], model.farm_user))
    folder = _installers(model)
    argv = [
        f"{folder}/{CLIENT_INSTALLER}",
        *client_args(f"{MOUNTS_ROOT}/queue", model.farm_user),
    ]
    _run_once(
        "Deadline Client, binaries only (unattended)",
        f"{FARMHAND_STATE}/deadline-client.sha256",
        argv,
        "",
        [],
    )
    files.directory(
        name=f"Deadline worker home {DEADLINE_HOME}",
        path=DEADLINE_HOME,
        mode="750",
        user=model.farm_user,
        group=model.farm_user,
        present=True,
    )
    unit = farm_files.install([rendered[f"{SYSTEMD_DIR}/{DEADLINE_UNIT}"]])
    systemd.daemon_reload(name="Reload systemd units (deadline)", _if=any_changed(*unit))
    started = systemd.service(
        name=f"{DEADLINE_UNIT} running and enabled",
        service=DEADLINE_UNIT,
        enabled=True,
        running=True,
    )
    systemd.service(
        name=f"Restart {DEADLINE_UNIT} after its unit or certificate changed",
        service=DEADLINE_UNIT,
        restarted=True,
        _if=lambda: any_changed(*unit, *changed)() and not started.did_change(),
    )
