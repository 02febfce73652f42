"""age passphrase encryption (scrypt), with errors a person can act on.

Files stay readable by the standard ``age -d`` CLI. scrypt costs a second or two of one core and
a gigabyte of memory per file by design, so independent files are encrypted in parallel, in
processes: pyrage holds the GIL while it runs scrypt, so threads would take turns.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from types import TracebackType

import pyrage

from farmhand.errors import BundleError

MAGIC = b"age-encryption.org/v1\n"
MAX_PARALLEL = 4
SCRYPT_MEMORY = 1 << 30  # what one scrypt run holds (age's work factor 2**20, r=8)


def encrypt(data: bytes, passphrase: str) -> bytes:
    try:
        return bytes(pyrage.passphrase.encrypt(data, passphrase))
    except pyrage.EncryptError as exc:  # pragma: no cover - only on internal failure
        raise BundleError(f"age encryption failed: {exc}") from None


def _parallelism(count: int) -> int:
    """As many processes as cores, files and free memory (1 GiB each) allow."""
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        by_memory = max(1, available // (SCRYPT_MEMORY + (SCRYPT_MEMORY >> 1)))
    except (ValueError, OSError, AttributeError):
        by_memory = 1
    return max(1, min(count, os.cpu_count() or 1, MAX_PARALLEL, by_memory))


def _die_with_parent() -> None:
    """In an encryption process: die when farmhand does (Linux), so a killed farmhand leaves
    no process behind holding its terminal or output pipes."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - no libc to ask
        return
    if os.getppid() == 1:  # the parent died before the line above took effect
        os._exit(1)


class Encryptions:
    """Encrypt up to ``count`` payloads in worker processes as they are handed in, so the
    caller builds the next payload and writes the public files while scrypt runs."""

    def __init__(self, count: int, passphrase: str) -> None:
        self._passphrase = passphrase
        workers = _parallelism(count)
        self._pool = (
            ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent)
            if workers > 1
            else None
        )

    def submit(self, data: bytes, passphrase: str | None = None) -> Future[bytes]:
        """Encrypt ``data`` with ``passphrase`` (by default the one given at the start)."""
        secret = self._passphrase if passphrase is None else passphrase
        if self._pool is not None:
            return self._pool.submit(encrypt, data, secret)
        done: Future[bytes] = Future()  # one core or little memory: encrypt here, now
        done.set_result(encrypt(data, secret))
        return done

    def __enter__(self) -> Encryptions:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=exc_type is not None)


def encrypt_many(items: list[bytes], passphrase: str) -> list[bytes]:
    """Encrypt independent payloads at once, in separate processes."""
    with Encryptions(len(items), passphrase) as encryptions:
        futures = [encryptions.submit(item) for item in items]
        return [future.result() for future in futures]


def decrypt(data: bytes, passphrase: str, what: str) -> bytes:
    """Decrypt ``data`` (named ``what`` in errors); tells wrong passphrase from damage."""
    if not data.startswith(MAGIC):
        raise BundleError(f"{what} is not an age-encrypted file")
    if b"\n-> scrypt " not in data[:4096]:
        raise BundleError(f"{what} is not encrypted with a passphrase")
    try:
        return bytes(pyrage.passphrase.decrypt(data, passphrase))
    except pyrage.DecryptError as exc:
        reason = str(exc)
    if reason == "Decryption failed":
        raise BundleError(f"wrong passphrase for {what}")
    # A header that does not parse (e.g. a damaged base64 line) is "Unknown age format": the
    # passphrase was never tried, so it must not be reported as right.
    if "header" in reason.lower() or reason.startswith("Unknown age format"):
        raise BundleError(f"{what} is truncated or its header is damaged")
    if reason == "decryption error":
        raise BundleError(f"{what} is damaged or truncated (the passphrase was right)")
    raise BundleError(f"{what} could not be decrypted: {reason}")
