"""lab.json, the lab's record of what it made, and the lock that lets one up/down run at a
time: written before anything is created, so ``down()`` can always undo a partial ``up()``."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from farmhand.errors import LabError
from farmhand.lab.records import HostRecord

STATE_VERSION = 1


class LabState:
    """The state file in ``state_dir``, read once and cached until ``forget``."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._state: dict[str, Any] | None = None

    @property
    def file(self) -> Path:
        """The lab's record of what it created."""
        return self.state_dir / "lab.json"

    def exists(self) -> bool:
        """True when a lab (maybe partial) is recorded here."""
        return self.file.is_file()

    def load(self) -> dict[str, Any]:
        """The recorded state (read on first use); LabError when no lab is up."""
        if self._state is None:
            if not self.exists():
                raise LabError("no lab is up: run `farmhand lab up` first")
            try:
                self._state = json.loads(self.file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise LabError(f"cannot read the lab state {self.file}: {exc}") from exc
        return self._state

    def create(self, state: dict[str, Any]) -> None:
        """Record a new lab (before any of it is made)."""
        self._state = state
        self.save()

    def save(self) -> None:
        """Write the state atomically (a crash leaves the old or the new file, never half)."""
        state = self.load()
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.file)

    def forget(self) -> None:
        """Drop the cached state (the lab is gone)."""
        self._state = None

    @property
    def image(self) -> Path:
        """The base image every host boots."""
        return Path(self.load()["image"])

    def records(self) -> list[HostRecord]:
        """Every host of the lab, hub first, then workers, then bosses."""
        return [HostRecord.from_json(h) for h in self.load()["hosts"]]

    def record(self, name: str) -> HostRecord:
        """The record of host ``name``."""
        for rec in self.records():
            if rec.name == name:
                return rec
        raise LabError(f"the lab has no host {name!r}")

    def update(self, rec: HostRecord) -> None:
        """Replace the record of ``rec.name`` and save."""
        state = self.load()
        state["hosts"] = [rec.to_json() if h["name"] == rec.name else h for h in state["hosts"]]
        self.save()

    def add(self, records: list[HostRecord]) -> None:
        """Append ``records`` and save."""
        self.load()["hosts"] += [r.to_json() for r in records]
        self.save()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One up/down at a time on this machine."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with (self.state_dir / ".lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
