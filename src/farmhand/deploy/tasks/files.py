"""Putting rendered files on a host without ever showing a secret."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files

from farmhand.hostfiles.base import RenderedFile
from farmhand.model.paths import SECRET_UPLOADS


def secret_upload_dir() -> None:
    files.directory(
        name=f"Private upload folder {SECRET_UPLOADS}",
        path=SECRET_UPLOADS,
        mode="700",
        user="root",
        group="root",
        present=True,
    )


def install(rendered: Iterable[RenderedFile]) -> list[OperationMeta]:
    """Upload each file (skipping those the host makes at boot) with its mode, owned by root."""
    ops = []
    for item in rendered:
        if item.at_boot:
            continue
        extra: dict[str, Any] = {"_temp_dir": SECRET_UPLOADS} if item.secret else {}
        ops.append(
            files.put(
                name=f"Install {item.path}",
                src=io.BytesIO(item.content),
                dest=item.path,
                mode=f"{item.mode:o}",
                user="root",
                group="root",
                create_remote_dir=True,
                **extra,
            )
        )
    return ops


def select(rendered: dict[str, RenderedFile], *prefixes: str) -> list[RenderedFile]:
    return [f for path, f in rendered.items() if path.startswith(prefixes)]
