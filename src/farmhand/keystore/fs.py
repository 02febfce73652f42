"""Safe file changes for the key store: atomic writes, multi-file transactions and a lock.

A change to the store touches several files (certificates, the encrypted secrets, bundles, the
register). They are first written to a staging folder; a COMMIT marker then makes the change
durable, and the files are renamed into place. Once all are in place the staging folder is
renamed to ``.txn-done`` (one atomic step) and only then deleted, so a half-deleted staging folder
is never mistaken for a change to roll forward. On the next open (see :func:`pending`):

- ``.txn-done``: the change is finished; the folder is deleted;
- ``.txn`` with COMMIT and its manifest: the change is durable; it is rolled forward;
- ``.txn`` without COMMIT: the change never happened; it is rolled back.

Never half a change, and every kill between two steps leaves one of these three states.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

from farmhand.errors import StoreError

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644
STAGING = ".txn"
DONE = ".txn-done"
_COMMIT = "COMMIT"
_MANIFEST = "manifest.json"


def _step(name: str) -> None:
    """A named point between two steps of a commit. Does nothing: the crash tests
    (tests/test_keystore_crash.py) replace it, inside a child process, to kill it there."""


def _fsync_dir(path: Path) -> None:
    if sys.platform == "win32":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new(path: Path, data: bytes, mode: int, *, sync: bool = True) -> None:
    """Create ``path`` with ``mode`` from the first byte on; fail if it already exists."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            fd = -1
            handle.write(data)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
    finally:
        if fd >= 0:
            os.close(fd)
    os.chmod(path, mode)  # the umask may have narrowed or widened what O_CREAT set


def atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` so that readers see the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    write_new(tmp, data, mode)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class Transaction:
    """Stage files, then ``commit`` them into ``root`` all at once (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.staging = root / STAGING
        self._targets: list[tuple[str, bool]] = []  # (relative path, staged content or delete)
        self._synced = 0  # targets whose staged file is already on disk (see sync_staged)
        if pending(root) is not None:
            raise StoreError(f"an unfinished change is pending in {root}: run 'farmhand keys list'")
        self.staging.mkdir(mode=0o700)

    def stage(self, relpath: str, data: bytes, mode: int, *, new: bool = False) -> None:
        """Stage ``relpath``; ``new`` files must not exist yet (keys are never overwritten)."""
        if new and (self.root / relpath).exists():
            raise StoreError(f"refusing to overwrite existing {self.root / relpath}")
        staged = self.staging / str(len(self._targets))
        write_new(staged, data, mode, sync=False)  # synced together in commit()
        self._targets.append((relpath, True))

    def remove(self, relpath: str) -> None:
        """Delete ``relpath`` when the change commits."""
        self._targets.append((relpath, False))

    def sync_staged(self) -> None:
        """fsync what is staged so far, e.g. while the secrets are still being encrypted."""
        staged = [
            self.staging / str(i)
            for i, (_, has) in enumerate(self._targets)
            if has and i >= self._synced
        ]
        with ThreadPoolExecutor(max_workers=8) as pool:  # fsync releases the GIL
            list(pool.map(_fsync_file, staged))
        self._synced = len(self._targets)

    def commit(self) -> None:
        self.sync_staged()
        _step("staged")
        manifest = json.dumps(self._targets).encode()
        write_new(self.staging / _MANIFEST, manifest, SECRET_MODE)
        _step("manifest")
        _fsync_dir(self.staging)
        atomic_write(self.staging / _COMMIT, b"", SECRET_MODE)
        _step("committed")
        roll_forward(self.root)

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None and not (self.staging / _COMMIT).exists():
            self.abort()


def roll_forward(root: Path) -> None:
    """Move every staged file of a committed change into place, then retire the staging folder
    (renamed to ``.txn-done`` at once, deleted after): safe to run again after any kill."""
    staging = root / STAGING
    try:
        targets = json.loads((staging / _MANIFEST).read_text())
        steps = [(str(relpath), bool(has_content)) for relpath, has_content in targets]
    except (OSError, ValueError, TypeError) as exc:
        raise StoreError(
            f"the committed change in {staging} has a damaged manifest ({exc}); "
            "keep a copy of the folder and restore the store from a backup"
        ) from None
    for index, (relpath, has_content) in enumerate(steps):
        final = root / relpath
        if not has_content:
            final.unlink(missing_ok=True)
        else:
            staged = staging / str(index)
            if staged.exists():
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, final)
        _step(f"placed {relpath}")
    _fsync_dir(root)
    _step("placed all")
    os.replace(staging, root / DONE)
    _fsync_dir(root)
    _step("retired")
    _remove_done(root)


def _remove_done(root: Path) -> None:
    done = root / DONE
    for child in sorted(done.iterdir()):
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()
        _step(f"deleted {child.name}")
    done.rmdir()


def pending(root: Path) -> str | None:
    """What an earlier run left behind: 'finished' (``.txn-done``), 'committed' (``.txn`` with
    COMMIT and manifest), 'uncommitted' (any other ``.txn``), or None when nothing."""
    if (root / DONE).exists():
        return "finished"
    staging = root / STAGING
    if not staging.exists():
        return None
    if (staging / _COMMIT).exists() and (staging / _MANIFEST).exists():
        return "committed"
    if (staging / _COMMIT).exists():
        # Only an older farmhand, which deleted .txn in place after rolling forward, leaves
        # COMMIT without its manifest: everything had been moved into place already.
        return "finished"
    return "uncommitted"


def recover(root: Path) -> str | None:
    """Finish or undo a change a previous run left behind; says which in one line, or None."""
    if pending(root) is None:
        return None
    if (root / DONE).exists():
        _remove_done(root)
    state = pending(root)
    if state == "committed":
        roll_forward(root)
        return "completed an interrupted change"
    if state is not None:
        shutil.rmtree(root / STAGING)
    if state == "uncommitted":
        return "rolled back an interrupted change"
    return "cleaned up after a change that had completed"


class StoreBusy(StoreError):
    """Another farmhand run holds the store's lock."""


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold the store's lock so two farmhand runs never change it at once."""
    lock_path = root / ".lock"
    handle: IO[bytes] = open(lock_path, "ab")  # noqa: SIM115 - held for the whole block
    if hasattr(os, "register_at_fork"):
        # flock belongs to the open file, which fork shares: a child (e.g. an encryption
        # worker) that outlives a killed farmhand would keep the store locked for good.
        os.register_at_fork(after_in_child=handle.close)
    try:
        try:
            _lock(handle)
        except OSError:
            raise StoreBusy(f"the key store {root} is in use by another farmhand run") from None
        yield
    finally:
        handle.close()


def _lock(handle: IO[bytes]) -> None:
    if sys.platform == "win32":
        import msvcrt

        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
