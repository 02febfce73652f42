"""Slurm on hosts (the spec is farmhand/queue/slurm.py): munge and slurmctld on the hub, munge
and slurmd on workers, with time kept in step (munge refuses credentials from clocks more than
about five minutes apart)."""

from __future__ import annotations

import io
import shlex

from pyinfra.api.operation import OperationMeta
from pyinfra.context import host
from pyinfra.facts.server import Command
from pyinfra.operations import files, server, systemd

from farmhand.deploy.tasks import deploy, ops, packages
from farmhand.deploy.tasks import files as farm_files
from farmhand.deploy.tasks.jobs import job_service
from farmhand.errors import FarmhandError
from farmhand.hostfiles.base import HostFiles
from farmhand.keystore.plan import Role
from farmhand.model.distro import Family
from farmhand.model.host import HostModel
from farmhand.model.paths import PUBLISHED_INSTALLERS, SMB_CREDENTIALS
from farmhand.queue import slurm

DISTRO_UNITS = ("slurmctld.service", "slurmd.service")
"""The distribution's own units: masked, so they never fight ours for the ports and state."""
PUBLISHED_VERSION = f"{PUBLISHED_INSTALLERS}/{slurm.VERSION_FILE}"
IN_CONTAINER = "systemd-detect-virt --container --quiet && echo yes || echo no"


def hub(model: HostModel, host_files: HostFiles) -> None:
    slurm_on_host(model, host_files)


def worker(model: HostModel, host_files: HostFiles) -> None:
    slurm_on_host(model, host_files)


@deploy("Slurm")
def slurm_on_host(model: HostModel, host_files: HostFiles) -> None:
    _time_sync(model)
    _slurm_user()
    if model.distro.family is not Family.DEBIAN:
        _epel(model)
    packages.install(model, *slurm.packages(model.distro, model.role))
    _mask_distribution_units()
    key = farm_files.install(host_files.of("munge"))
    ops.restart_on_change(
        "munge.service", key, _running("munge.service"), name="Restart munge after its key changed"
    )
    files.directory(
        name=f"Slurm state folder {slurm.STATE_DIR}",
        path=slurm.STATE_DIR,
        mode="755",
        user=slurm.SLURM_USER,
        group=slurm.SLURM_USER,
        present=True,
    )
    if model.role is Role.HUB:
        _controller(model, host_files, key)
    else:
        _node(model, host_files, key)
    job_service(model, host_files)


def _running(service: str) -> OperationMeta:
    return systemd.service(
        name=f"{service} running and enabled", service=service, running=True, enabled=True
    )


def _controller(model: HostModel, host_files: HostFiles, key: list[OperationMeta]) -> None:
    files.directory(
        name=f"slurmctld state {slurm.CONTROLLER_STATE} (slurm's, 0700)",
        path=slurm.CONTROLLER_STATE,
        mode="700",
        user=slurm.SLURM_USER,
        group=slurm.SLURM_USER,
        present=True,
    )
    conf = farm_files.install(host_files.plain("slurm"))
    ops.managed_service(
        "slurm",
        slurm.CONTROLLER_UNIT,
        host_files.units("slurm"),
        depends=[*conf, *key],
        restart_name=f"Restart {slurm.CONTROLLER_UNIT} after its configuration changed",
    )
    _publish_version()


def _publish_version() -> None:
    """The hub's ``slurmctld -V`` in the read-only installers share, for workers to check
    theirs against (:func:`farmhand.queue.slurm.version_rule`) before slurmd starts."""
    running = (host.get_fact(Command, command="slurmctld -V 2>/dev/null || true") or "").strip()
    published = (
        host.get_fact(Command, command=f"cat {PUBLISHED_VERSION} 2>/dev/null || true") or ""
    ).strip()
    if running and running == published:
        return
    staged = f"{PUBLISHED_VERSION}.new"
    server.shell(
        name=f"Installers share: publish the hub's Slurm version ({PUBLISHED_VERSION})",
        commands=[
            f"slurmctld -V > {staged}",
            f"chmod 644 {staged}",
            f"mv -f {staged} {PUBLISHED_VERSION}",
        ],
    )


def _node(model: HostModel, host_files: HostFiles, key: list[OperationMeta]) -> None:
    files.directory(
        name=f"slurmd spool {slurm.NODE_SPOOL} (root's, 0755)",
        path=slurm.NODE_SPOOL,
        mode="755",
        user="root",
        group="root",
        present=True,
    )
    _check_versions(model)
    conf = farm_files.install(host_files.plain("slurm"))
    fs_type = host.get_fact(Command, command=slurm.CGROUP_FS_FACT) or ""
    conf.append(
        files.put(
            name=f"{slurm.CGROUP_CONF} for this host's cgroups",
            src=io.BytesIO(slurm.cgroup_conf(fs_type)),
            dest=slurm.CGROUP_CONF,
            mode="644",
            user="root",
            group="root",
        )
    )
    ops.managed_service(
        "slurm",
        slurm.NODE_UNIT,
        host_files.units("slurm"),
        depends=[*conf, *key],
        restart_name=f"Restart {slurm.NODE_UNIT} after its configuration changed",
    )
    ops.managed_service(
        slurm.FEATURES_COMPONENT,
        slurm.FEATURES_TIMER,
        host_files.units(slurm.FEATURES_COMPONENT),
    )


def hub_version_command(model: HostModel) -> str:
    """What prints the hub's published Slurm version, read as this worker over the overlay
    (its own share login); nothing when the hub cannot be reached."""
    get = shlex.quote(f"get {slurm.VERSION_FILE} -")
    return (
        f"smbclient //{model.hub_overlay_ip}/installers -A {SMB_CREDENTIALS} -m SMB3 -t 10 "
        f"-c {get} 2>/dev/null | grep -m1 -i slurm || true"
    )


def allowed_pairs() -> list[str]:
    """Every (controller, node) pair of known releases :func:`version_rule` accepts, as
    ``"CTL NODE"``: what the on-host check (when the versions are not known yet when the deploy
    is planned) matches, so there is one rule."""
    return [
        f"{ctl} {node}"
        for ctl in slurm.RELEASES
        for node in slurm.RELEASES
        if slurm.version_rule(ctl, node) is None
    ]


def _check_versions(model: HostModel) -> None:
    """Stop the worker's deploy, with one line, when its slurmd may not register with the
    hub's slurmctld. Checked while the deploy is planned when both versions can be read then
    (the overlay is up and slurmd installed: every later deploy), else on the host just before
    slurmd is started (a first deploy), from the same rule."""
    hub_version = (host.get_fact(Command, command=hub_version_command(model)) or "").strip()
    node_version = (host.get_fact(Command, command="slurmd -V 2>/dev/null || true") or "").strip()
    if hub_version and node_version:
        problem = slurm.version_rule(hub_version, node_version)
        if problem:
            raise FarmhandError(problem)
        return
    pattern = "[0-9][0-9]\\.[0-9][0-9]"
    pairs = "|".join(f'"{pair}"' for pair in allowed_pairs())
    script = (
        f"hub=$({hub_version_command(model)}); "
        f"hub=$(echo \"$hub\" | grep -o '{pattern}' | head -1); "
        f"node=$(slurmd -V | grep -o '{pattern}' | head -1); "
        '[ -n "$hub" ] || { echo "cannot read the hub\'s Slurm version from its installers share '
        f'({slurm.VERSION_FILE}): deploy the hub first" >&2; exit 1; }}; '
        '[ "$hub" = "$node" ] && exit 0; '
        f'case "$hub $node" in {pairs}) exit 0 ;; esac; '
        "echo \"this worker's slurmd $node may not register with the hub's slurmctld $hub: "
        "upgrade the hub's slurm first (deploy the hub), or pin this worker's slurm packages "
        "to the hub's release\" >&2; exit 1"
    )
    server.shell(name="slurmd's version fits the hub's slurmctld (Slurm's rule)", commands=[script])


def _slurm_user() -> None:
    """``slurm`` with one uid on every host, before the packages would make it (slurmd takes
    slurmctld's messages only from SlurmUser's uid as this host knows it)."""
    server.group(
        name=f"Group {slurm.SLURM_USER} (gid {slurm.SLURM_UID})",
        group=slurm.SLURM_USER,
        gid=slurm.SLURM_UID,
        system=True,
    )
    server.user(
        name=f"User {slurm.SLURM_USER} (uid {slurm.SLURM_UID}, the same on every host)",
        user=slurm.SLURM_USER,
        uid=slurm.SLURM_UID,
        group=slurm.SLURM_USER,
        home=slurm.STATE_DIR,
        shell="/usr/sbin/nologin",  # /sbin is /usr/sbin on every supported release
        system=True,
        create_home=False,
        ensure_home=False,
        present=True,
    )


def _epel(model: HostModel) -> None:
    """EL's Slurm is in EPEL, which needs CRB (EL 9) or PowerTools (EL 8)."""
    repo = "crb" if model.distro.major >= 9 else "powertools"
    packages.install(model, "epel-release", "dnf-plugins-core")
    enabled = host.get_fact(
        Command, command=f"dnf -q repolist --enabled {repo} 2>/dev/null || true"
    )
    if repo not in (enabled or "").lower():
        server.shell(
            name=f"Enable the {repo} repository (EPEL's Slurm needs it)",
            commands=[f"dnf config-manager --set-enabled {repo}"],
        )


def _mask_distribution_units() -> None:
    states = host.get_fact(
        Command,
        command="systemctl is-enabled " + " ".join(DISTRO_UNITS) + " 2>/dev/null || true",
    )
    if any(line.strip() != "masked" for line in (states or "").splitlines()) or not states:
        server.shell(
            name="Mask the distribution's slurmctld/slurmd units (farmhand runs its own)",
            commands=[f"systemctl mask --now {' '.join(DISTRO_UNITS)}"],
        )


def _time_sync(model: HostModel) -> None:
    """Clocks in step: systemd-timesyncd on Debian/Ubuntu, chrony on EL. Not in a container,
    where the host's kernel keeps the one clock (timesyncd refuses to run there, chronyd
    cannot set it)."""
    if host.get_fact(Command, command=IN_CONTAINER) == "yes":
        return
    if model.distro.family is Family.DEBIAN:
        packages.install(model, "systemd-timesyncd")
        _running("systemd-timesyncd.service")
    else:
        packages.install(model, "chrony")
        _running("chronyd.service")
