"""age passphrase encryption (scrypt), with errors a person can act on.

Files stay readable by the standard ``age -d`` CLI. scrypt costs a second or two of one core and
a gigabyte of memory per file by design, so independent files are encrypted in parallel, in
processes: pyrage holds the GIL while it runs scrypt, so threads would take turns.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

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


def encrypt_many(items: list[bytes], passphrase: str) -> list[bytes]:
    """Encrypt independent payloads at once, in separate processes."""
    workers = _parallelism(len(items))
    if workers <= 1:
        return [encrypt(item, passphrase) for item in items]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(encrypt, items, [passphrase] * len(items)))


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
