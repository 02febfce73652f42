"""Administrator rights for exactly the steps that need them, and never more.

On Linux and macOS an unprivileged ``farmhand join`` asks ``sudo`` once (saying which step
needs it) and runs only those commands through ``sudo -n``; without sudo, or without a person
at the terminal to answer it, it stops with one line naming the step. Windows cannot raise a
running process's rights: the command must run in an Administrator terminal.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from farmhand.join import AdminRightsError
from farmhand.join.platforms import OS


@dataclass(frozen=True)
class Elevation:
    """How to run a command with administrator rights: as is, or through ``sudo -n``."""

    prefix: tuple[str, ...] = ()

    def argv(self, argv: Sequence[str]) -> list[str]:
        return [*self.prefix, *argv]

    @property
    def via_sudo(self) -> bool:
        return bool(self.prefix)


def is_admin(os_: OS) -> bool:
    if os_ is OS.WINDOWS:
        shell32 = getattr(getattr(ctypes, "windll", None), "shell32", None)
        return bool(shell32 is not None and shell32.IsUserAnAdmin())
    return os.geteuid() == 0


def elevate(
    os_: OS,
    why: str,
    *,
    interactive: bool | None = None,
    say: Callable[[str], None] = lambda _line: None,
) -> Elevation:
    """Administrator rights for ``why`` (e.g. "installing the farmhand-join service")."""
    if is_admin(os_):
        return Elevation()
    if os_ is OS.WINDOWS:
        raise AdminRightsError(
            f"{why} needs administrator rights: run this command again in a terminal opened "
            "with 'Run as administrator'"
        )
    sudo = shutil.which("sudo")
    if sudo is not None:
        quiet = subprocess.run(
            [sudo, "-n", "true"], capture_output=True, stdin=subprocess.DEVNULL, check=False
        )
        if quiet.returncode == 0:
            return Elevation((sudo, "-n"))
        if interactive is None:
            interactive = sys.stdin.isatty()
        if interactive:
            say(f"{why} needs administrator rights: sudo asks for your password")
            if subprocess.run([sudo, "-v"], check=False).returncode == 0:
                return Elevation((sudo, "-n"))
    how = "sudo cannot give them here" if sudo else "this machine has no sudo"
    raise AdminRightsError(
        f"{why} needs administrator rights and {how}: run it as root "
        "(e.g. 'sudo farmhand join ...') or from an account that may use sudo"
    )
