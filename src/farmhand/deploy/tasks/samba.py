"""The hub's Samba: shares on the overlay address only, one generated password."""

from __future__ import annotations

import hashlib

from pyinfra.api.operation import OperationMeta
from pyinfra.context import host
from pyinfra.facts.server import Command
from pyinfra.operations import files, server, systemd

from farmhand.deploy.tasks import deploy, ops, packages
from farmhand.deploy.tasks import files as farm_files
from farmhand.hostfiles.base import HostFiles
from farmhand.model.host import HostModel
from farmhand.model.paths import SHARES_ROOT, SMB_PASSWORD, SMB_PASSWORD_STAMP


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
    for share in model.shares:
        for path in (share.path, *(f"{share.path}/{d}" for d in share.subdirs)):
            files.directory(
                name=f"Share folder {path}" + (" (root's, read-only)" if share.read_only else ""),
                path=path,
                mode="755" if share.read_only else "2775",
                user="root" if share.read_only else model.farm_user,
                group="root" if share.read_only else model.farm_user,
                present=True,
            )
    if model.distro.selinux:
        _selinux_contexts()
    # smb.conf, the overlay wait and the farm user's password (set from its file just below).
    config = farm_files.install(host_files.plain("samba"))
    _password(model)
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


def _selinux_contexts() -> None:
    """Persistent SELinux labels (semanage + restorecon, not chcon) so Samba may serve shares."""
    labelled = host.get_fact(
        Command, command=f"semanage fcontext -l | grep -c '^{SHARES_ROOT}(/.\\*)?' || true"
    )
    if (labelled or "0").strip() == "0":
        server.shell(
            name=f"SELinux: label {SHARES_ROOT} samba_share_t",
            commands=[
                f"semanage fcontext -a -t samba_share_t '{SHARES_ROOT}(/.*)?'",
                f"restorecon -R {SHARES_ROOT}",
            ],
        )
