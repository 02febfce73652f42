"""Certificate leases (onhost/leases.py): the hub's lease service behind a forced SSH command,
and on workers the picker that claims a certificate before Nebula starts."""

from __future__ import annotations

from pyinfra.api.operation import OperationMeta
from pyinfra.context import host
from pyinfra.facts.server import Command
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from farmhand.deploy.tasks import deploy, ops, packages
from farmhand.deploy.tasks import files as farm_files
from farmhand.hostfiles.base import HostFiles
from farmhand.hostfiles.leases import credentials_group
from farmhand.model.distro import Family
from farmhand.model.host import HostModel
from farmhand.model.paths import DEFAULT_SSH_HOST_KEYS, LEASE_DROPIN, OLD_PICKER
from farmhand.onhost import leases
from farmhand.queue.slurm_jobs import JOBS_UID


def _default_host_keys() -> None:
    """Every default sshd host key, before the lease drop-in lists them all (listing any HostKey
    turns sshd's defaults off): ``ssh-keygen -A`` makes only the missing ones, and only runs
    when one is missing. So the drop-in is the same on every hub, as ``farmhand files`` shows."""
    paths = " ".join(DEFAULT_SSH_HOST_KEYS)
    listing = host.get_fact(Command, command=f"ls -1 {paths} 2>/dev/null || true") or ""
    if set(DEFAULT_SSH_HOST_KEYS) - set(listing.split()):
        server.shell(name="Default sshd host keys (the missing ones)", commands=["ssh-keygen -A"])


@deploy("Certificate lease service")
def hub_leases(model: HostModel, host_files: HostFiles) -> None:
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
    farm_files.install(host_files.of("leases"))
    _default_host_keys()
    changed = farm_files.install(host_files.of("lease-sshd"))
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
    model: HostModel, host_files: HostFiles
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
    group = credentials_group(model)
    if group:  # before the picker first runs: it hands the share login to this group
        server.group(
            name=f"Group {group} (gid {JOBS_UID}; may read this worker's share login)",
            group=group,
            gid=JOBS_UID,
            system=True,
        )
    config = farm_files.install(host_files.plain("leases"))
    units = ops.install_units("leases", host_files.units("leases"))
    timer = systemd.service(
        name="Renew the certificate lease on a timer",
        service="farmhand-lease-renew.timer",
        enabled=True,
        running=True,
    )
    ops.restart_on_change(
        "farmhand-lease-renew.timer",
        units,
        timer,
        name="Restart the renewal timer after it changed",
    )
    started = systemd.service(
        name="Claim this worker's certificate at every boot",
        service="farmhand-pick-cert.service",
        enabled=True,
        running=True,
    )
    return [*config, *units], started
