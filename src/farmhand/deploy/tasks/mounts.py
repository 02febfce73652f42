"""A worker's shares: cifs over the overlay, mounted on first use by systemd automounts."""

from __future__ import annotations

from pyinfra.context import host
from pyinfra.operations import files, systemd

from farmhand.deploy.tasks import deploy, ops, packages
from farmhand.deploy.tasks import files as farm_files
from farmhand.hostfiles.base import HostFiles, unit_name_for_path
from farmhand.model.host import HostModel


@deploy("Share mounts")
def mounts(model: HostModel, host_files: HostFiles) -> None:
    packages.install(model, *model.distro.mount_packages)
    farm_files.install(host_files.plain("mounts"))  # the SMB credentials
    ops.install_units("mounts", host_files.units("mounts"))
    # Host data farmhand_mounts=False leaves them enabled but unstarted (the container lab has
    # no kernel CIFS or autofs; real mounts are exercised on VMs).
    start = bool(host.data.get("farmhand_mounts", True))
    for share in model.shares:
        files.directory(
            name=f"Mount point {share.mount_point}",
            path=share.mount_point,
            mode="755",
            present=True,
        )
        systemd.service(
            name=f"Automount {share.mount_point}",
            service=unit_name_for_path(share.mount_point, ".automount"),
            enabled=True,
            running=True if start else None,
        )
