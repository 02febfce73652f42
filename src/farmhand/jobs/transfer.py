"""Scenes up to the hub's farm share and frames back, over SMB from Python (smbprotocol): it
works on macOS, Windows and Linux with nothing mounted. An upload goes to a temporary name and
is renamed when complete, and a failed one is removed, so the hub never sees half a scene; a
collect skips frames already here whole and writes each new one under a temporary name first,
so it can be stopped and run again."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from farmhand.errors import FarmhandError
from farmhand.model.host import SMB_PORT

BLOCK = 1 << 20
Progress = Callable[[int], None]
"""Called with the bytes just moved (for a progress bar)."""


class TransferError(FarmhandError):
    """The share could not be reached, logged in to, read or written."""


@dataclass(frozen=True)
class ShareAccess:
    hub: str
    user: str
    password: str = field(repr=False)
    share: str = "farm"
    port: int = SMB_PORT
    timeout: int = 10


def _unc(access: ShareAccess, path: str) -> str:
    return rf"\\{access.hub}\{access.share}" + "\\" + path.replace("/", "\\")


@contextlib.contextmanager
def session(access: ShareAccess) -> Iterator[dict[str, Any]]:
    """One SMB session (its connection cache), closed afterwards."""
    import smbclient  # a slow import: only when a job moves files
    from smbprotocol.exceptions import SMBException

    cache: dict[str, Any] = {}
    try:
        smbclient.register_session(
            access.hub,
            username=access.user,
            password=access.password,
            port=access.port,
            connection_timeout=access.timeout,
            connection_cache=cache,
        )
    except (SMBException, OSError, ValueError) as exc:
        raise TransferError(f"cannot log in to the hub's share {access.share}: {exc}") from None
    try:
        yield cache
    finally:
        with contextlib.suppress(Exception):
            smbclient.reset_connection_cache(connection_cache=cache)


def upload(access: ShareAccess, local: Path, remote: str, progress: Progress | None = None) -> None:
    """``local`` to ``remote`` on the share (folders made as needed): as ``.NAME.part``, renamed
    when complete; the part is removed when anything fails."""
    with session(access) as cache:
        _put(access, cache, local, remote, progress)


def upload_new(
    access: ShareAccess, files: list[tuple[Path, str, int]], progress: Progress | None = None
) -> int:
    """Each (local, remote, size) not already on the share with that size, as :func:`upload`
    puts one (remote names are content hashes: the same name is the same file). Returns how
    many were uploaded."""
    import smbclient
    from smbprotocol.exceptions import SMBException

    uploaded = 0
    with session(access) as cache:
        for local, remote, size in files:
            try:
                there = smbclient.stat(_unc(access, remote), connection_cache=cache).st_size
            except (SMBException, OSError):
                there = -1
            if there == size:
                if progress is not None:
                    progress(size)
                continue
            _put(access, cache, local, remote, progress)
            uploaded += 1
    return uploaded


def _put(
    access: ShareAccess,
    cache: dict[str, Any],
    local: Path,
    remote: str,
    progress: Progress | None,
) -> None:
    import smbclient
    from smbprotocol.exceptions import SMBException

    folder, _, name = remote.rpartition("/")
    part = f"{folder}/.{name}.part" if folder else f".{name}.part"
    try:
        smbclient.makedirs(_unc(access, folder), exist_ok=True, connection_cache=cache)
        with (
            local.open("rb") as source,
            smbclient.open_file(_unc(access, part), mode="wb", connection_cache=cache) as out,
        ):
            while block := source.read(BLOCK):
                out.write(block)
                if progress is not None:
                    progress(len(block))
        smbclient.replace(_unc(access, part), _unc(access, remote), connection_cache=cache)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            smbclient.remove(_unc(access, part), connection_cache=cache)
        if isinstance(exc, SMBException | OSError):
            raise TransferError(f"cannot upload {local.name} to the share: {exc}") from None
        raise


def list_names(access: ShareAccess, remote: str) -> list[str]:
    """The names in folder ``remote`` on the share (none when it is not there)."""
    import smbclient
    from smbprotocol.exceptions import SMBException

    with session(access) as cache:
        try:
            return sorted(smbclient.listdir(_unc(access, remote), connection_cache=cache))
        except (SMBException, OSError):
            return []


def remove_tree(access: ShareAccess, remote: str) -> None:
    """Best effort: ``remote`` and everything under it, subfolders too (a job folder nobody
    will use: a packed scene's files keep their relative folders)."""
    import smbclient.shutil

    with session(access) as cache, contextlib.suppress(Exception):
        smbclient.shutil.rmtree(_unc(access, remote), connection_cache=cache)


def collect(
    access: ShareAccess,
    remote: str,
    names: list[str],
    target: Path,
    progress: Progress | None = None,
) -> tuple[list[str], list[str]]:
    """Download ``names`` from ``remote`` into ``target``: (fetched, skipped). A frame here
    already with the share's size is skipped; each new one lands as ``.NAME.part`` first."""
    import smbclient
    from smbprotocol.exceptions import SMBException

    target.mkdir(parents=True, exist_ok=True)
    fetched: list[str] = []
    skipped: list[str] = []
    with session(access) as cache:
        for name in names:
            path = _unc(access, f"{remote}/{name}")
            try:
                size = smbclient.stat(path, connection_cache=cache).st_size
                mine = target / name
                if mine.is_file() and mine.stat().st_size == size:
                    skipped.append(name)
                    continue
                part = target / f".{name}.part"
                with (
                    smbclient.open_file(path, mode="rb", connection_cache=cache) as source,
                    part.open("wb") as out,
                ):
                    while block := source.read(BLOCK):
                        out.write(block)
                        if progress is not None:
                            progress(len(block))
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(part, mine)
                fetched.append(name)
            except (SMBException, OSError) as exc:
                raise TransferError(f"cannot download {name}: {exc}") from None
    return fetched, skipped
