"""A worker's shares: cifs over the overlay, mounted on first use by systemd automounts."""

from __future__ import annotations

from pyinfra.context import host
from pyinfra.operations import files, systemd
from pyinfra.operations.util import any_changed

from farmhand.deploy.tasks import deploy, packages
from farmhand.deploy.tasks import files as farm_files
from farmhand.hostfiles.base import RenderedFile, unit_name_for_path
from farmhand.model.host import HostModel
from farmhand.model.paths import SMB_CREDENTIALS


@deploy("Share mounts")
def mounts(model: HostModel, rendered: dict[str, RenderedFile]) -> None:
    packages.install(model, *model.distro.mount_packages)
    farm_files.install(farm_files.select(rendered, SMB_CREDENTIALS))
    units = farm_files.install(
        f for f in rendered.values() if f.path.endswith((".mount", ".automount"))
    )
    systemd.daemon_reload(name="Reload systemd units (mounts)", _if=any_changed(*units))
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
