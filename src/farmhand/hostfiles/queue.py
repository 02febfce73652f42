"""The render queue's files on a hub or worker: the artifact fetcher, the manager's or the
database's config and units, and the queue's TLS keys."""

from __future__ import annotations

from collections.abc import Callable

from farmhand.errors import BundleError
from farmhand.hostfiles.base import RenderedFile
from farmhand.keystore.plan import Role
from farmhand.model.host import HostModel
from farmhand.model.paths import (
    CLIENT_PFX,
    DEADLINE_HOME,
    DEADLINE_PREFIX,
    FETCH,
    FLAMENCO_MANAGER_DIR,
    FLAMENCO_WORKER_DIR,
    MONGODB_DATA,
    MONGODB_RUN,
    MOUNTS_ROOT,
    OPT,
    QUEUE_ETC,
    SHARES_ROOT,
    SYSTEMD_DIR,
)
from farmhand.queue.artifacts import BLENDER, MONGODB_VERSION, blender_from_package
from farmhand.queue.base import (
    DEADLINE_DB_USER,
    MONGODB_USER,
    RenderManager,
    queue_service,
    render_manager,
)
from farmhand.queue.tls import NAME as TLS_NAME
from farmhand.queue.tls import QueueTls

Render = Callable[..., bytes]
MONGODB_UNIT = "farmhand-mongodb.service"
DEADLINE_UNIT = "farmhand-deadline-worker.service"
FLAMENCO_MANAGER_UNIT = "farmhand-flamenco-manager.service"
FLAMENCO_WORKER_UNIT = "farmhand-flamenco-worker.service"
GROUP_READABLE = {CLIENT_PFX: "farm", f"{QUEUE_ETC}/mongod.pem": MONGODB_USER}
"""Secret files the service user must read (mode 0640): the group that owns them."""


def tls(model: HostModel) -> QueueTls:
    extras = model.bundle.extras
    blob = extras.get(TLS_NAME) or extras.get(f"{TLS_NAME}.{model.role.value}")
    if blob is None:
        raise BundleError(
            f"the {model.role.value} bundle has no render queue keys: "
            "re-export it with 'farmhand bundle' (the store adds them)"
        )
    return QueueTls.from_bytes(blob)


def blender_path(model: HostModel) -> str:
    return "/usr/bin/blender" if blender_from_package(model.distro) else f"{OPT}/blender/blender"


def queue_files(model: HostModel, render: Render) -> list[RenderedFile]:
    """The queue's files for a hub or worker (bosses install their client themselves)."""
    if model.role is Role.BOSS:
        return []
    queue = queue_service(model.plan)
    manager = render_manager(model.plan)
    ctx = {
        "queue": queue,
        "queue_etc": QUEUE_ETC,
        "opt": OPT,
        "shares_root": SHARES_ROOT,
        "mounts_root": MOUNTS_ROOT,
        "blender_linux": blender_path(model),
        "blender_version": BLENDER.version,
    }
    files = [RenderedFile(FETCH, render("queue/fetch-artifact.py.j2", **ctx), 0o755)]
    if manager is RenderManager.FLAMENCO:
        part = "manager" if model.role is Role.HUB else "worker"
        workdir = FLAMENCO_MANAGER_DIR if part == "manager" else FLAMENCO_WORKER_DIR
        unit = FLAMENCO_MANAGER_UNIT if part == "manager" else FLAMENCO_WORKER_UNIT
        files += [
            RenderedFile(
                f"{workdir}/flamenco-{part}.yaml",
                render(f"flamenco/flamenco-{part}.yaml.j2", **ctx),
            ),
            RenderedFile(
                f"{SYSTEMD_DIR}/{unit}",
                render("flamenco/farmhand-flamenco.service.j2", part=part, workdir=workdir, **ctx),
            ),
        ]
        return files
    keys = tls(model)
    files.append(RenderedFile(f"{QUEUE_ETC}/ca.crt", keys.ca_cert))
    files.append(RenderedFile(CLIENT_PFX, keys.client_pfx, 0o640, secret=True))
    if model.role is Role.WORKER:
        files.append(
            RenderedFile(
                f"{SYSTEMD_DIR}/{DEADLINE_UNIT}",
                render(
                    "deadline/farmhand-deadline-worker.service.j2",
                    deadline_prefix=DEADLINE_PREFIX,
                    worker_home=DEADLINE_HOME,
                    **ctx,
                ),
            )
        )
        return files
    mongo = {
        "mongodb_run": MONGODB_RUN,
        "mongodb_data": MONGODB_DATA,
        "mongodb_user": MONGODB_USER,
        "mongodb_version": MONGODB_VERSION,
    }
    files += [
        RenderedFile(
            f"{QUEUE_ETC}/mongod.pem", keys.server_pem(model.overlay_ip), 0o640, secret=True
        ),
        RenderedFile(f"{QUEUE_ETC}/client.pem", keys.client_pem, 0o600, secret=True),
        RenderedFile(f"{QUEUE_ETC}/mongod.conf", render("mongodb/mongod.conf.j2", **ctx, **mongo)),
        RenderedFile(
            f"{SYSTEMD_DIR}/{MONGODB_UNIT}",
            render("mongodb/farmhand-mongodb.service.j2", **ctx, **mongo),
        ),
        RenderedFile(
            f"{QUEUE_ETC}/db.password", keys.db_password.encode() + b"\n", 0o600, secret=True
        ),
        RenderedFile(
            f"{QUEUE_ETC}/create-user.js",
            render(
                "mongodb/create-user.js.j2",
                db_user=DEADLINE_DB_USER,
                db_password=keys.db_password,
                **ctx,
            ),
            0o600,
            secret=True,
        ),
    ]
    return files
