"""The three kinds of machine a boss runs on, and what differs between them."""

from __future__ import annotations

import sys
from enum import Enum


class OS(str, Enum):
    LINUX = "linux"
    MACOS = "macos"
    WINDOWS = "windows"

    @property
    def sep(self) -> str:
        """Path separator on this OS (paths for another OS are rendered as strings)."""
        return "\\" if self is OS.WINDOWS else "/"

    @property
    def tun_dev(self) -> str:
        """Nebula's ``tun.dev``: on macOS nebula accepts only ``utun``/``utunN`` (or empty)."""
        return "utun" if self is OS.MACOS else "nebula1"

    @property
    def nebula_exe(self) -> str:
        return "nebula.exe" if self is OS.WINDOWS else "nebula"


def current_os() -> OS:
    if sys.platform == "darwin":
        return OS.MACOS
    if sys.platform == "win32":
        return OS.WINDOWS
    return OS.LINUX
