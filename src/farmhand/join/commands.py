"""The actions a join runs, as plain data, and running one with or without admin rights.

Services, mounts, the package install and the service's root-owned files are all plans of
actions, so what runs on Linux here is exactly what the tests check for macOS and Windows,
argument by argument. A ``Step`` is one command; a file's content travels on its stdin
(``input``), so root's commands never read it from a folder the user can change. On Windows,
where farmhand itself runs as Administrator, ``Write`` and ``Rename`` are done by farmhand's
own process.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field

from farmhand.join import JoinError
from farmhand.join.admin import Elevation


@dataclass(frozen=True)
class Step:
    """One command. ``admin``: needs administrator rights; ``check``: a failure is an error
    (removal steps are best effort, so a half-installed service can still be removed);
    ``input``: bytes for its stdin (a file's content, never in argv)."""

    what: str
    argv: tuple[str, ...]
    admin: bool = True
    check: bool = True
    input: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Write:
    """A new file written by farmhand's own (elevated) process: Windows only."""

    what: str
    path: str
    content: bytes = field(repr=False)


@dataclass(frozen=True)
class Rename:
    """A folder renamed by farmhand's own (elevated) process; refused if ``target`` exists."""

    what: str
    source: str
    target: str


Action = Step | Write | Rename


def run_step(step: Step, elevation: Elevation) -> bool:
    """Run one step; a checked step that fails raises one line naming it."""
    argv = elevation.argv(step.argv) if step.admin else list(step.argv)
    try:
        result = subprocess.run(
            argv,
            input=step.input,
            capture_output=True,
            stdin=subprocess.DEVNULL if step.input is None else None,
            check=False,
        )
    except OSError as exc:
        if step.check:
            raise JoinError(f"{step.what} failed: {exc.strerror}") from None
        return False
    if result.returncode != 0 and step.check:
        output = (result.stderr or result.stdout).decode(errors="replace")
        lines = output.strip().splitlines()
        reason = lines[-1] if lines else f"exit {result.returncode}"
        raise JoinError(f"{step.what} failed: {reason}")
    return result.returncode == 0


def run(action: Action, elevation: Elevation) -> bool:
    """Run a step, or do a write or rename in this process (which must have the rights)."""
    if isinstance(action, Step):
        return run_step(action, elevation)
    if elevation.via_sudo:
        raise JoinError(f"{action.what}: only an Administrator farmhand does this itself")
    try:
        if isinstance(action, Write):
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            with os.fdopen(os.open(action.path, flags, 0o600), "wb") as handle:
                handle.write(action.content)
        else:
            if os.path.lexists(action.target):
                raise FileExistsError(0, "it exists already", action.target)
            os.rename(action.source, action.target)
    except OSError as exc:
        raise JoinError(f"{action.what} failed: {exc.strerror}") from None
    return True
