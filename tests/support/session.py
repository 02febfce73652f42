"""The session farm that the key store tests share (made once by the ``farm`` fixture)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from support.cli import Members, decrypt_tar

SESSION_WORKERS = 5
SESSION_BOSS = "alice"
WORKER_NAMES = tuple(f"worker{n:04d}" for n in range(1, SESSION_WORKERS + 1))
HOST_NAMES = ("hub", *WORKER_NAMES, SESSION_BOSS)
BUNDLES = ("hub.keybundle.age", "workers.keybundle.age", f"boss-{SESSION_BOSS}.keybundle.age")


@dataclass
class Farm:
    """The session's farm, made once by ``farmhand keygen``; treat it as read-only."""

    root: Path
    keygen: subprocess.CompletedProcess[str]
    _tars: dict[str, Members] = field(default_factory=dict)

    def tar(self, filename: str) -> Members:
        """The decrypted content of one of the farm's age files (cached)."""
        if filename not in self._tars:
            self._tars[filename] = decrypt_tar(self.root / filename)
        return self._tars[filename]
