"""Putting host files on a host without ever showing a secret.

pyinfra's own ``files.put`` uploads to the final path and changes the mode afterwards (with a
root login), or uploads to a world-readable temp folder and copies from there (through sudo):
either way a secret is readable by everyone for a moment. Secrets therefore go through
``secret_file`` below: uploaded into a folder only the deploying account can enter, copied by
root into a 0600 file next to the destination (umask 077, so it is never created wider), given
its owner and mode, then renamed over the destination in one step.
"""

from __future__ import annotations

import hashlib
import io
import shlex
from collections.abc import Generator, Iterable

from pyinfra.api.command import FileUploadCommand, StringCommand
from pyinfra.api.operation import OperationMeta, operation
from pyinfra.context import host
from pyinfra.facts.files import File, Sha256File
from pyinfra.operations import files

from farmhand.hostfiles.base import HostFile
from farmhand.model.paths import FARMHAND_ETC, FARMHAND_STATE, SECRET_UPLOADS


def login_user() -> str:
    """The account a sudo deploy logs in as, or "" when the deploy runs as root itself."""
    user = str(host.data.get("ssh_user") or "root")
    return user if host.data.get("_sudo") and user != "root" else ""


def login_upload_dir(user: str) -> str:
    """Where ``user`` (a sudo login) drops secrets: its own 0700 folder in /var/lib/farmhand."""
    return f"{FARMHAND_STATE}/uploads-{user}"


def secret_upload_dir() -> None:
    """The private folders every secret upload passes through (first thing in every deploy)."""
    files.directory(
        name=f"farmhand state folder {FARMHAND_STATE}",
        path=FARMHAND_STATE,
        # Others may pass through (the farm's services keep state below) but not list it.
        mode="711",
        user="root",
        group="root",
        present=True,
    )
    files.directory(
        name=f"Private upload folder {SECRET_UPLOADS}",
        path=SECRET_UPLOADS,
        mode="700",
        user="root",
        group="root",
        present=True,
    )
    files.directory(
        name=f"farmhand config folder {FARMHAND_ETC} (holds secrets: not listable by others)",
        path=FARMHAND_ETC,
        mode="711",
        user="root",
        group="root",
        present=True,
    )
    user = login_user()
    if user:
        files.directory(
            name=f"Private upload folder of the deploying account {user}",
            path=login_upload_dir(user),
            mode="700",
            user=user,
            group=user,
            present=True,
        )


def _mode_digits(mode: int) -> int:
    """pyinfra's File fact gives modes as octal digits read as decimal (0o640 -> 640)."""
    return int(f"{mode:o}")


@operation()
def secret_file(
    path: str, content: bytes, mode: int = 0o600, user: str = "root", group: str = "root"
) -> Generator[StringCommand | FileUploadCommand, None, None]:
    """Put ``content`` at ``path`` so that no one but root (and ``user``) can read it at any
    moment, also through sudo and also when interrupted; a converged file is left alone."""
    remote = host.get_fact(File, path=path)
    if (
        remote
        and remote.get("mode") == _mode_digits(mode)
        and remote.get("user") == user
        and remote.get("group") == group
        and host.get_fact(Sha256File, path=path) == hashlib.sha256(content).hexdigest()
    ):
        host.noop(f"{path} is up to date")
        return
    token = hashlib.sha256(path.encode()).hexdigest()[:16]
    staged = f"{SECRET_UPLOADS}/{token}"
    dropper = login_user()
    if dropper:
        # SFTP runs as the login user: into its own 0700 folder, then root takes it from there.
        dropped = f"{login_upload_dir(dropper)}/{token}"
        yield FileUploadCommand(io.BytesIO(content), dropped, _sudo=False)
        source = dropped
    else:
        yield FileUploadCommand(io.BytesIO(content), staged)
        source = staged
    folder = path.rsplit("/", 1)[0] or "/"
    fresh = f"{folder}/.{path.rsplit('/', 1)[1]}.farmhand-new"
    q = shlex.quote
    yield StringCommand(
        "sh",
        "-c",
        q(
            "set -e; umask 077; "
            f"[ -d {q(folder)} ] || mkdir -p -m 700 {q(folder)}; "
            f"rm -f {q(fresh)}; cat {q(source)} > {q(fresh)}; rm -f {q(source)}; "
            f"chown {q(user)}:{q(group)} {q(fresh)}; chmod {mode:o} {q(fresh)}; "
            f"mv -f {q(fresh)} {q(path)}"
        ),
    )


def install_one(item: HostFile) -> OperationMeta:
    """One host file with its mode, owner and group."""
    if item.secret:
        return secret_file(
            name=f"Install {item.path}",
            path=item.path,
            content=item.content,
            mode=item.mode,
            user=item.owner,
            group=item.group,
        )
    return files.put(
        name=f"Install {item.path}",
        src=io.BytesIO(item.content),
        dest=item.path,
        mode=f"{item.mode:o}",
        user=item.owner,
        group=item.group,
        create_remote_dir=True,
    )


def install(host_files: Iterable[HostFile]) -> list[OperationMeta]:
    """Upload each file (skipping those the host makes at boot) with its mode, owned by root."""
    return [install_one(item) for item in host_files if not item.at_boot]
