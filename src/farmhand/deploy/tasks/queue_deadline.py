"""Deadline 10 on hosts (the spec is farmhand/queue/deadline.py): MongoDB and the Repository
into the hub's queue share on the hub; on workers the Client and the worker's own unit
(``deadlineworker -nogui`` as the farm user).

MongoDB has its own user, listens on the overlay only, with TLS and access control.
"""

from __future__ import annotations

import hashlib
import shlex

from pyinfra.api.operation import OperationMeta
from pyinfra.context import host
from pyinfra.facts.files import File
from pyinfra.facts.server import Command
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from farmhand.deploy.tasks import deploy, packages
from farmhand.deploy.tasks import files as farm_files
from farmhand.deploy.tasks.installers import take, unpack
from farmhand.hostfiles.base import RenderedFile
from farmhand.keystore.plan import Role
from farmhand.model.host import HostModel
from farmhand.model.paths import (
    CLIENT_PFX,
    DEADLINE_HOME,
    FARMHAND_STATE,
    LOCAL_CACHE,
    MONGODB_DATA,
    MONGODB_RUN,
    MONGODB_USER_STAMP,
    MOUNTS_ROOT,
    OPT,
    QUEUE_ETC,
    REPOSITORY_DIR,
    SYSTEMD_DIR,
)
from farmhand.queue import artifacts
from farmhand.queue.artifacts import DEADLINE
from farmhand.queue.deadline import (
    CLIENT_INSTALLER,
    DEADLINE_UNIT,
    INSTALLERS_DIR,
    MONGODB_UNIT,
    MONGODB_USER,
    PASSWORD_ENV,
    PORT,
    REPOSITORY_INSTALLER,
    client_args,
    repository_args,
    tls,
)


def hub(model: HostModel, rendered: dict[str, RenderedFile]) -> None:
    """The hub: the database, then the Repository."""
    mongodb(model, rendered)
    repository(model, rendered)


def worker(model: HostModel, rendered: dict[str, RenderedFile]) -> None:
    client(model, rendered)


def group_readable(item: RenderedFile, group: str) -> OperationMeta:
    """A secret a service user must read: root-owned, the service's group."""
    return farm_files.install_one(item, group=group)


@deploy("MongoDB (Deadline database)")
def mongodb(model: HostModel, rendered: dict[str, RenderedFile]) -> None:
    server.user(
        name=f"System user {MONGODB_USER} (the database never runs as root)",
        user=MONGODB_USER,
        system=True,
        home=MONGODB_DATA,
        shell="/usr/sbin/nologin",
        create_home=False,
        present=True,
    )
    files.directory(
        name=f"Database folder {MONGODB_DATA}",
        path=MONGODB_DATA,
        mode="750",
        user=MONGODB_USER,
        group=MONGODB_USER,
        present=True,
    )
    for artifact, link, binary in (
        (artifacts.mongodb(model.distro), f"{OPT}/mongodb", "bin/mongod"),
        (artifacts.mongosh(model.distro), f"{OPT}/mongosh", "bin/mongosh"),
    ):
        archive, _ = take(model, artifact)
        top = artifact.filename.removesuffix(".tgz")
        unpack(archive, top, OPT, link, binary)
    # Holds the queue's keys: services pass through by name, nobody else lists it.
    files.directory(name=f"Folder {QUEUE_ETC}", path=QUEUE_ETC, mode="711", present=True)
    changed = farm_files.install(
        rendered[p]
        for p in (
            f"{QUEUE_ETC}/ca.crt",
            f"{QUEUE_ETC}/mongod.conf",
            f"{SYSTEMD_DIR}/{MONGODB_UNIT}",
        )
    )
    changed.append(group_readable(rendered[f"{QUEUE_ETC}/mongod.pem"], MONGODB_USER))
    secrets = farm_files.install(
        rendered[p]
        for p in (
            f"{QUEUE_ETC}/db.password",
            f"{QUEUE_ETC}/create-user.js",
            f"{QUEUE_ETC}/client.pem",
        )
    )
    systemd.daemon_reload(name="Reload systemd units (mongodb)", _if=any_changed(*changed))
    started = systemd.service(
        name=f"{MONGODB_UNIT} running and enabled",
        service=MONGODB_UNIT,
        enabled=True,
        running=True,
    )
    systemd.service(
        name=f"Restart {MONGODB_UNIT} after its configuration or keys changed",
        service=MONGODB_UNIT,
        restarted=True,
        _if=lambda: any_changed(*changed)() and not started.did_change(),
    )
    _database_user(model, secrets)


def _database_user(model: HostModel, secrets: list[OperationMeta]) -> None:
    """Deadline's database user, once, over root's local socket (the password is in a 0600
    script file, never on a command line)."""
    password = rendered_password_digest(model)
    applied = host.get_fact(Command, command=f"cat {MONGODB_USER_STAMP} 2>/dev/null || true")
    if (applied or "").strip() == password:
        return
    socket = f"{MONGODB_RUN}/mongodb-{PORT}.sock"
    uri = "mongodb://" + socket.replace("/", "%2F") + "/admin"
    server.shell(
        name="Deadline's database user (created once)",
        commands=[
            f"for i in $(seq 60); do [ -S {socket} ] && break; sleep 1; done",
            f"{OPT}/mongosh/bin/mongosh --quiet '{uri}' {QUEUE_ETC}/create-user.js",
            f"echo {password} > {MONGODB_USER_STAMP} && chmod 600 {MONGODB_USER_STAMP}",
        ],
    )


def rendered_password_digest(model: HostModel) -> str:
    return hashlib.sha256(tls(model).db_password.encode()).hexdigest()


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
