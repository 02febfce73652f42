"""sshd reads its drop-ins first; key-only logins, turned on only where a key login works.

Why the drop-in is ``00-farmhand.conf`` and why sshd_config gets an Include at its top:
model/sshd.py.
"""

from __future__ import annotations

from pyinfra.api.operation import OperationMeta
from pyinfra.context import host
from pyinfra.facts.files import FileContents
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from farmhand.deploy.tasks import deploy
from farmhand.deploy.tasks import files as farm_files
from farmhand.hostfiles.base import HostFiles
from farmhand.model.host import HostModel
from farmhand.model.paths import OLD_SSHD_DROPIN, SSHD_CONFIG, SSHD_DROPIN, SSHD_DROPIN_DIR
from farmhand.model.sshd import DROPIN_INCLUDE, reads_dropins_first

INCLUDE_MARKER = "# {mark} farmhand: the drop-ins first, so that their settings count"


@deploy("SSH hardening")
def ssh(model: HostModel, host_files: HostFiles) -> None:
    include = _dropins_first(model)
    dropin = farm_files.install(host_files.of("ssh"))
    old = []
    if dropin:
        old.append(
            files.file(
                name=f"Remove {OLD_SSHD_DROPIN} (it sorted after 50-cloud-init.conf)",
                path=OLD_SSHD_DROPIN,
                present=False,
            )
        )
    changed = [*include, *dropin, *old]
    if not changed:
        return
    # sshd -t before sshd sees it; on failure take back what this run added, so that the next
    # start of sshd (or a reboot) still finds a configuration it accepts.
    undo = [f"rm -f {SSHD_DROPIN}"] if dropin else []
    if include:
        begin, end = (INCLUDE_MARKER.format(mark=m) for m in ("BEGIN", "END"))
        undo.append(f"sed -i '/^{begin}$/,/^{end}$/d' {SSHD_CONFIG}")
        if model.distro.selinux:
            undo.append(f"restorecon {SSHD_CONFIG}")
    server.shell(
        name="Check the sshd configuration before reloading",
        commands=[f"sshd -t || {{ {'; '.join([*undo, 'exit 1'])}; }}"],
        _if=any_changed(*changed),
    )
    systemd.service(
        name="Reload sshd with its new settings",
        service=model.distro.ssh_service,
        reloaded=True,
        _if=any_changed(*changed),
    )


def _dropins_first(model: HostModel) -> list[OperationMeta]:
    """Put ``Include`` of the drop-in folder at the top of sshd_config where it is not the
    first setting (EL 8 ships none). Done whether or not we write a drop-in: the hub's lease
    drop-in needs it as much."""
    lines = host.get_fact(FileContents, path=SSHD_CONFIG)
    if lines is None or reads_dropins_first("\n".join(lines)):
        return []
    folder = files.directory(
        name=f"Folder {SSHD_DROPIN_DIR}", path=SSHD_DROPIN_DIR, mode="755", present=True
    )
    block = files.block(
        name=f"{SSHD_CONFIG}: read {SSHD_DROPIN_DIR} first",
        path=SSHD_CONFIG,
        content=DROPIN_INCLUDE,
        before=True,
        after=True,
        marker=INCLUDE_MARKER,
    )
    if model.distro.selinux:
        # files.block writes a temporary file and moves it into place, which carries the
        # temporary file's label along: sshd may read sshd_config only with its own label.
        server.shell(
            name=f"SELinux: restore the label of {SSHD_CONFIG}",
            commands=[f"restorecon {SSHD_CONFIG}"],
            _if=any_changed(block),
        )
    return [folder, block]
