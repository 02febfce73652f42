"""Deadline 10's unattended installer flags and the boss's client install command.

The flags are the ones oomerfarm ran and AWS documents; the database port is always passed
explicitly (Deadline's installers disagree on its default), the password only as ``env:VAR``
(never on a command line).
"""

from __future__ import annotations

from ipaddress import IPv4Address

from farmhand.errors import UsageError
from farmhand.model.paths import CLIENT_PFX, DEADLINE_PREFIX, REPOSITORY_DIR
from farmhand.queue.base import (
    DEADLINE_DB_NAME,
    DEADLINE_DB_USER,
    DEADLINE_VERSION,
    QUEUE_PORTS,
    RenderManager,
)

PASSWORD_ENV = "FARMHAND_QUEUE_DB_PASSWORD"  # noqa: S105 - a variable name
INSTALLERS_DIR = f"Deadline-{DEADLINE_VERSION}-linux-installers"
REPOSITORY_INSTALLER = f"DeadlineRepository-{DEADLINE_VERSION}-linux-x64-installer.run"
CLIENT_INSTALLER = f"DeadlineClient-{DEADLINE_VERSION}-linux-x64-installer.run"
PORT = QUEUE_PORTS[RenderManager.DEADLINE]


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
