"""A worker's shares: its SMB credentials and a mount and automount unit per share."""

from __future__ import annotations

from collections.abc import Callable

from farmhand.hostfiles.base import HostFile, unit_name_for_path
from farmhand.hostfiles.leases import credentials_group
from farmhand.hostfiles.nebula import smb_credentials
from farmhand.keystore.plan import Role
from farmhand.model.host import HostModel
from farmhand.model.paths import SMB_CREDENTIALS, SYSTEMD_DIR


def credentials_files(model: HostModel) -> list[HostFile]:
    """This host's own SMB credentials (the mounts and the artifact fetcher read them): a
    worker's are its certificate's, chosen at boot with it from the pool."""
    group = credentials_group(model) if model.role is Role.WORKER else ""
    return [
        HostFile(
            SMB_CREDENTIALS,
            smb_credentials(model.smb_account),
            0o640 if group else 0o600,
            secret=True,
            at_boot=model.role is Role.WORKER,
            group=group or "root",
        ),
    ]


def mount_files(model: HostModel, expand: Callable[..., bytes]) -> list[HostFile]:
    files = []
    for share in model.shares:
        files.append(
            HostFile(
                f"{SYSTEMD_DIR}/{unit_name_for_path(share.mount_point, '.mount')}",
                expand("mounts/share.mount.j2", share=share),
            )
        )
        files.append(
            HostFile(
                f"{SYSTEMD_DIR}/{unit_name_for_path(share.mount_point, '.automount')}",
                expand("mounts/share.automount.j2", share=share),
            )
        )
    return files
