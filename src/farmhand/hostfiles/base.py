"""What every host file shares: the file itself, the Jinja2 environment over templates/, and
systemd's unit names for mount points. hostfiles is the only place Jinja2 runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import jinja2

from farmhand.errors import FarmhandError
from farmhand.keystore.fs import atomic_write
from farmhand.resources import data_dir


@dataclass(frozen=True)
class RenderedFile:
    """One file for a host. ``secret`` files never go through a diff; ``at_boot`` files are
    made on the host when it boots (a worker's chosen certificate), not by the deploy."""

    path: str
    content: bytes = field(repr=False)
    mode: int = 0o644
    secret: bool = False
    at_boot: bool = False

    @property
    def text(self) -> str:
        return self.content.decode()


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


def render_text(template: str, **context: object) -> str:
    """One template outside a host's files (cloud-init user-data), with the same settings."""
    try:
        return environment().get_template(template).render(**context)
    except jinja2.TemplateError as exc:
        raise FarmhandError(f"template {template} failed to render: {exc}") from None


def write_tree(files: list[RenderedFile], out: Path) -> list[Path]:
    """Lay ``files`` out under ``out`` as on the host (``out/etc/...``), with their modes."""
    written = []
    for item in files:
        target = out / item.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, item.content, item.mode)
        written.append(target)
    return written


def render_template(template: str, **context: object) -> bytes:
    """One template from templates/ with ``context`` (farmhand join's service files)."""
    try:
        return environment().get_template(template).render(**context).encode()
    except jinja2.TemplateError as exc:
        raise FarmhandError(f"template {template} failed to render: {exc}") from None
