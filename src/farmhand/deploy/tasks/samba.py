"""The hub's Samba: shares on the overlay address only; the bosses' account (the farm user)
and one account per worker, each with its generated password (farmhand/model/smb.py)."""

from __future__ import annotations

import hashlib

from pyinfra.api.operation import OperationMeta
from pyinfra.context import host
from pyinfra.facts.files import Directory
from pyinfra.facts.server import Users
from pyinfra.operations import files, server, systemd

from farmhand.deploy.tasks import deploy, ops, packages
from farmhand.deploy.tasks import files as farm_files
from farmhand.hostfiles.base import HostFiles
from farmhand.model.host import HostModel
from farmhand.model.paths import (
    SHARES_ROOT,
    SMB_PASSWORD,
    SMB_PASSWORD_STAMP,
    SMB_WORKER_PASSWORDS,
    SMB_WORKERS_STAMP,
)
from farmhand.model.smb import WORKERS_GROUP, share_folders


@deploy("Samba shares")
def samba(model: HostModel, host_files: HostFiles, nebula: OperationMeta) -> None:
    packages.install(model, *model.distro.samba_packages)
    files.directory(
        name=f"Share root {SHARES_ROOT}",
        path=SHARES_ROOT,
        mode="755",
        user="root",
        group="root",
        present=True,
    )
    _worker_accounts(model)
    for folder in share_folders(model.farm_user):
        _clear_special_bits(folder.path, folder.mode)
        files.directory(
            name=f"Share folder {folder.path} ({folder.user}:{folder.group} {folder.mode:04o})",
            path=folder.path,
            mode=f"{folder.mode:o}",
            user=folder.user,
            group=folder.group,
            present=True,
        )
    if model.distro.selinux:
        _selinux_contexts()
    # smb.conf, the overlay wait and the farm user's password (set from its file just below).
    config = farm_files.install(host_files.plain("samba"))
    _password(model)
    _worker_passwords(model)
    service = model.distro.samba_service
    ops.managed_service(
        "samba",
        f"{service}.service",
        host_files.units("samba"),
        depends=config,
        start_name=f"{service} running and enabled",
        restart_name=f"Restart {service} after its configuration changed",
    )
    # The packaged nmbd (NetBIOS) has no place on an overlay-only file server.
    if model.distro.family.value == "debian":
        systemd.service(
            name="nmbd stopped and disabled (no NetBIOS)",
            service="nmbd.service",
            running=False,
            enabled=False,
        )


def _password(model: HostModel) -> None:
    """Set the farm user's Samba password from the uploaded file, only when it changed.

    The password travels in a root-only file and through a pipe: never in a command line."""
    source = SMB_PASSWORD
    ops.once_per_digest(
        f"Samba password for {model.farm_user} (from {source})",
        SMB_PASSWORD_STAMP,
        hashlib.sha256(model.smb_password.encode()).hexdigest(),
        [
            f"{{ cat {source}; cat {source}; }} | smbpasswd -s -a {model.farm_user} >/dev/null",
            f"smbpasswd -e {model.farm_user} >/dev/null",
        ],
    )


def _clear_special_bits(path: str, mode: int) -> None:
    """GNU chmod keeps a folder's setuid/setgid bits for a 4-digit mode (farm/ was 2775
    before it became root's 0755): clear them once with a 5-digit one."""
    info = host.get_fact(Directory, path=path)
    special = (
        int(str(info["mode"]).rjust(4, "0")[:-3] or "0", 8) if info and info.get("mode") else 0
    )
    if special and special != mode >> 9:
        server.shell(
            name=f"Share folder {path}: clear special bits (chmod keeps them)",
            commands=[f"chmod {mode:05o} {path}"],
        )


def _worker_accounts(model: HostModel) -> None:
    """A no-login Unix user of the hub per worker certificate, in the workers' group: Samba
    needs one per account, and files a worker writes are then that worker's."""
    server.group(
        name=f"Group {WORKERS_GROUP} (the workers' share accounts)",
        group=WORKERS_GROUP,
        system=True,
        present=True,
    )
    existing = host.get_fact(Users)
    missing = [a.user for a in model.worker_smb_accounts if a.user not in existing]
    if missing:
        server.shell(
            name=f"Worker share accounts: {len(missing)} no-login users in {WORKERS_GROUP}",
            commands=[
                f'for name in {" ".join(missing)}; do id -u "$name" >/dev/null 2>&1 || '
                f"useradd --system --no-create-home --home-dir /nonexistent "
                f'--shell /usr/sbin/nologin --gid {WORKERS_GROUP} "$name"; done'
            ],
        )


def _worker_passwords(model: HostModel) -> None:
    """Every worker account's Samba password from the uploaded root-only list, when it changed;
    accounts of workers no longer in the bundle (revoked) are removed from Samba.

    Passwords go through a pipe from the file (``printf`` is the shell's own): never argv."""
    source = SMB_WORKER_PASSWORDS
    listed = "".join(f"{a.user} {a.password}\n" for a in model.worker_smb_accounts)
    ops.once_per_digest(
        f"Samba passwords of {len(model.worker_smb_accounts)} worker accounts (from {source})",
        SMB_WORKERS_STAMP,
        hashlib.sha256(listed.encode()).hexdigest(),
        [
            "while read -r name password; do "
            'printf \'%s\\n%s\\n\' "$password" "$password" | smbpasswd -s -a "$name" >/dev/null '
            '&& smbpasswd -e "$name" >/dev/null || exit 1; '
            f"done < {source}",
            "pdbedit -L | cut -d: -f1 | grep -E '^worker[0-9]+$' | while read -r name; do "
            f'grep -q "^$name " {source} || smbpasswd -x "$name" >/dev/null; done; true',
        ],
    )


def _selinux_contexts() -> None:
    """Persistent SELinux labels so that Samba may serve the shares."""
    ops.selinux_labels(
        SHARES_ROOT,
        [(f"{SHARES_ROOT}(/.*)?", "samba_share_t")],
        restore=f"restorecon -R {SHARES_ROOT}",
    )
