"""A worker's shares: its SMB credentials and a mount and automount unit per share."""

from __future__ import annotations

from collections.abc import Callable

from farmhand.hostfiles.base import RenderedFile, unit_name_for_path
from farmhand.model.host import HostModel
from farmhand.model.paths import SMB_CREDENTIALS, SYSTEMD_DIR


def credentials_files(model: HostModel, render: Callable[..., bytes]) -> list[RenderedFile]:
    """The farm user's SMB credentials (the mounts and the artifact fetcher read them)."""
    return [
        RenderedFile(
            SMB_CREDENTIALS,
            render("mounts/smb-credentials.j2"),
            0o600,
            secret=True,
        ),
    ]


def mount_files(model: HostModel, render: Callable[..., bytes]) -> list[RenderedFile]:
    files = []
    for share in model.shares:
        files.append(
            RenderedFile(
                f"{SYSTEMD_DIR}/{unit_name_for_path(share.mount_point, '.mount')}",
                render("mounts/share.mount.j2", share=share),
            )
        )
        files.append(
            RenderedFile(
                f"{SYSTEMD_DIR}/{unit_name_for_path(share.mount_point, '.automount')}",
                render("mounts/share.automount.j2", share=share),
            )
        )
    return files
