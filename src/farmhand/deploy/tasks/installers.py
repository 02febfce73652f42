"""Pinned artifacts: the hub caches each once in a root-only folder and publishes a root-owned
copy in the read-only ``installers`` share; workers take that copy over SMB (their own share
credentials) into a root-only folder of their own, never from the internet.

Root never unpacks, installs or runs a file any farm member can write: every file root uses is
in a folder only root can write (:data:`INSTALLERS` on the hub, :data:`LOCAL_CACHE` everywhere),
and its sha256 is checked again by the very command that unpacks it.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from pyinfra.context import host
from pyinfra.facts.files import File, Sha256File
from pyinfra.operations import files, server

from farmhand.keystore.plan import Role
from farmhand.model.host import HostModel
from farmhand.model.paths import (
    FETCH,
    INSTALLERS,
    LOCAL_CACHE,
    OLD_INSTALLERS,
)
from farmhand.queue.artifacts import Artifact, sha256_for, source_for, verify_local


def root_only_folders(model: HostModel) -> None:
    """The folders root keeps the artifacts it uses in: 0700, root's (the hub's cache too)."""
    folders = [LOCAL_CACHE]
    if model.role is Role.HUB:
        folders.append(INSTALLERS)
    for folder in folders:
        files.directory(
            name=f"Root-only artifacts folder {folder} (0700)",
            path=folder,
            mode="700",
            user="root",
            group="root",
            present=True,
        )
    if model.role is Role.HUB:  # the read-only share's folder is the Samba task's
        # The cache used to sit in the writable farm share, where any farm member could
        # replace what root would unpack next.
        files.directory(
            name=f"Old installers folder {OLD_INSTALLERS} removed (it was farm-writable)",
            path=OLD_INSTALLERS,
            present=False,
        )


def verified(path: str, sha256: str) -> str:
    """A shell step that fails unless ``path`` has ``sha256`` (put before each use of it)."""
    return f"echo {shlex.quote(f'{sha256}  {path}')} | sha256sum -c --quiet"


def cache_on_hub(model: HostModel, artifact: Artifact) -> None:
    """The artifact into the hub's root-only cache, sha256-checked (local files on the
    controller are checked before they are sent), then published read-only for workers."""
    sha256 = sha256_for(model.plan, artifact)
    source = source_for(artifact, host.data.get("farmhand_artifacts"))
    if not source.startswith(("https://", "http://")):
        verify_local(artifact, Path(source), sha256)
        files.put(
            name=f"Installers cache: {artifact.filename} (sha256-checked, root's)",
            src=source,
            dest=artifact.cached,
            mode="600",
            user="root",
            group="root",
        )
    elif host.get_fact(Sha256File, path=artifact.cached) != sha256:
        server.shell(
            name=f"Installers cache: download {artifact.filename} (sha256-checked, root's)",
            commands=[f"{FETCH} '{source}' {artifact.cached} {sha256} {artifact.key}"],
        )
    if host.get_fact(Sha256File, path=artifact.published) != sha256:
        staged = f"{artifact.published}.new"
        server.shell(
            name=f"Installers share: publish {artifact.filename} (root's, 0644, read-only)",
            commands=[
                verified(artifact.cached, sha256),
                f"install -m 644 -o root -g root {artifact.cached} {staged}",
                f"mv -f {staged} {artifact.published}",
            ],
        )


def take(model: HostModel, artifact: Artifact) -> tuple[str, str]:
    """The artifact's root-only path on this host (the hub's cache, or a worker's copy of the
    hub's published one) and its sha256, which every use of the file checks again."""
    sha256 = sha256_for(model.plan, artifact)
    if model.role is Role.HUB:
        return artifact.cached, sha256
    if host.get_fact(Sha256File, path=artifact.local) != sha256:
        source = f"smb://{model.hub_overlay_ip}/installers/{artifact.filename}"
        server.shell(
            name=f"{artifact.filename} from the hub's read-only installers share "
            "(into a root-only folder, sha256-checked)",
            commands=[f"{FETCH} '{source}' {artifact.local} {sha256} {artifact.key}"],
        )
    return artifact.local, sha256


def unpack(archive: tuple[str, str], top: str, into: str, link: str, probe: str) -> None:
    """Unpack ``archive`` (its root-only path and sha256, from :func:`take`; its top folder
    ``top``) under ``into`` once (``probe``: a file it holds); ``link`` points to it."""
    path, sha256 = archive
    target = f"{into}/{top}"
    done = host.get_fact(File, path=f"{target}/{probe}")
    files.directory(name=f"Folder {into}", path=into, mode="755", present=True)
    if not done:
        # tar gives new files their folder's label, not the persistent mappings
        # (render_queue's selinux_rules): relabel what it unpacked where SELinux is on.
        server.shell(
            name=f"Unpack {path.rsplit('/', 1)[-1]} into {into} (sha256-checked)",
            commands=[
                verified(path, sha256),
                f"tar --no-same-owner -xf {path} -C {into}",
                f"! selinuxenabled 2>/dev/null || restorecon -R {target}",
            ],
        )
    files.link(name=f"{link} -> {target}", path=link, target=target, present=True)
