"""Deadline 10 on hosts (the spec is farmhand/queue/deadline.py): MongoDB and the Repository
into the hub's queue share on the hub; on workers the Client and the worker's own unit
(``deadlineworker -nogui`` as the farm user).

MongoDB has its own user, listens on the overlay only, with TLS and access control.
"""

from __future__ import annotations

import hashlib
import shlex

from pyinfra.context import host
from pyinfra.facts.files import File
from pyinfra.operations import files, server

from farmhand.deploy.tasks import deploy, ops, packages
from farmhand.deploy.tasks import files as farm_files
from farmhand.deploy.tasks.installers import take, unpack, verified
from farmhand.hostfiles.base import HostFiles
from farmhand.keystore.plan import Role
from farmhand.model.host import HostModel
from farmhand.model.paths import (
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
)
from farmhand.model.smb import WORKERS_GROUP
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
    REPOSITORY_DATA,
    REPOSITORY_INSTALLER,
    client_args,
    repository_args,
    tls,
)


def hub(model: HostModel, host_files: HostFiles) -> None:
    """The hub: the database, then the Repository."""
    mongodb(model, host_files)
    repository(model, host_files)


def worker(model: HostModel, host_files: HostFiles) -> None:
    client(model, host_files)


@deploy("MongoDB (Deadline database)")
def mongodb(model: HostModel, host_files: HostFiles) -> None:
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
        archive = take(model, artifact)
        top = artifact.filename.removesuffix(".tgz")
        unpack(archive, top, OPT, link, binary)
    # Holds the queue's keys: services pass through by name, nobody else lists it.
    files.directory(name=f"Folder {QUEUE_ETC}", path=QUEUE_ETC, mode="711", present=True)
    config = farm_files.install(host_files.plain("mongodb"))
    ops.managed_service(
        "mongodb",
        MONGODB_UNIT,
        host_files.units("mongodb"),
        depends=config,
        restart_name=f"Restart {MONGODB_UNIT} after its configuration or keys changed",
    )
    farm_files.install(host_files.of("mongodb-user"))
    _database_user(model)


def _database_user(model: HostModel) -> None:
    """Deadline's database user, once per password, over root's local socket (the password is
    in a 0600 script file, never on a command line)."""
    socket = f"{MONGODB_RUN}/mongodb-{PORT}.sock"
    uri = "mongodb://" + socket.replace("/", "%2F") + "/admin"
    ops.once_per_digest(
        "Deadline's database user (created once)",
        MONGODB_USER_STAMP,
        database_password_digest(model),
        [
            f"for i in $(seq 60); do [ -S {socket} ] && break; sleep 1; done",
            f"{OPT}/mongosh/bin/mongosh --quiet '{uri}' {QUEUE_ETC}/create-user.js",
        ],
    )


def database_password_digest(model: HostModel) -> str:
    """What the user stamp holds: the sha256 of the database password, never the password."""
    return hashlib.sha256(tls(model).db_password.encode()).hexdigest()


def _installers(model: HostModel) -> str:
    """The Linux installers tar unpacked (once) beside the local artifacts; returns the folder."""
    archive, sha256 = take(model, DEADLINE)
    folder = f"{LOCAL_CACHE}/{INSTALLERS_DIR}"
    files.directory(
        name=f"Folder {folder} (root's)",
        path=folder,
        mode="700",
        user="root",
        group="root",
        present=True,
    )
    probe = REPOSITORY_INSTALLER if model.role is Role.HUB else CLIENT_INSTALLER
    if not host.get_fact(File, path=f"{folder}/{probe}"):
        server.shell(
            name=f"Unpack {DEADLINE.filename} (sha256-checked)",
            commands=[verified(archive, sha256), f"tar --no-same-owner -xf {archive} -C {folder}"],
        )
    return folder


def _run_once(name: str, stamp: str, argv: list[str], env: str, then: list[str]) -> None:
    """Run an installer when its exact arguments (or version) changed since the last run."""
    digest = hashlib.sha256("\0".join(argv).encode()).hexdigest()
    command = " ".join(shlex.quote(part) for part in argv)
    ops.once_per_digest(name, stamp, digest, [f"{env}{command}", *then])


@deploy("Deadline Repository")
def repository(model: HostModel, host_files: HostFiles) -> None:
    folder = _installers(model)
    farm_files.install(host_files.of("deadline-repository"))
    argv = [f"{folder}/{REPOSITORY_INSTALLER}", *repository_args(model.overlay_ip)]
    _run_once(
        "Deadline Repository into the queue share (unattended)",
        f"{FARMHAND_STATE}/deadline-repository.sha256",
        argv,
        f'{PASSWORD_ENV}="$(cat {QUEUE_ETC}/db.password)" ',
        [],
    )
    _repository_permissions(model, argv)


def repository_permission_commands(farm_user: str) -> list[str]:
    """Root owns the Repository and nobody else may write its code (the installer leaves files
    owned by uid 1000, as oomerfarm found); only its data folders are the queue clients'."""
    data = " ".join(f"{REPOSITORY_DIR}/{name}" for name in REPOSITORY_DATA)
    return [
        f"chown -R root:root {REPOSITORY_DIR}",
        f"chmod -R u+rwX,go+rX,go-w {REPOSITORY_DIR}",
        f"mkdir -p {data}",
        f"chown -R {farm_user}:{WORKERS_GROUP} {data}",
        f"chmod -R u+rwX,g+rwX,o+rX,o-w {data}",
        f"find {data} -type d -exec chmod g+s {{}} +",
    ]


def _repository_permissions(model: HostModel, installer: list[str]) -> None:
    """Again after every installer run (the digest covers its arguments) and once on hubs
    installed before the Repository's code was root's."""
    commands = repository_permission_commands(model.farm_user)
    digest = hashlib.sha256("\0".join([*installer, *commands]).encode()).hexdigest()
    ops.once_per_digest(
        "Deadline Repository: code root's and read-only, data folders the queue clients'",
        f"{FARMHAND_STATE}/deadline-repository-permissions.sha256",
        digest,
        commands,
    )


@deploy("Deadline Client (worker)")
def client(model: HostModel, host_files: HostFiles) -> None:
    # Deadline's worker needs `file`; on EL 9 the installer needed initscripts (oomerfarm's notes).
    extra = ("initscripts",) if model.distro.selinux else ()
    packages.install(model, "file", *extra)
    # Holds the queue's keys: services pass through by name, nobody else lists it.
    files.directory(name=f"Folder {QUEUE_ETC}", path=QUEUE_ETC, mode="711", present=True)
    changed = farm_files.install(host_files.plain("deadline-client"))
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
    ops.managed_service(
        "deadline",
        DEADLINE_UNIT,
        host_files.units("deadline-client"),
        depends=changed,
        restart_name=f"Restart {DEADLINE_UNIT} after its unit or certificate changed",
    )
