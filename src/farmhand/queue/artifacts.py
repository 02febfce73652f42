"""Pinned third-party artifacts (render manager, database, renderers): what, where, which hash.

Every pin is here, in one list to keep checksums by; each render manager names the ones it
needs (its ``artifacts``), and :func:`farmhand.queue.needed` adds the renderer's.

Every artifact is pinned by version and file name and fetched from its official URL or from
``--artifacts DIR|URL``; the hub keeps one copy in its root-only cache and publishes a
root-owned copy in the read-only ``installers`` share; workers take it from there (over SMB)
into a root-only folder of their own, so a farm downloads each big file from the internet once
and root never unpacks or runs a file a farm member could write.

Checksums: farmhand ships a sha256 only where one was found published by the vendor and
checked; none of these could be (no vendor download is reachable from where farmhand is built),
so every artifact a farm uses needs its sha256 in farm.toml::

    [artifacts.deadline]
    sha256 = "…"          # from the vendor's .sha256 file named in ``checksum_url``

A missing checksum, a vanished URL or a mismatch stops the deploy with one line that says which
file and which key, and how to supply the file instead.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from farmhand.errors import FarmhandError
from farmhand.keystore.plan import FarmPlan
from farmhand.model.distro import Distro, Family
from farmhand.model.paths import INSTALLERS, LOCAL_CACHE, OPT, PUBLISHED_INSTALLERS
from farmhand.queue.base import Renderer, renderer


class ArtifactError(FarmhandError):
    """An artifact is missing, has no checksum, or does not match its checksum."""


@dataclass(frozen=True)
class Artifact:
    """One pinned file. ``sha256`` is set only for a checksum found published (see above)."""

    key: str
    version: str
    filename: str
    url: str
    checksum_url: str
    what: str
    sha256: str = ""

    @property
    def cached(self) -> str:
        """Its path in the hub's root-only cache (what the hub installs from)."""
        return f"{INSTALLERS}/{self.filename}"

    @property
    def published(self) -> str:
        """The hub's root-owned copy in the read-only ``installers`` share (for workers)."""
        return f"{PUBLISHED_INSTALLERS}/{self.filename}"

    @property
    def local(self) -> str:
        """Its path on a worker after it was taken from the hub."""
        return f"{LOCAL_CACHE}/{self.filename}"


DEADLINE_VERSION = "10.4.0.10"
_DEADLINE_BASE = "https://thinkbox-installers.s3.us-west-2.amazonaws.com/Releases/Deadline"
# URL layout as AWS Thinkbox publishes it (…/10.4/2_10.4.0.10/Deadline-10.4.0.10-…); old
# versions disappear when new ones come out, hence --artifacts.
DEADLINE = Artifact(
    key="deadline",
    version=DEADLINE_VERSION,
    filename=f"Deadline-{DEADLINE_VERSION}-linux-installers.tar",
    url=f"{_DEADLINE_BASE}/10.4/2_{DEADLINE_VERSION}/Deadline-{DEADLINE_VERSION}-linux-installers.tar",
    checksum_url=f"{_DEADLINE_BASE}/10.4/2_{DEADLINE_VERSION}/Deadline-{DEADLINE_VERSION}-linux-installers.sha256",
    what="Deadline 10 Linux installers (Repository and Client)",
)
MONGODB_VERSION = "6.0.16"  # the top of Deadline 10.4's supported range (5.0-6.0.16)
MONGOSH_VERSION = "2.3.8"
FLAMENCO_VERSION = "3.7"
BLENDER_VERSION = "4.2.3"
BELLA_VERSION = "24.6.0"


def mongodb(distro: Distro) -> Artifact:
    """The MongoDB server build for the hub's distribution (OpenSSL 3 builds on current ones)."""
    build = "ubuntu2204"
    if distro.family is Family.EL:
        build = "rhel80" if distro.major < 9 else "rhel90"
    name = f"mongodb-linux-x86_64-{build}-{MONGODB_VERSION}.tgz"
    return Artifact(
        key="mongodb",
        version=MONGODB_VERSION,
        filename=name,
        url=f"https://fastdl.mongodb.org/linux/{name}",
        checksum_url=f"https://fastdl.mongodb.org/linux/{name}.sha256",
        what="MongoDB server",
    )


def mongosh(distro: Distro) -> Artifact:
    """The MongoDB shell, to create the queue's database user once."""
    suffix = "-openssl11" if distro.family is Family.EL and distro.major < 9 else "-openssl3"
    name = f"mongosh-{MONGOSH_VERSION}-linux-x64{suffix}.tgz"
    return Artifact(
        key="mongosh",
        version=MONGOSH_VERSION,
        filename=name,
        url=f"https://downloads.mongodb.com/compass/{name}",
        checksum_url=f"https://downloads.mongodb.com/compass/{name}.sha256",
        what="MongoDB shell",
    )


FLAMENCO = Artifact(
    key="flamenco",
    version=FLAMENCO_VERSION,
    filename=f"flamenco-{FLAMENCO_VERSION}-linux-amd64.tar.gz",
    url=f"https://flamenco.blender.org/downloads/flamenco-{FLAMENCO_VERSION}-linux-amd64.tar.gz",
    checksum_url=f"https://flamenco.blender.org/downloads/flamenco-{FLAMENCO_VERSION}.sha256",
    what="Flamenco manager and worker",
)
_BLENDER_SERIES = BLENDER_VERSION.rsplit(".", 1)[0]
BLENDER = Artifact(
    key="blender",
    version=BLENDER_VERSION,
    filename=f"blender-{BLENDER_VERSION}-linux-x64.tar.xz",
    url=f"https://download.blender.org/release/Blender{_BLENDER_SERIES}/blender-{BLENDER_VERSION}-linux-x64.tar.xz",
    checksum_url=f"https://download.blender.org/release/Blender{_BLENDER_SERIES}/blender-{BLENDER_VERSION}.sha256",
    what="Blender (official release, for hosts without a distribution package)",
)
BELLA = Artifact(
    key="bella",
    version=BELLA_VERSION,
    filename=f"bella_cli-{BELLA_VERSION}.tar.gz",
    url=f"https://downloads.bellarender.com/bella_cli-{BELLA_VERSION}.tar.gz",
    checksum_url="(no published checksum: hash the file you downloaded from bellarender.com)",
    what="Bella CLI renderer",
)


def renderer_artifacts(plan: FarmPlan, distro: Distro) -> tuple[Artifact, ...]:
    """Blender comes from the distribution where it has a package (Debian/Ubuntu)."""
    if renderer(plan) is Renderer.BELLA:
        return (BELLA,)
    return () if blender_from_package(distro) else (BLENDER,)


def blender_from_package(distro: Distro) -> bool:
    return distro.family is Family.DEBIAN


def blender_path(distro: Distro) -> str:
    """The Blender every render manager starts on a worker of ``distro``."""
    return "/usr/bin/blender" if blender_from_package(distro) else f"{OPT}/blender/blender"


def sha256_for(plan: FarmPlan, artifact: Artifact) -> str:
    """The pinned checksum: the published one we ship, else ``[artifacts.KEY] sha256``."""
    if artifact.sha256:
        return artifact.sha256
    value = plan.settings.artifact_sha256.get(artifact.key)
    if not value:
        raise ArtifactError(
            f"no checksum for {artifact.filename}: add [artifacts.{artifact.key}] "
            f'sha256 = "…" to farm.toml (published at {artifact.checksum_url})'
        )
    return value


def source_for(artifact: Artifact, artifacts: str | None) -> str:
    """Where the hub takes the file from: ``--artifacts DIR|URL`` or the official URL."""
    if not artifacts:
        return artifact.url
    if artifacts.startswith(("https://", "http://")):
        return f"{artifacts.rstrip('/')}/{artifact.filename}"
    return str(Path(artifacts) / artifact.filename)


def how_to_supply(artifact: Artifact) -> str:
    return (
        f"download {artifact.filename} yourself (vendor page: {artifact.url}) into a folder "
        "and deploy the hub with --artifacts FOLDER"
    )


def verify_local(artifact: Artifact, path: Path, sha256: str) -> None:
    """Refuse a local artifact that is missing or does not match its pinned checksum."""
    if not path.is_file():
        raise ArtifactError(f"{path} is missing: {how_to_supply(artifact)}")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != sha256:
        raise ArtifactError(
            f"{path} does not match the sha256 pinned for {artifact.filename} "
            f"([artifacts.{artifact.key}] in farm.toml): refusing it; {how_to_supply(artifact)}"
        )
