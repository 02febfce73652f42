"""What every host file shares: the file itself, the Jinja2 environment over templates/, and
systemd's unit names for mount points. hostfiles is the only place Jinja2 runs."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import overload

import jinja2

from farmhand.errors import FarmhandError, UsageError
from farmhand.keystore.fs import atomic_write
from farmhand.model.paths import SYSTEMD_DIR
from farmhand.resources import data_dir


@dataclass(frozen=True)
class HostFile:
    """One file for a host, owned by ``owner`` (root, unless a service insists on owning its
    secret: munge's key) and ``group`` (a service's group, for a secret it must read).
    ``secret`` files never go through a diff; ``at_boot`` files are made on the host when it
    boots (a worker's chosen certificate), not by the deploy."""

    path: str
    content: bytes = field(repr=False)
    mode: int = 0o644
    secret: bool = False
    at_boot: bool = False
    group: str = "root"
    owner: str = "root"

    @property
    def text(self) -> str:
        return self.content.decode()

    @property
    def is_unit(self) -> bool:
        """A systemd unit or unit drop-in: systemd reads it only after a daemon-reload."""
        return self.path.startswith(f"{SYSTEMD_DIR}/")


@dataclass(frozen=True)
class HostFiles(Sequence[HostFile]):
    """Every file of one host, by the component (hostfiles module) that made it. As a sequence,
    the flat list in install order (``farmhand files``, write_tree); the deploy tasks ask for a
    component's files instead of matching paths."""

    components: Mapping[str, tuple[HostFile, ...]]

    def of(self, *names: str) -> tuple[HostFile, ...]:
        """Every file of the components ``names``, in order (none for a component this host
        does not have)."""
        return tuple(f for name in names for f in self.components.get(name, ()))

    def units(self, name: str) -> tuple[HostFile, ...]:
        """``name``'s systemd units and unit drop-ins."""
        return tuple(f for f in self.of(name) if f.is_unit)

    def plain(self, name: str) -> tuple[HostFile, ...]:
        """``name``'s files other than its units (configs, keys, scripts)."""
        return tuple(f for f in self.of(name) if not f.is_unit)

    @property
    def by_path(self) -> dict[str, HostFile]:
        return {f.path: f for f in self}

    @property
    def _flat(self) -> tuple[HostFile, ...]:
        return tuple(f for group in self.components.values() for f in group)

    def __iter__(self) -> Iterator[HostFile]:
        return iter(self._flat)

    def __len__(self) -> int:
        return len(self._flat)

    def __add__(self, other: Iterable[HostFile]) -> list[HostFile]:
        """The flat lists of two hosts (or more files) together, like lists."""
        return [*self, *other]

    @overload
    def __getitem__(self, index: int) -> HostFile: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[HostFile]: ...

    def __getitem__(self, index: int | slice) -> HostFile | Sequence[HostFile]:
        return self._flat[index]


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - config files, not HTML
    )


def unit_name_for_path(path: str, suffix: str) -> str:
    """systemd's unit name for a mount point (``/mnt/a/b`` -> ``mnt-a-b.mount``)."""
    parts = PurePosixPath(path).parts[1:]
    escaped = [
        "".join(c if c.isalnum() or c in "_." else f"\\x{ord(c):02x}" for c in p) for p in parts
    ]
    return "-".join(escaped) + suffix


def expand_text(template: str, **context: object) -> str:
    """One template outside a host's files (cloud-init user-data), with the same settings."""
    try:
        return environment().get_template(template).render(**context)
    except jinja2.TemplateError as exc:
        raise FarmhandError(f"template {template} failed to expand: {exc}") from None


def write_tree(files: Iterable[HostFile], out: Path, *, with_secrets: bool = False) -> list[Path]:
    """Lay ``files`` out under ``out`` as on the host (``out/etc/...``), with their modes.

    Secrets are left out unless asked for: a review tree is often made inside a clone or a
    shared folder. With them, ``out`` is made (or must be) the caller's own 0700 folder first, so
    no other user can ever read a key from it."""
    if with_secrets:
        _private_folder(out)
    written = []
    for item in files:
        if item.secret and not with_secrets:
            continue
        target = out / item.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, item.content, item.mode)
        written.append(target)
    return written


def _private_folder(out: Path) -> None:
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = out.stat()
    except OSError as exc:
        raise UsageError(f"cannot make {out}: {exc.strerror}") from None
    if info.st_uid != os.getuid():
        raise UsageError(f"{out} belongs to another user: secrets go only into a folder of yours")
    os.chmod(out, 0o700)


def expand_template(template: str, **context: object) -> bytes:
    """One template from templates/ with ``context`` (farmhand join's service files)."""
    return expand_text(template, **context).encode()
