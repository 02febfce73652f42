"""The hub's Samba: its config, the drop-in that starts it after Nebula, the overlay wait and
the farm user's password."""

from __future__ import annotations

from collections.abc import Callable

from farmhand.hostfiles.base import HostFile
from farmhand.model.host import HostModel
from farmhand.model.paths import SMB_CONF, SMB_PASSWORD, SYSTEMD_DIR, WAIT_OVERLAY


def samba_files(model: HostModel, expand: Callable[..., bytes]) -> list[HostFile]:
    return [
        HostFile(SMB_CONF, expand("samba/smb.conf.j2")),
        HostFile(
            f"{SYSTEMD_DIR}/{model.distro.samba_service}.service.d/farmhand.conf",
            expand("samba/samba-overlay.conf.j2"),
        ),
        HostFile(WAIT_OVERLAY, expand("samba/wait-overlay.sh.j2"), 0o755),
        HostFile(
            SMB_PASSWORD,
            model.smb_password.encode() + b"\n",
            0o600,
            secret=True,
        ),
    ]
