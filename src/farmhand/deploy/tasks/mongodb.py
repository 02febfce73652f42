"""MongoDB for Deadline on the hub: its own user, overlay-only, TLS and access control."""

from __future__ import annotations

import hashlib

from pyinfra.api.operation import OperationMeta
from pyinfra.context import host
from pyinfra.facts.server import Command
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from farmhand.deploy.tasks import deploy
from farmhand.deploy.tasks import files as farm_files
from farmhand.deploy.tasks.installers import take, unpack
from farmhand.hostfiles.base import RenderedFile
from farmhand.hostfiles.queue import MONGODB_UNIT, tls
from farmhand.model.host import HostModel
from farmhand.model.paths import (
    MONGODB_DATA,
    MONGODB_RUN,
    MONGODB_USER_STAMP,
    OPT,
    QUEUE_ETC,
    SYSTEMD_DIR,
)
from farmhand.queue import artifacts
from farmhand.queue.base import MONGODB_USER, queue_service


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
    port = queue_service(model.plan).port
    socket = f"{MONGODB_RUN}/mongodb-{port}.sock"
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
