"""Key-only SSH logins, turned on only where a key login is known to work."""

from __future__ import annotations

from pyinfra.operations import server, systemd
from pyinfra.operations.util import any_changed

from farmhand.deploy.tasks import deploy
from farmhand.deploy.tasks import files as farm_files
from farmhand.hostfiles.base import HostFiles
from farmhand.model.host import HostModel


@deploy("SSH hardening")
def ssh(model: HostModel, host_files: HostFiles) -> None:
    dropin = farm_files.install(host_files.of("ssh"))
    if not dropin:
        return
    server.shell(
        name="Check the sshd configuration before reloading",
        commands=["sshd -t"],
        _if=any_changed(*dropin),
    )
    systemd.service(
        name="Reload sshd with key-only logins",
        service=model.distro.ssh_service,
        reloaded=True,
        _if=any_changed(*dropin),
    )
