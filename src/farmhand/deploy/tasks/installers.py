"""Pinned artifacts: the hub caches each once in its installers share; workers take it from
the hub over SMB (their share credentials), never from the internet."""

from __future__ import annotations

from pathlib import Path

from pyinfra.api.operation import OperationMeta
from pyinfra.context import host
from pyinfra.facts.files import File, Sha256File
from pyinfra.operations import files, server

from farmhand.keystore.plan import Role
from farmhand.model.host import HostModel
from farmhand.model.paths import FETCH
from farmhand.queue.artifacts import Artifact, sha256_for, source_for, verify_local


def cache_on_hub(model: HostModel, artifact: Artifact) -> OperationMeta | None:
    """The artifact into the hub's installers share, sha256-checked (local files on the
    controller are checked before they are sent)."""
    sha256 = sha256_for(model.plan, artifact)
    source = source_for(artifact, host.data.get("farmhand_artifacts"))
    if not source.startswith(("https://", "http://")):
        verify_local(artifact, Path(source), sha256)
        return files.put(
            name=f"Installers cache: {artifact.filename} (sha256-checked)",
            src=source,
            dest=artifact.cached,
            mode="644",
            user=model.farm_user,
            group=model.farm_user,
        )
    if host.get_fact(Sha256File, path=artifact.cached) == sha256:
        return None
    return server.shell(
        name=f"Installers cache: download {artifact.filename} (sha256-checked)",
        commands=[
            f"{FETCH} '{source}' {artifact.cached} {sha256} {artifact.key}",
            f"chown {model.farm_user}:{model.farm_user} {artifact.cached}",
        ],
    )


def take(model: HostModel, artifact: Artifact) -> tuple[str, OperationMeta | None]:
    """The artifact's path on this host: the hub's cache, or a worker's copy of it."""
    if model.role is Role.HUB:
        return artifact.cached, cache_on_hub(model, artifact)
    sha256 = sha256_for(model.plan, artifact)
    if host.get_fact(Sha256File, path=artifact.local) == sha256:
        return artifact.local, None
    source = f"smb://{model.hub_overlay_ip}/farm/installers/{artifact.filename}"
    return artifact.local, server.shell(
        name=f"{artifact.filename} from the hub's installers share (sha256-checked)",
        commands=[f"{FETCH} '{source}' {artifact.local} {sha256} {artifact.key}"],
    )


def unpack(archive: str, top: str, into: str, link: str, probe: str) -> None:
    """Unpack ``archive`` (its top folder ``top``) under ``into`` once (``probe``: a file it
    holds); ``link`` points to it."""
    target = f"{into}/{top}"
    done = host.get_fact(File, path=f"{target}/{probe}")
    files.directory(name=f"Folder {into}", path=into, mode="755", present=True)
    if not done:
        # tar gives new files their folder's label, not the persistent mappings
        # (render_queue's selinux_rules): relabel what it unpacked where SELinux is on.
        server.shell(
            name=f"Unpack {archive.rsplit('/', 1)[-1]} into {into}",
            commands=[
                f"tar --no-same-owner -xf {archive} -C {into}",
                f"! selinuxenabled 2>/dev/null || restorecon -R {target}",
            ],
        )
    files.link(name=f"{link} -> {target}", path=link, target=target, present=True)
