"""The hub's Samba: shares on the overlay address only, one generated password."""

from __future__ import annotations

import hashlib

from pyinfra.api.operation import OperationMeta
from pyinfra.context import host
from pyinfra.facts.server import Command
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from farmhand.deploy.tasks import deploy, packages
from farmhand.deploy.tasks import files as farm_files
from farmhand.hostfiles.base import RenderedFile
from farmhand.model.host import HostModel
from farmhand.model.paths import (
    SHARES_ROOT,
    SMB_CONF,
    SMB_PASSWORD,
    SMB_PASSWORD_STAMP,
    SYSTEMD_DIR,
    WAIT_OVERLAY,
)


@deploy("Samba shares")
def samba(model: HostModel, rendered: dict[str, RenderedFile], nebula: OperationMeta) -> None:
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
                name=f"Share folder {path}",
                path=path,
                mode="2775",
                user=model.farm_user,
                group=model.farm_user,
                present=True,
            )
    if model.distro.selinux:
        _selinux_contexts()
    config = farm_files.install(farm_files.select(rendered, SMB_CONF, WAIT_OVERLAY))
    dropin = farm_files.install(farm_files.select(rendered, f"{SYSTEMD_DIR}/smb"))
    password = farm_files.install(farm_files.select(rendered, SMB_PASSWORD))
    _password(model)
    systemd.daemon_reload(name="Reload systemd units (samba)", _if=any_changed(*dropin))
    service = model.distro.samba_service
    started = systemd.service(
        name=f"{service} running and enabled",
        service=f"{service}.service",
        enabled=True,
        running=True,
    )
    systemd.service(
        name=f"Restart {service} after its configuration changed",
        service=f"{service}.service",
        restarted=True,
        _if=lambda: any_changed(*config, *dropin, *password)() and not started.did_change(),
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

    The password travels in a root-only file and through a pipe: never in a command line. The
    stamp's folder is the deploy's state folder, made (0711) by its first step."""
    digest = hashlib.sha256(model.smb_password.encode()).hexdigest()
    applied = host.get_fact(Command, command=f"cat {SMB_PASSWORD_STAMP} 2>/dev/null || true")
    if (applied or "").strip() == digest:
        return
    source = SMB_PASSWORD
    server.shell(
        name=f"Samba password for {model.farm_user} (from {source})",
        commands=[
            f"{{ cat {source}; cat {source}; }} | smbpasswd -s -a {model.farm_user} >/dev/null",
            f"smbpasswd -e {model.farm_user} >/dev/null",
            f"echo {digest} > {SMB_PASSWORD_STAMP} && chmod 600 {SMB_PASSWORD_STAMP}",
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
