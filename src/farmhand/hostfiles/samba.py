"""The hub's Samba: its config, the drop-in that starts it after Nebula, the overlay wait and
the farm user's password."""

from __future__ import annotations

from collections.abc import Callable

from farmhand.hostfiles.base import RenderedFile
from farmhand.model.host import HostModel
from farmhand.model.paths import FARMHAND_ETC, FARMHAND_LIB, SYSTEMD_DIR


def samba_files(model: HostModel, render: Callable[..., bytes]) -> list[RenderedFile]:
    return [
        RenderedFile("/etc/samba/smb.conf", render("samba/smb.conf.j2")),
        RenderedFile(
            f"{SYSTEMD_DIR}/{model.distro.samba_service}.service.d/farmhand.conf",
            render("samba/samba-overlay.conf.j2"),
        ),
        RenderedFile(f"{FARMHAND_LIB}/wait-overlay", render("samba/wait-overlay.sh.j2"), 0o755),
        RenderedFile(
            f"{FARMHAND_ETC}/smb.password",
            model.smb_password.encode() + b"\n",
            0o600,
            secret=True,
        ),
    ]
