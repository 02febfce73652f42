"""The pinned upstream Nebula release, for hosts with no distribution package.

EL 8/9, Ubuntu 22.04, macOS and Windows have no usable ``nebula`` package, so farmhand installs
the official GitHub release, verified by sha256 before anything is unpacked.

The checksums below were not computed here (this project's machines cannot reach GitHub); they
are the values published for these files by two independent projects that download and check
them in their own installers: oomerfarm (all three archives) and bensku/containerops (the Linux
one). A site that needs another version supplies the archive with ``--artifacts`` and its
checksum as ``nebula_sha256`` in farm.toml.
"""

from __future__ import annotations

from dataclasses import dataclass

NEBULA_VERSION = "1.9.5"
RELEASE_URL = f"https://github.com/slackhq/nebula/releases/download/v{NEBULA_VERSION}"


@dataclass(frozen=True)
class ReleaseArchive:
    """One platform's archive of the pinned release."""

    platform: str
    filename: str
    sha256: str

    @property
    def url(self) -> str:
        return f"{RELEASE_URL}/{self.filename}"


ARCHIVES = {
    "linux-amd64": ReleaseArchive(
        "linux-amd64",
        "nebula-linux-amd64.tar.gz",
        "af57ded8f3370f0486bb24011942924b361d77fa34e3478995b196a5441dbf71",
    ),
    "darwin": ReleaseArchive(
        "darwin",
        "nebula-darwin.zip",
        "891584c4288e031b0787cfd5ac1da4565caf1627bd934d94b696a340ad92f0d7",
    ),
    "windows-amd64": ReleaseArchive(
        "windows-amd64",
        "nebula-windows-amd64.zip",
        "5a42e4600e8a47db2b103c607d95509c7ae403f56e2952d05089f492e53bcebb",
    ),
}
