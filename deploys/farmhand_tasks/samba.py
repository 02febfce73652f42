"""The hub's Samba: shares on the overlay address only, one generated password."""

from __future__ import annotations

import hashlib

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.server import Command
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from farmhand import hosts as h
from farmhand.hosts import HostModel
from farmhand.render import RenderedFile
from farmhand_tasks import files as farm_files
from farmhand_tasks import packages

PASSWORD_STAMP = "/var/lib/farmhand/smb-password.sha256"


@deploy("Samba shares")
def samba(model: HostModel, rendered: dict[str, RenderedFile], nebula: OperationMeta) -> None:
    packages.install(model, *model.distro.samba_packages)
    files.directory(
        name=f"Share root {h.SHARES_ROOT}",
        path=h.SHARES_ROOT,
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
    config = farm_files.install(
        farm_files.select(rendered, "/etc/samba/", h.FARMHAND_LIB + "/wait-overlay")
    )
    dropin = farm_files.install(farm_files.select(rendered, "/etc/systemd/system/smb"))
    password = farm_files.install(farm_files.select(rendered, h.FARMHAND_ETC + "/smb.password"))
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
    applied = host.get_fact(Command, command=f"cat {PASSWORD_STAMP} 2>/dev/null || true")
    if (applied or "").strip() == digest:
        return
    source = f"{h.FARMHAND_ETC}/smb.password"
    server.shell(
        name=f"Samba password for {model.farm_user} (from {source})",
        commands=[
            f"{{ cat {source}; cat {source}; }} | smbpasswd -s -a {model.farm_user} >/dev/null",
            f"smbpasswd -e {model.farm_user} >/dev/null",
            f"echo {digest} > {PASSWORD_STAMP} && chmod 600 {PASSWORD_STAMP}",
        ],
    )


def _selinux_contexts() -> None:
    """Persistent SELinux labels (semanage + restorecon, not chcon) so Samba may serve shares."""
    labelled = host.get_fact(
        Command, command=f"semanage fcontext -l | grep -c '^{h.SHARES_ROOT}(/.\\*)?' || true"
    )
    if (labelled or "0").strip() == "0":
        server.shell(
            name=f"SELinux: label {h.SHARES_ROOT} samba_share_t",
            commands=[
                f"semanage fcontext -a -t samba_share_t '{h.SHARES_ROOT}(/.*)?'",
                f"restorecon -R {h.SHARES_ROOT}",
            ],
        )
