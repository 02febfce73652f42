"""Finding (or installing) the nebula binary a boss runs.

Linux: nebula on PATH, else the distribution's package (apt) when one is available. macOS and
Windows: a nebula on PATH or the usual install folders, or one the user names with
``--nebula PATH``. farmhand ships no pinned download for them: the upstream archives cannot be
fetched and checked where farmhand is built, and an unverified download is not an option, so
the error says where to get one and how to check it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from farmhand.join import JoinError
from farmhand.join.platforms import OS

RELEASES = "https://github.com/slackhq/nebula/releases"
APT_PACKAGE = "nebula"
PINNED_RELEASES: dict[OS, tuple[str, str]] = {}
"""OS -> (upstream archive URL, sha256). Empty on purpose: see the module docstring."""

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


def locate(os_: OS, explicit: Path | None = None) -> NebulaBinary | PackageInstall:
    """The nebula to run, or the package install that provides it; a clear error otherwise."""
    if explicit is not None:
        if not explicit.is_file():
            raise JoinError(f"--nebula {explicit}: no such file")
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
    archive = (
        "nebula-darwin.zip"
        if os_ is OS.MACOS
        else "nebula-windows-amd64.zip (nebula.exe and wintun.dll)"
    )
    raise JoinError(
        f"no nebula found, and farmhand downloads none itself: get {archive} from {RELEASES}, "
        "check it against the release's SHASUM256.txt, then give --nebula PATH"
    )


def installed_path(os_: OS) -> str:
    """Where nebula is after the package install (looked up again, not guessed)."""
    found = shutil.which(os_.nebula_exe, path=_search_dirs(os_) + os.pathsep + "/usr/bin")
    if found is None:
        raise JoinError(f"the {APT_PACKAGE} package was installed, but no nebula binary is on PATH")
    return found
