"""One plain command a join runs (``Step``), and running it with or without admin rights.

Services, mounts and the package install are all plans of ``Step`` s, so what runs on Linux
here is exactly what the tests check for macOS and Windows, argument by argument.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from farmhand.join import JoinError
from farmhand.join.admin import Elevation


@dataclass(frozen=True)
class Step:
    """One command. ``admin``: needs administrator rights; ``check``: a failure is an error
    (removal steps are best effort, so a half-installed service can still be removed)."""

    what: str
    argv: tuple[str, ...]
    admin: bool = True
    check: bool = True

    def to_json(self) -> dict[str, object]:
        return {
            "what": self.what,
            "argv": list(self.argv),
            "admin": self.admin,
            "check": self.check,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Step:
        argv = data["argv"]
        assert isinstance(argv, list)
        return cls(
            str(data["what"]), tuple(str(a) for a in argv), bool(data["admin"]), bool(data["check"])
        )


def run_step(step: Step, elevation: Elevation) -> bool:
    """Run one step; a checked step that fails raises one line naming it."""
    argv = elevation.argv(step.argv) if step.admin else list(step.argv)
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
        )
    except OSError as exc:
        if step.check:
            raise JoinError(f"{step.what} failed: {exc.strerror}") from None
        return False
    if result.returncode != 0 and step.check:
        lines = (result.stderr or result.stdout).strip().splitlines()
        reason = lines[-1] if lines else f"exit {result.returncode}"
        raise JoinError(f"{step.what} failed: {reason}")
    return result.returncode == 0
