"""Finding (or installing) the nebula binary a boss runs.

Linux: nebula on PATH, else the distribution's package (apt) when one is available. macOS and
Windows: a nebula on PATH or the usual install folders, one the user names with
``--nebula PATH`` (a binary, or the upstream archive), else the pinned upstream release
(``farmhand.nebula.release``), verified by sha256 before anything is unpacked: into join's own
folder for the foreground, and from memory into root's place for the service (``system``).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from farmhand.join import JoinError
from farmhand.join.platforms import OS
from farmhand.nebula.release import ARCHIVES, NEBULA_VERSION, ReleaseArchive

RELEASES = "https://github.com/slackhq/nebula/releases"
APT_PACKAGE = "nebula"
PINNED_PLATFORM = {OS.MACOS: "darwin", OS.WINDOWS: "windows-amd64"}
"""Which archive of the pinned release each OS without a package gets."""

_EXTRA_DIRS = {
    # sudo's secure_path folders, where a distribution may put daemons.
    OS.LINUX: ("/usr/local/sbin", "/usr/sbin", "/sbin"),
    # Homebrew on Apple silicon and Intel.
    OS.MACOS: ("/opt/homebrew/bin", "/usr/local/bin"),
    OS.WINDOWS: (),
}
_VERSION = re.compile(r"Version:\s*(\S+)")


@dataclass(frozen=True)
class NebulaBinary:
    path: str
    version: str


@dataclass(frozen=True)
class ReleaseDownload:
    """nebula is missing: fetch the pinned release archive (or unpack the one given)."""

    archive: ReleaseArchive
    source: str
    """A URL, or a local archive file given with --nebula."""


@dataclass(frozen=True)
class PackageInstall:
    """nebula is missing but the distribution has it: install it (an administrator step)."""

    package: str
    argv: tuple[str, ...]

    @property
    def remove_argv(self) -> tuple[str, ...]:
        return (
            "env",
            "DEBIAN_FRONTEND=noninteractive",
            "apt-get",
            "remove",
            "-y",
            "-q",
            self.package,
        )


def nebula_version(path: str) -> str:
    """``1.6.1`` from ``nebula -version``; empty when the binary does not answer like nebula."""
    try:
        result = subprocess.run(
            [path, "-version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    found = _VERSION.search(result.stdout + result.stderr)
    return found.group(1) if found else ""


def _search_dirs(os_: OS) -> str:
    dirs = [os.environ.get("PATH", ""), *_EXTRA_DIRS[os_]]
    if os_ is OS.WINDOWS:
        program_files = os.environ.get("PROGRAMFILES", r"C:\Program Files")
        dirs += [str(Path(program_files) / "Nebula"), str(Path(program_files) / "nebula")]
    return os.pathsep.join(d for d in dirs if d)


def _checked(path: str, os_: OS, how: str) -> NebulaBinary:
    version = nebula_version(path)
    if not version:
        raise JoinError(f"{path} ({how}) does not run as nebula ('{path} -version' failed)")
    if os_ is OS.WINDOWS and not (Path(path).parent / "wintun.dll").is_file():
        raise JoinError(
            f"wintun.dll must sit beside {path}: it comes in the nebula-windows zip from {RELEASES}"
        )
    return NebulaBinary(path, version)


def _apt_candidate(package: str) -> bool:
    apt_cache = shutil.which("apt-cache")
    if apt_cache is None or shutil.which("apt-get") is None:
        return False
    result = subprocess.run(
        [apt_cache, "policy", package], capture_output=True, text=True, check=False
    )
    found = re.search(r"Candidate:\s*(\S+)", result.stdout)
    return bool(found and found.group(1) != "(none)")


def locate(
    os_: OS, explicit: Path | None = None
) -> NebulaBinary | PackageInstall | ReleaseDownload:
    """The nebula to run, or how to get it; a clear error otherwise."""
    if explicit is not None:
        if not explicit.is_file():
            raise JoinError(f"--nebula {explicit}: no such file")
        pinned = {a.filename: a for a in ARCHIVES.values()}
        if explicit.name in pinned:
            return ReleaseDownload(pinned[explicit.name], str(explicit.resolve()))
        return _checked(str(explicit.resolve()), os_, "given with --nebula")
    found = shutil.which(os_.nebula_exe, path=_search_dirs(os_))
    if found is not None:
        return _checked(found, os_, "found on PATH")
    if os_ is OS.LINUX:
        if _apt_candidate(APT_PACKAGE):
            return PackageInstall(
                APT_PACKAGE,
                (
                    "env",
                    "DEBIAN_FRONTEND=noninteractive",
                    "apt-get",
                    "install",
                    "-y",
                    "-q",
                    APT_PACKAGE,
                ),
            )
        raise JoinError(
            "nebula is not installed and no package of this machine provides it: install "
            f"nebula 1.6 or newer (your distribution's package, or {RELEASES}) and run again, "
            "or give --nebula PATH"
        )
    archive = ARCHIVES[PINNED_PLATFORM[os_]]
    return ReleaseDownload(archive, archive.url)


def release_files(download: ReleaseDownload, os_: OS) -> dict[str, bytes]:
    """Download (or read) the archive, check its sha256, and take nebula (and wintun.dll on
    Windows) out of it, in memory: the service's copy is written from these bytes by root."""
    what = download.archive.filename
    try:
        if "://" in download.source:
            with urllib.request.urlopen(download.source, timeout=120) as response:  # noqa: S310
                data = response.read()
        else:
            data = Path(download.source).read_bytes()
    except (OSError, ValueError) as exc:
        raise JoinError(
            f"cannot fetch {what} from {download.source} ({exc}): download it yourself from "
            f"{RELEASES} and give --nebula FILE"
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != download.archive.sha256:
        raise JoinError(
            f"{what} from {download.source} has sha256 {digest[:16]}..., not the pinned "
            f"{download.archive.sha256[:16]}... of nebula {NEBULA_VERSION}: refusing to use it"
        )
    exe = os_.nebula_exe
    found: dict[str, bytes] = {}
    try:
        if what.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for name in archive.namelist():
                    base = name.rsplit("/", 1)[-1]
                    if base == exe or (base == "wintun.dll" and "amd64" in name):
                        found[base] = archive.read(name)
        else:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                handle = tar.extractfile(tar.getmember(exe))
                if handle is not None:
                    found[exe] = handle.read()
    except (zipfile.BadZipFile, tarfile.TarError, KeyError) as exc:
        raise JoinError(f"{what} is not a nebula release archive ({exc})") from None
    if exe not in found:
        raise JoinError(f"{what} holds no {exe}")
    if os_ is OS.WINDOWS and "wintun.dll" not in found:
        raise JoinError(f"{what} holds no amd64 wintun.dll (nebula.exe needs it beside it)")
    return found


def fetch_release(download: ReleaseDownload, dest: Path, os_: OS) -> NebulaBinary:
    """``release_files`` unpacked into ``dest`` (join's own folder, for the foreground)."""
    files = release_files(download, os_)
    dest.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (dest / name).write_bytes(content)
    binary = dest / os_.nebula_exe
    binary.chmod(0o755)
    return _checked(str(binary), os_, f"unpacked from {download.archive.filename}")


def installed_path(os_: OS) -> str:
    """Where nebula is after the package install (looked up again, not guessed)."""
    found = shutil.which(os_.nebula_exe, path=_search_dirs(os_) + os.pathsep + "/usr/bin")
    if found is None:
        raise JoinError(f"the {APT_PACKAGE} package was installed, but no nebula binary is on PATH")
    return found
