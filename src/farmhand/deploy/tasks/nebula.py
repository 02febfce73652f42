"""Nebula on any role: the binary, its keys and config, and farmhand-nebula.service."""

from __future__ import annotations

from collections.abc import Iterable

from pyinfra.api.operation import OperationMeta
from pyinfra.context import host
from pyinfra.facts.files import File
from pyinfra.facts.server import Command
from pyinfra.operations import files, server

from farmhand.deploy.tasks import deploy, ops, packages
from farmhand.deploy.tasks import files as farm_files
from farmhand.deploy.tasks.leases import worker_leases
from farmhand.errors import UsageError
from farmhand.hostfiles.base import HostFile, HostFiles
from farmhand.keystore.plan import Role
from farmhand.model.host import HostModel
from farmhand.model.paths import LOCAL_CACHE, NEBULA_DIR, NEBULA_POOL
from farmhand.nebula import release


def _binary(model: HostModel) -> None:
    if model.distro.nebula_from_package:
        packages.install(model, "nebula")
        return
    # EL and Ubuntu 22.04 have no nebula package: the pinned upstream release (or, with
    # nebula_sha256 in farm.toml, the user's own archive), checked before it is unpacked.
    pinned = release.ARCHIVES["linux-amd64"]
    artifacts = host.data.get("farmhand_artifacts")
    sha256 = model.plan.settings.nebula_sha256 or pinned.sha256
    if model.plan.settings.nebula_sha256 and not artifacts:
        raise UsageError(
            "nebula_sha256 in farm.toml is for your own nebula archive: put "
            f"{pinned.filename} in a folder given as --artifacts, or remove nebula_sha256 to "
            f"use the pinned nebula {release.NEBULA_VERSION}"
        )
    archive = f"{LOCAL_CACHE}/{pinned.filename}"
    installed = host.get_fact(File, path=model.distro.nebula_binary)
    source = f"{str(artifacts).rstrip('/')}/{pinned.filename}" if artifacts else pinned.url
    files.directory(
        name=f"Root-only artifacts folder {LOCAL_CACHE} (0700)",
        path=LOCAL_CACHE,
        mode="700",
        user="root",
        group="root",
        present=True,
    )
    if source.startswith(("https://", "http://")):
        fetched = files.download(
            name="Nebula release archive (download, sha256-checked)",
            src=source,
            dest=archive,
            mode="644",
            sha256sum=sha256,
        )
    else:
        fetched = files.put(
            name="Nebula release archive",
            src=source,
            dest=archive,
            mode="644",
        )
    server.shell(
        name="Unpack nebula (sha256-checked) into /usr/local/bin",
        commands=[
            f"echo '{sha256}  {archive}' | sha256sum -c --quiet",
            f"tar --no-same-owner -xzf {archive} -C /usr/local/bin nebula nebula-cert",
        ],
        # Also when an earlier run was interrupted between the upload and the unpack.
        _if=lambda: fetched.did_change() or not installed,
    )


def _prune_pool(pool: Iterable[HostFile]) -> list[OperationMeta]:
    """Remove certificates the bundle no longer holds (revoked workers) from the pool."""
    listing = host.get_fact(Command, command=f"ls -1 {NEBULA_POOL} 2>/dev/null || true")
    wanted = {f.path for f in pool}
    stale = [
        f"{NEBULA_POOL}/{name}"
        for name in (listing or "").split()
        if f"{NEBULA_POOL}/{name}" not in wanted
    ]
    return [
        files.file(name=f"Remove {path} (not in the bundle)", path=path, present=False)
        for path in stale
    ]


@deploy("Nebula overlay")
def nebula(model: HostModel, host_files: HostFiles) -> OperationMeta:
    """Returns the operation that keeps farmhand-nebula running (for services that follow it)."""
    _binary(model)
    files.directory(
        name=f"Nebula folder {NEBULA_DIR}",
        path=NEBULA_DIR,
        mode="700",
        user="root",
        group="root",
        present=True,
    )
    changes: list[OperationMeta] = []
    if model.role is Role.WORKER:
        files.directory(
            name="Worker certificate pool",
            path=NEBULA_POOL,
            mode="700",
            user="root",
            group="root",
            present=True,
        )
        pool = farm_files.install(host_files.of("pool"))
        pool += _prune_pool(host_files.of("pool"))
        picker, picking = worker_leases(model, host_files)
        changes += [*pool, *picker]
        claim = ops.restart_on_change(
            "farmhand-pick-cert.service",
            [*pool, *picker],
            picking,
            name="Claim again after the pool or the picker changed",
        )
        changes += [claim] if claim else []
    config = farm_files.install([*host_files.plain("nebula"), *host_files.of("farm")])
    return ops.managed_service(
        "nebula",
        "farmhand-nebula.service",
        host_files.units("nebula"),
        depends=[*config, *changes],
        start_name="farmhand-nebula running and enabled",
        restart_name="Restart farmhand-nebula after its keys or config changed",
    )
