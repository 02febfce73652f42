"""Where ``farmhand join --service`` keeps what the service runs and reads: a place that only
root (SYSTEM and Administrators on Windows) can change, never the user's folder.

The service runs nebula as root at every boot. A binary, config or key it takes from a folder
the user can write would let any program running as the user become root, so:

=========  ==============================================  ====================================
OS         config, CA, certificate, key                    nebula the service runs
=========  ==============================================  ====================================
Linux      /etc/nebula/farmhand-join/ (0700 root)          root's own (e.g. the distribution's
                                                           /usr/bin/nebula), else a copy in
                                                           /usr/local/lib/farmhand/ (0755 root)
macOS      /Library/Application Support/farmhand/join/     a copy in .../farmhand/bin/ (0755
           (0700 root:wheel)                               root:wheel), unless root's own
Windows    %ProgramData%\\farmhand\\join\\ (SYSTEM and Administrators only, by icacls)
=========  ==============================================  ====================================

Root writes them: each file's content goes to root's own ``sh`` on stdin (on Windows farmhand
itself runs as Administrator), into a fresh staging folder that is then renamed into place,
so root never reads a file from the user's folder and no half-written folder is ever used.
Before anything is written, every folder above these places must be root's alone.
"""

from __future__ import annotations

import ctypes
import os
import stat
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from farmhand.join import JoinError
from farmhand.join.commands import Action, Rename, Step, Write
from farmhand.join.platforms import OS
from farmhand.model.paths import SYSTEMD_DIR

SYSTEMD_UNIT = "farmhand-join.service"
SYSTEMD_PATH = f"{SYSTEMD_DIR}/{SYSTEMD_UNIT}"
LAUNCHD_LABEL = "farmhand.join"
LAUNCHD_PLIST = f"/Library/LaunchDaemons/{LAUNCHD_LABEL}.plist"
LAUNCHD_LOG = "/Library/Logs/farmhand-join.log"
LINUX_DIR = "/etc/nebula/farmhand-join"
LINUX_BIN = "/usr/local/lib/farmhand"
MACOS_TOP = "/Library/Application Support/farmhand"
WINDOWS_PROGRAM_DATA = r"C:\ProgramData"
FOLDERID_PROGRAM_DATA = "62AB5D82-FDC1-4DC3-A9DD-070D1D495D97"
SYSTEM_SID = "*S-1-5-18"
ADMINISTRATORS_SID = "*S-1-5-32-544"
WRITE_SCRIPT = 'umask 077 && cat > "$1" && chmod "$2" "$1"'
"""Root's ``sh`` writes stdin to a new file, private until it gets its mode."""

StagedFile = tuple[str, bytes, int]
"""A file for the service's folder: (name, content, mode)."""


@dataclass(frozen=True)
class SystemPaths:
    """The service's places on one OS. ``under`` (tests only) moves them all below a folder;
    no environment variable does, since the user could set it."""

    os: OS
    dir: str
    """Config, CA, certificate, key and the unit or plist, as root installed them."""
    bin_dir: str
    """Where a root-owned copy of nebula goes (the same folder on Windows)."""
    unit: str
    """The systemd unit or launchd plist ("" on Windows: nebula registers its service)."""
    log: str = ""
    top: str = ""
    """The folder farmhand makes for itself and owns (macOS, Windows); Linux shares /etc/nebula."""

    @classmethod
    def default(cls, os_: OS, under: str = "") -> SystemPaths:
        if os_ is OS.LINUX:
            return cls(os_, under + LINUX_DIR, under + LINUX_BIN, under + SYSTEMD_PATH)
        if os_ is OS.MACOS:
            top = under + MACOS_TOP
            return cls(
                os_, f"{top}/join", f"{top}/bin", under + LAUNCHD_PLIST, under + LAUNCHD_LOG, top
            )
        top = f"{under or _program_data()}\\farmhand"
        return cls(os_, f"{top}\\join", f"{top}\\join", "", "", top)

    def _in(self, folder: str, name: str) -> str:
        return f"{folder}{self.os.sep}{name}"

    @property
    def parent(self) -> str:
        return self.dir.rsplit(self.os.sep, 1)[0]

    @property
    def staging(self) -> str:
        return self._in(self.parent, "." + self.dir.rsplit(self.os.sep, 1)[1] + ".new")

    @property
    def config(self) -> str:
        return self._in(self.dir, "config.yml")

    @property
    def nebula(self) -> str:
        """The root-owned copy of nebula, when the service runs one."""
        return self._in(self.bin_dir, self.os.nebula_exe)

    def file(self, name: str) -> str:
        return self._in(self.dir, name)


@dataclass(frozen=True)
class ServiceBinary:
    """The nebula the service runs: ``path`` as it is (only root can change it), or ``files``
    to install as root's own copy (nebula, and wintun.dll beside it on Windows)."""

    path: str = ""
    files: tuple[tuple[str, bytes], ...] = ()

    def runs(self, system: SystemPaths) -> str:
        return self.path or system.nebula


def _program_data() -> str:
    """%ProgramData% as Windows knows it, never from the environment (a user sets that)."""
    if sys.platform != "win32":
        return WINDOWS_PROGRAM_DATA
    guid = ctypes.create_string_buffer(uuid.UUID(FOLDERID_PROGRAM_DATA).bytes_le, 16)
    found = ctypes.c_wchar_p()
    if ctypes.windll.shell32.SHGetKnownFolderPath(guid, 0, None, ctypes.byref(found)) != 0:
        raise JoinError("Windows does not say where ProgramData is (SHGetKnownFolderPath)")
    try:
        return str(found.value)
    finally:
        ctypes.windll.ole32.CoTaskMemFree(found)


def _changeable(path: Path, *, parent: bool) -> bool:
    """Someone other than root can change ``path``: it is not root's, or it is group- or
    other-writable (a root-owned sticky folder such as /tmp is fine above root's files)."""
    info = os.lstat(path)
    if info.st_uid != 0:
        return True
    if stat.S_ISLNK(info.st_mode):
        return False  # root's link: where it points is checked on its own
    sticky = parent and stat.S_ISDIR(info.st_mode) and bool(info.st_mode & stat.S_ISVTX)
    return bool(info.st_mode & 0o022) and not sticky


def first_changeable(path: str) -> str | None:
    """The first file or folder on the way to ``path`` (as written, and with every link
    resolved) that someone other than root can change; None when only root can. Parts that
    do not exist yet are skipped: root makes them."""
    for chain in (Path(os.path.abspath(path)), Path(os.path.realpath(path))):
        for part in (*reversed(chain.parents), chain):
            if os.path.lexists(part) and _changeable(part, parent=part != chain):
                return str(part)
    return None


def check_place(system: SystemPaths) -> None:
    """Before anything is written: no service of a join is here yet, and every folder above
    the service's places is root's alone (Windows: farmhand locks its folder itself)."""
    for path in (system.dir, system.unit):
        if path and os.path.lexists(path):
            raise JoinError(
                f"{path} exists: a farmhand join service is installed already (by another "
                "user?); 'farmhand join --leave' as that user removes it"
            )
    if system.os is OS.WINDOWS:
        return
    folders = {system.parent, system.bin_dir, os.path.dirname(system.unit)}
    if system.log:  # launchd writes nebula's output there as root
        folders.add(os.path.dirname(system.log))
    for folder in sorted(folders):
        bad = first_changeable(folder)
        if bad is not None:
            raise JoinError(
                f"{bad} can be changed by others than root: the service's files would not be "
                f"safe in {folder}"
            )


def place_steps(
    system: SystemPaths, files: Sequence[StagedFile], binary: ServiceBinary
) -> tuple[Action, ...]:
    """Root writes the service's files into a fresh staging folder and renames it into place;
    a nebula that is not root's own gets a root-owned copy. Content only ever on stdin."""
    if system.os is OS.WINDOWS:
        return _windows_place(system, files, binary)
    group = "wheel" if system.os is OS.MACOS else "root"
    owned = ("-o", "root", "-g", group)
    steps: list[Action] = []
    if system.top:
        steps.append(
            Step(f"creating {system.top}", ("install", "-d", "-m", "0755", *owned, system.top))
        )
    else:  # /etc/nebula may be the distribution's: made when missing, never changed
        steps.append(
            Step(f"creating {system.parent}", ("mkdir", "-p", "-m", "0755", system.parent))
        )
    if binary.files:
        bin_dir = system.bin_dir
        steps.append(Step(f"creating {bin_dir}", ("install", "-d", "-m", "0755", *owned, bin_dir)))
        for name, content in binary.files:
            new, target = f"{bin_dir}/.{name}.new", f"{bin_dir}/{name}"
            steps += [
                _write(new, content, 0o755),
                Step(f"installing {target}", ("mv", "-f", new, target)),
            ]
    staging = system.staging
    # GNU mv -T refuses to move into a folder that is there after all (BSD mv has no -T; on
    # macOS the user can see, and join checks, that it is not)
    no_nesting = ("-T",) if system.os is OS.LINUX else ()
    steps += [
        Step(f"removing a leftover {staging}", ("rm", "-rf", staging)),
        Step(f"creating {staging}", ("install", "-d", "-m", "0700", *owned, staging)),
        *(_write(f"{staging}/{name}", content, mode) for name, content, mode in files),
        Step(f"moving {staging} to {system.dir}", ("mv", *no_nesting, staging, system.dir)),
    ]
    return tuple(steps)


def _write(path: str, content: bytes, mode: int) -> Step:
    return Step(
        f"writing {path}", ("sh", "-c", WRITE_SCRIPT, "sh", path, f"{mode:04o}"), input=content
    )


def windows_lock(folder: str) -> tuple[Step, ...]:
    """The exact icacls lines that leave ``folder`` (and all it will hold) to SYSTEM and the
    Administrators: owner Administrators, every entry anyone set before dropped, no
    inheritance from ProgramData (where every user may create folders), full control for
    the two of them and no one else."""
    return (
        Step(
            f"making {folder} the Administrators'",
            ("icacls", folder, "/setowner", ADMINISTRATORS_SID),
        ),
        Step(f"resetting what {folder} allows", ("icacls", folder, "/reset")),
        Step(
            f"restricting {folder} to SYSTEM and Administrators",
            (
                "icacls",
                folder,
                "/inheritance:r",
                "/grant:r",
                f"{SYSTEM_SID}:(OI)(CI)F",
                "/grant:r",
                f"{ADMINISTRATORS_SID}:(OI)(CI)F",
            ),
        ),
    )


def _windows_place(
    system: SystemPaths, files: Sequence[StagedFile], binary: ServiceBinary
) -> tuple[Action, ...]:
    staging = system.staging
    return (
        Step(f"creating {system.top}", ("cmd", "/d", "/c", "mkdir", system.top), check=False),
        *windows_lock(system.top),
        Step(
            f"removing a leftover {staging}",
            ("cmd", "/d", "/c", "rmdir", "/s", "/q", staging),
            check=False,
        ),
        Step(f"creating {staging}", ("cmd", "/d", "/c", "mkdir", staging)),
        *(Write(f"writing {name}", f"{staging}\\{name}", content) for name, content, _ in files),
        *(
            Write(f"writing {name}", f"{staging}\\{name}", content)
            for name, content in binary.files
        ),
        Rename(f"moving {staging} to {system.dir}", staging, system.dir),
    )


def remove_steps(system: SystemPaths) -> tuple[Step, ...]:
    """Root removes the service's places: fixed paths of farmhand's, never ones read from a
    file the user could have changed."""
    if system.os is OS.WINDOWS:
        rmdir = ("cmd", "/d", "/c", "rmdir")
        return (
            Step(f"removing {system.dir}", (*rmdir, "/s", "/q", system.dir), check=False),
            Step(f"removing {system.staging}", (*rmdir, "/s", "/q", system.staging), check=False),
            Step(f"removing {system.top}", (*rmdir, system.top), check=False),
        )
    steps = [
        Step(f"removing {system.dir}", ("rm", "-rf", system.dir, system.staging)),
        Step(
            f"removing {system.nebula}",
            ("rm", "-f", system.nebula, f"{system.bin_dir}/.nebula.new"),
        ),
        Step(f"removing {system.bin_dir}", ("rmdir", system.bin_dir), check=False),
    ]
    if system.top:
        steps.append(Step(f"removing {system.top}", ("rmdir", system.top), check=False))
    return tuple(steps)
