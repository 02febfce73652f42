"""The user's join folder is written whole: every file goes into ``.join.new`` (secrets
owner-only from their first byte), which is then renamed to ``join`` in one step, so a join
that fails half way never leaves a half-written folder behind."""

from __future__ import annotations

import contextlib
import os
import shutil

from farmhand.join.admin import Elevation
from farmhand.join.commands import Step, run_step
from farmhand.join.paths import JoinPaths
from farmhand.join.platforms import OS

SYSTEM_SID = "*S-1-5-18"
"""LocalSystem (read): kept from when the service read the key here; it now has its own."""


def windows_owner_only(path: str, user: str) -> Step:
    """An owner-only ACL on a secret file: no inherited entries, the user, and LocalSystem
    (read). The exact icacls command, run without admin rights."""
    return Step(
        f"restricting {path} to {user}",
        ("icacls", path, "/inheritance:r", "/grant:r", f"{user}:F", "/grant:r", f"{SYSTEM_SID}:R"),
        admin=False,
    )


def _windows_user() -> str:
    user = os.environ.get("USERNAME", "")
    domain = os.environ.get("USERDOMAIN", "")
    return f"{domain}\\{user}" if domain and user else user


def stage(paths: JoinPaths, os_: OS, files: list[tuple[str, bytes, int]]) -> None:
    """Write every file into the staging folder, secrets owner-only from the first byte."""
    shutil.rmtree(paths.staging, ignore_errors=True)
    paths.staging.mkdir(mode=0o700, parents=True)
    for name, content, mode in files:
        target = paths.staging / name
        fd = os.open(
            target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode
        )
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        if os_ is OS.WINDOWS and mode == 0o600:
            run_step(windows_owner_only(str(target), _windows_user()), Elevation())


def commit(paths: JoinPaths) -> None:
    """The staged folder becomes join's folder (one rename: all of it or nothing)."""
    paths.staging.rename(paths.dir)


def remove_folder(paths: JoinPaths, root_was_there: bool) -> None:
    """Join's folder and any staging left over; farmhand's config folder too when join made it."""
    shutil.rmtree(paths.staging, ignore_errors=True)
    shutil.rmtree(paths.dir, ignore_errors=True)
    if not root_was_there:
        with contextlib.suppress(OSError):
            paths.root.rmdir()
