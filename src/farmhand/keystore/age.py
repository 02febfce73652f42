"""age passphrase encryption (scrypt), with errors a person can act on.

Files stay readable by the standard ``age -d`` CLI. scrypt costs about a second of one core and
a gigabyte of memory per file by design, so independent files are encrypted in parallel.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pyrage

from farmhand.errors import BundleError

MAGIC = b"age-encryption.org/v1\n"
MAX_PARALLEL = 4  # each scrypt run holds ~1 GiB


def encrypt(data: bytes, passphrase: str) -> bytes:
    try:
        return bytes(pyrage.passphrase.encrypt(data, passphrase))
    except pyrage.EncryptError as exc:  # pragma: no cover - only on internal failure
        raise BundleError(f"age encryption failed: {exc}") from None


def encrypt_many(items: list[bytes], passphrase: str) -> list[bytes]:
    """Encrypt independent payloads at once; pyrage releases the GIL during scrypt."""
    if len(items) <= 1:
        return [encrypt(item, passphrase) for item in items]
    workers = max(1, min(len(items), os.cpu_count() or 1, MAX_PARALLEL))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda item: encrypt(item, passphrase), items))


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
    if "header" in reason.lower():
        raise BundleError(f"{what} is truncated or its header is damaged")
    raise BundleError(f"{what} is damaged or truncated (the passphrase was right)")
