"""A worker's shares: its SMB credentials and a mount and automount unit per share."""

from __future__ import annotations

from collections.abc import Callable

from farmhand.hostfiles.base import HostFile, unit_name_for_path
from farmhand.model.host import HostModel
from farmhand.model.paths import SMB_CREDENTIALS, SYSTEMD_DIR


def credentials_files(model: HostModel, expand: Callable[..., bytes]) -> list[HostFile]:
    """The farm user's SMB credentials (the mounts and the artifact fetcher read them)."""
    return [
        HostFile(
            SMB_CREDENTIALS,
            expand("mounts/smb-credentials.j2"),
            0o600,
            secret=True,
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
