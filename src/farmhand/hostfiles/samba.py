"""The hub's Samba: its config, the drop-in that starts it after Nebula, the overlay wait, the
bosses' password (the farm user's) and every worker account's."""

from __future__ import annotations

from collections.abc import Callable

from farmhand.hostfiles.base import HostFile
from farmhand.model.host import HostModel
from farmhand.model.paths import (
    SMB_CONF,
    SMB_PASSWORD,
    SMB_WORKER_PASSWORDS,
    SYSTEMD_DIR,
    WAIT_OVERLAY,
)
from farmhand.model.smb import WORKERS_GROUP


def samba_files(model: HostModel, expand: Callable[..., bytes]) -> list[HostFile]:
    return [
        HostFile(SMB_CONF, expand("samba/smb.conf.j2", workers_group=WORKERS_GROUP)),
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
        HostFile(
            SMB_WORKER_PASSWORDS,
            "".join(f"{a.user} {a.password}\n" for a in model.worker_smb_accounts).encode(),
            0o600,
            secret=True,
        ),
    ]
