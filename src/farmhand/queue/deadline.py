"""Deadline 10 with its MongoDB: the render manager, its installer flags, its files, its client.

The pyinfra tasks are in farmhand/deploy/tasks/queue_deadline.py. The installer flags are the
ones oomerfarm ran and AWS documents; the database port is always passed explicitly (Deadline's
installers disagree on its default), the password only as ``env:VAR`` (never on a command line).
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from farmhand.errors import BundleError, UsageError
from farmhand.keystore.plan import Role
from farmhand.model.distro import Distro
from farmhand.model.paths import (
    CLIENT_PFX,
    DEADLINE_HOME,
    DEADLINE_PREFIX,
    MONGODB_DATA,
    MONGODB_RUN,
    QUEUE_ETC,
    REPOSITORY_DIR,
    SYSTEMD_DIR,
)
from farmhand.queue import artifacts
from farmhand.queue.artifacts import DEADLINE_VERSION, MONGODB_VERSION, Artifact
from farmhand.queue.base import QueueFile, RenderManager, RenderManagerSpec
from farmhand.queue.tls import NAME as TLS_NAME
from farmhand.queue.tls import QueueTls

if TYPE_CHECKING:
    from farmhand.model.host import HostModel

PORT = 27100
"""MongoDB's, always passed explicitly: Deadline's installers disagree on the default (27100
or 27017)."""
DEADLINE_DB_NAME = "deadline10db"
DEADLINE_DB_USER = "deadline"
MONGODB_USER = "farmhand-mongodb"
MONGODB_UNIT = "farmhand-mongodb.service"
DEADLINE_UNIT = "farmhand-deadline-worker.service"
PASSWORD_ENV = "FARMHAND_QUEUE_DB_PASSWORD"  # noqa: S105 - a variable name
INSTALLERS_DIR = f"Deadline-{DEADLINE_VERSION}-linux-installers"
REPOSITORY_INSTALLER = f"DeadlineRepository-{DEADLINE_VERSION}-linux-x64-installer.run"
CLIENT_INSTALLER = f"DeadlineClient-{DEADLINE_VERSION}-linux-x64-installer.run"
REPOSITORY_DATA = ("jobs", "jobsArchived", "reports", "temp", "trash")
"""The Repository's data folders (jobs' files, logs, scratch space, deleted jobs): the queue's
clients write these, as the farm user (bosses) and the workers' group. Everything else in the
Repository (bin, plugins, scripts, events, custom, settings, submission, api...) is code or
settings that every worker and boss runs or reads: root's, and read-only to them all."""


def repository_args(hub: IPv4Address) -> list[str]:
    """The Repository into the queue share, against our own MongoDB (TLS, auth)."""
    return [
        "--mode", "unattended",
        "--unattendedmodeui", "none",
        "--prefix", REPOSITORY_DIR,
        "--dbhost", str(hub),
        "--dbport", str(PORT),
        "--dbListeningPort", str(PORT),
        "--installmongodb", "false",
        "--dbname", DEADLINE_DB_NAME,
        "--dbssl", "true",
        "--dbclientcert", CLIENT_PFX,
        "--dbauth", "true",
        "--dbuser", DEADLINE_DB_USER,
        "--dbpassword", f"env:{PASSWORD_ENV}",
        "--requireSSL", "true",
    ]  # fmt: skip


def client_args(repository: str, daemon_user: str, pfx: str = CLIENT_PFX) -> list[str]:
    """The Client, binaries only: our own unit runs ``deadlineworker -nogui`` as the farm user."""
    return [
        "--mode", "unattended",
        "--unattendedmodeui", "none",
        "--prefix", DEADLINE_PREFIX,
        "--connectiontype", "Direct",
        "--repositorydir", repository,
        "--noguimode", "true",
        "--slavestartup", "false",
        "--launcherdaemon", "false",
        "--daemonuser", daemon_user,
        "--binariesonly", "true",
        "--licensemode", "LicenseFree",
        "--dbsslcertificate", pfx,
    ]  # fmt: skip


BOSS_PLATFORMS = ("linux", "macos", "windows")


def client_command(hub: IPv4Address, platform: str) -> str:
    """What a boss runs (as admin/root) to install the Deadline Client against the hub.

    The repository is the hub's ``queue`` share over the overlay; the client certificate is
    the one ``farmhand queue client-cert`` writes from the boss's bundle.
    """
    version = DEADLINE_VERSION
    if platform == "linux":
        return (
            f"sudo ./DeadlineClient-{version}-linux-x64-installer.run --mode unattended "
            f"--connectiontype Direct --repositorydir /mnt/farmhand/queue --noguimode false "
            f"--slavestartup false --launcherdaemon false --licensemode LicenseFree "
            f"--dbsslcertificate ~/.farmhand/queue-client.pfx"
        )
    if platform == "macos":
        return (
            f"sudo /Volumes/Deadline-{version}-osx-installers/DeadlineClient-{version}-osx-"
            f"installer.app/Contents/MacOS/osx-x86_64 --mode unattended --connectiontype Direct "
            f"--repositorydir /Volumes/queue --slavestartup false --launcherdaemon false "
            f"--licensemode LicenseFree --dbsslcertificate ~/.farmhand/queue-client.pfx"
        )
    if platform == "windows":
        return (
            f"DeadlineClient-{version}-windows-installer.exe --mode unattended "
            f"--connectiontype Direct --repositorydir \\\\{hub}\\queue --slavestartup false "
            f"--launcherdaemon false --licensemode LicenseFree "
            f"--dbsslcertificate %USERPROFILE%\\.farmhand\\queue-client.pfx"
        )
    raise UsageError(f"unknown platform {platform!r}: choose {', '.join(BOSS_PLATFORMS)}")


def tls(model: HostModel) -> QueueTls:
    """The queue's TLS material in this host's bundle (the hub's whole, others' client part)."""
    extras = model.bundle.extras
    blob = extras.get(TLS_NAME) or extras.get(f"{TLS_NAME}.{model.role.value}")
    if blob is None:
        raise BundleError(
            f"the {model.role.value} bundle has no render queue keys: "
            "re-export it with 'farmhand bundle' (the store adds them)"
        )
    return QueueTls.from_bytes(blob)


class Deadline(RenderManagerSpec):
    manager = RenderManager.DEADLINE
    label = "Deadline database (MongoDB)"
    port = PORT
    deploy_module = "farmhand.deploy.tasks.queue_deadline"

    def artifacts(self, distro: Distro) -> tuple[Artifact, ...]:
        return (artifacts.DEADLINE, artifacts.mongodb(distro), artifacts.mongosh(distro))

    def host_files(self, model: HostModel) -> list[QueueFile]:
        """Workers: the client (``deadline-client``). The hub: the database (``mongodb``:
        what mongod reads), its Deadline user (``mongodb-user``) and the Repository's client
        certificate (``deadline-repository``)."""
        keys = tls(model)
        ca = QueueFile("", f"{QUEUE_ETC}/ca.crt", content=keys.ca_cert)
        pfx = QueueFile(
            "", CLIENT_PFX, content=keys.client_pfx, mode=0o640, secret=True, group=model.farm_user
        )
        if model.role is Role.WORKER:
            client = [
                ca,
                pfx,
                QueueFile(
                    "",
                    f"{SYSTEMD_DIR}/{DEADLINE_UNIT}",
                    "deadline/farmhand-deadline-worker.service.j2",
                    values={"deadline_prefix": DEADLINE_PREFIX, "worker_home": DEADLINE_HOME},
                ),
            ]
            return [replace(f, component="deadline-client") for f in client]
        mongo = {
            "mongodb_run": MONGODB_RUN,
            "mongodb_data": MONGODB_DATA,
            "mongodb_user": MONGODB_USER,
            "mongodb_version": MONGODB_VERSION,
        }
        return [
            replace(ca, component="mongodb"),
            QueueFile(
                "mongodb",
                f"{QUEUE_ETC}/mongod.pem",
                content=keys.server_pem(model.overlay_ip),
                mode=0o640,
                secret=True,
                group=MONGODB_USER,
            ),
            QueueFile(
                "mongodb", f"{QUEUE_ETC}/mongod.conf", "mongodb/mongod.conf.j2", values=mongo
            ),
            QueueFile(
                "mongodb",
                f"{SYSTEMD_DIR}/{MONGODB_UNIT}",
                "mongodb/farmhand-mongodb.service.j2",
                values=mongo,
            ),
            QueueFile(
                "mongodb-user",
                f"{QUEUE_ETC}/client.pem",
                content=keys.client_pem,
                mode=0o600,
                secret=True,
            ),
            QueueFile(
                "mongodb-user",
                f"{QUEUE_ETC}/db.password",
                content=keys.db_password.encode() + b"\n",
                mode=0o600,
                secret=True,
            ),
            QueueFile(
                "mongodb-user",
                f"{QUEUE_ETC}/create-user.js",
                "mongodb/create-user.js.j2",
                values={"db_user": DEADLINE_DB_USER, "db_password": keys.db_password},
                mode=0o600,
                secret=True,
            ),
            replace(pfx, component="deadline-repository"),
        ]


MANAGER = Deadline()
