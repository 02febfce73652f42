"""Certificate leases (onhost/leases.py): the hub's lease service behind a forced SSH command,
and on workers the picker that claims a certificate before Nebula starts."""

from __future__ import annotations

from dataclasses import replace

from pyinfra.api.operation import OperationMeta
from pyinfra.context import host
from pyinfra.facts.server import Command
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from farmhand.deploy.tasks import deploy, packages
from farmhand.deploy.tasks import files as farm_files
from farmhand.hostfiles import render_host
from farmhand.hostfiles.base import RenderedFile
from farmhand.model.distro import Family
from farmhand.model.host import HostModel
from farmhand.model.paths import (
    DEFAULT_SSH_HOST_KEYS,
    LEASE_DROPIN,
    OLD_PICKER,
    SYSTEMD_DIR,
)
from farmhand.onhost import leases


def _existing_host_keys() -> tuple[str, ...]:
    """The host's own default sshd host keys, as they are before our drop-in lists any."""
    paths = " ".join(DEFAULT_SSH_HOST_KEYS)
    listing = host.get_fact(Command, command=f"ls -1 {paths} 2>/dev/null || true") or ""
    return tuple(line for line in listing.split() if line in DEFAULT_SSH_HOST_KEYS)


@deploy("Certificate lease service")
def hub_leases(model: HostModel, rendered: dict[str, RenderedFile]) -> None:
    packages.install(model, "python3")
    server.group(name=f"Group {leases.LEASE_USER}", group=leases.LEASE_USER, system=True)
    # A real shell: sshd runs the forced command through it (nologin would refuse it).
    server.user(
        name=f"User {leases.LEASE_USER} (forced lease command only)",
        user=leases.LEASE_USER,
        group=leases.LEASE_USER,
        home=leases.LEASE_HOME,
        shell="/bin/sh",
        system=True,
        create_home=False,
        ensure_home=False,
        present=True,
    )
    # Its home and authorized_keys belong to root: the lease user cannot change who gets in.
    for path in (leases.LEASE_HOME, f"{leases.LEASE_HOME}/.ssh"):
        files.directory(
            name=f"Folder {path}", path=path, mode="755", user="root", group="root", present=True
        )
    # The published copy sits in the farm share, whose setgid bit every new folder inherits
    # (and chmod 755 keeps): say 2755, or every run would "fix" it again. Bosses read it; only
    # the lease user writes it.
    for path, mode in ((leases.HUB_STATE_DIR, "755"), (leases.PUBLISHED_DIR, "2755")):
        files.directory(
            name=f"Lease table folder {path}",
            path=path,
            mode=mode,
            user=leases.LEASE_USER,
            group=leases.LEASE_USER,
            present=True,
        )
    farm_files.install(
        farm_files.select(rendered, leases.LIB, leases.HUB_POOL, leases.LEASE_AUTHORIZED_KEYS)
    )
    keys = _existing_host_keys()
    if not keys:
        # No host key yet (sshd never started): make the distribution's defaults first, so ours
        # is never the only one.
        server.shell(name="Default sshd host keys", commands=["ssh-keygen -A"])
        keys = DEFAULT_SSH_HOST_KEYS
    dropin = {f.path: f for f in render_host(replace(model, ssh_host_keys=keys))}[LEASE_DROPIN]
    changed = farm_files.install([*farm_files.select(rendered, leases.HUB_HOST_KEY), dropin])
    # Listing HostKey turns sshd's defaults off: prove the whole config before sshd sees it,
    # and take the drop-in away again if it does not pass.
    server.shell(
        name="Lease host key: sshd -t passes, or the drop-in is taken away",
        commands=[f"sshd -t || {{ rm -f {LEASE_DROPIN}; exit 1; }}"],
        _if=any_changed(*changed),
    )
    systemd.service(
        name="Lease host key: sshd reloaded",
        service=model.distro.ssh_service,
        reloaded=True,
        _if=any_changed(*changed),
    )


def worker_leases(
    model: HostModel, rendered: dict[str, RenderedFile]
) -> tuple[list[OperationMeta], OperationMeta]:
    """Install the picker, its key, config and units and start it; returns what may change and
    the start (the caller restarts the picker when it or the pool changed, unless just started)."""
    client = "openssh-client" if model.distro.family is Family.DEBIAN else "openssh-clients"
    packages.install(model, "python3", client)
    files.directory(
        name=f"Folder {leases.WORKER_DIR}",
        path=leases.WORKER_DIR,
        mode="700",
        user="root",
        group="root",
        present=True,
    )
    files.file(name=f"Remove {OLD_PICKER} (replaced by leases)", path=OLD_PICKER, present=False)
    config = farm_files.install(
        farm_files.select(
            rendered, leases.LIB, leases.WORKER_CONFIG, leases.CLAIM_KEY, leases.KNOWN_HOSTS
        )
    )
    units = farm_files.install(
        farm_files.select(
            rendered,
            f"{SYSTEMD_DIR}/farmhand-pick-cert.service",
            f"{SYSTEMD_DIR}/farmhand-lease-renew.",
        )
    )
    systemd.daemon_reload(name="Reload systemd units (leases)", _if=any_changed(*units))
    timer = systemd.service(
        name="Renew the certificate lease on a timer",
        service="farmhand-lease-renew.timer",
        enabled=True,
        running=True,
    )
    systemd.service(
        name="Restart the renewal timer after it changed",
        service="farmhand-lease-renew.timer",
        restarted=True,
        _if=lambda: any_changed(*units)() and not timer.did_change(),
    )
    started = systemd.service(
        name="Claim this worker's certificate at every boot",
        service="farmhand-pick-cert.service",
        enabled=True,
        running=True,
    )
    return [*config, *units], started
