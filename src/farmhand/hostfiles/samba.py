"""The hub's Samba: its config, the drop-in that starts it after Nebula, the overlay wait and
the farm user's password."""

from __future__ import annotations

from collections.abc import Callable

from farmhand.hostfiles.base import RenderedFile
from farmhand.model.host import HostModel
from farmhand.model.paths import SMB_CONF, SMB_PASSWORD, SYSTEMD_DIR, WAIT_OVERLAY


def samba_files(model: HostModel, render: Callable[..., bytes]) -> list[RenderedFile]:
    return [
        RenderedFile(SMB_CONF, render("samba/smb.conf.j2")),
        RenderedFile(
            f"{SYSTEMD_DIR}/{model.distro.samba_service}.service.d/farmhand.conf",
            render("samba/samba-overlay.conf.j2"),
        ),
        RenderedFile(WAIT_OVERLAY, render("samba/wait-overlay.sh.j2"), 0o755),
        RenderedFile(
            SMB_PASSWORD,
            model.smb_password.encode() + b"\n",
            0o600,
            secret=True,
        ),
    ]
