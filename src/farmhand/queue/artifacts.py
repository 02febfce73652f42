"""Pinned third-party artifacts (render manager, database, renderers): what, where, which hash.

Every pin is here, in one list to keep checksums by; each render manager names the ones it
needs (its ``artifacts``), and :func:`farmhand.queue.needed` adds the renderer's.

Every artifact is pinned by version and file name and fetched from its official URL or from
``--artifacts DIR|URL``; the hub keeps one copy in its root-only cache and publishes a
root-owned copy in the read-only ``installers`` share; workers take it from there (over SMB)
into a root-only folder of their own, so a farm downloads each big file from the internet once
and root never unpacks or runs a file a farm member could write.

Checksums: farmhand ships a sha256 only where two independent public sources agree on it
(named in ``checksum_sources``; no vendor download is reachable from where farmhand is built,
so none was computed here). Every other artifact a farm uses needs its sha256 in farm.toml::

    [artifacts.flamenco]
    sha256 = "…"          # from the vendor's .sha256 file named in ``checksum_url``

Deadline 10 is no public download any more (its links lead to the AWS console): a user supplies
its installers with ``--artifacts FOLDER``, and the error says where to get them.

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
    checksum_sources: tuple[str, ...] = ()
    """Where the shipped ``sha256`` was read: two independent public sources, or none."""
    obtain: str = ""
    """How a user gets the file when it has no public ``url`` (then ``url`` is empty)."""

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
DEADLINE = Artifact(
    key="deadline",
    version=DEADLINE_VERSION,
    filename=f"Deadline-{DEADLINE_VERSION}-linux-installers.tar",
    url="",
    checksum_url="the Deadline-*-linux-installers.sha256 file next to it in the download",
    what="Deadline 10 Linux installers (Repository and Client)",
    obtain=(
        "AWS no longer publishes Deadline 10 at a public URL: sign in to the AWS console "
        "(AWS Deadline Cloud, Downloads; or your AWS Thinkbox account) and download "
        f"Deadline-{DEADLINE_VERSION}-linux-installers.tar"
    ),
)
MONGODB_VERSION = "6.0.16"  # the top of Deadline 10.4's supported range (5.0-6.0.16)
MONGOSH_VERSION = "2.3.8"
FLAMENCO_VERSION = "3.9.3"
"""Flamenco's current release. Its sha256 is the user's to give: one public source pins it
(the Arch user repository's flamenco-manager-bin, c3cf18daac34cbfc…) and a second was not
found; Flamenco publishes ``flamenco-VERSION.sha256`` next to the archive."""
BLENDER_VERSION = "5.2.1"
"""The official Blender for hosts without a distribution package (EL): the current LTS release
(2026-08-25), whose checksum two independent sources agree on (see BLENDER)."""
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
    sha256="a31f524fa99a527d3d52b7f5aaa68c34e1a19d5a1c9473f79c5cc610fd5b10e9",
    checksum_sources=(
        "woogitsu/metro.brussels, tools/ci/blender-version.txt: taken from blender.org's "
        "blender-5.2.1.sha256 (archive 383,688,088 bytes)",
        "gchen19/AnkusDrive, scripts/install-renderers.sh: BLENDER_SHA_linux_x64, from the same "
        "official manifest",
    ),
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
    """The pinned checksum: ``[artifacts.KEY] sha256`` when farm.toml gives one (the user's
    own build or mirror of the same file name), else the one farmhand ships."""
    value = plan.settings.artifact_sha256.get(artifact.key) or artifact.sha256
    if not value:
        raise ArtifactError(
            f"no checksum for {artifact.filename}: add [artifacts.{artifact.key}] "
            f'sha256 = "…" to farm.toml (published at {artifact.checksum_url})'
        )
    return value


def source_for(artifact: Artifact, artifacts: str | None) -> str:
    """Where the hub takes the file from: ``--artifacts DIR|URL`` or the official URL."""
    if not artifacts:
        if not artifact.url:
            raise ArtifactError(f"{artifact.what}: {how_to_supply(artifact)}")
        return artifact.url
    if artifacts.startswith(("https://", "http://")):
        return f"{artifacts.rstrip('/')}/{artifact.filename}"
    return str(Path(artifacts) / artifact.filename)


def how_to_supply(artifact: Artifact) -> str:
    if not artifact.url:
        return f"{artifact.obtain} into a folder and deploy the hub with --artifacts FOLDER"
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
