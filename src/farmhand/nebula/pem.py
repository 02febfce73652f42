"""PEM framing exactly as Go's encoding/pem writes it, with Nebula's banners and raw key bytes."""

from __future__ import annotations

import base64
import binascii
import re

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from farmhand.errors import CertificateError

CERTIFICATE = "NEBULA CERTIFICATE"
X25519_PRIVATE_KEY = "NEBULA X25519 PRIVATE KEY"
X25519_PUBLIC_KEY = "NEBULA X25519 PUBLIC KEY"
ED25519_PRIVATE_KEY = "NEBULA ED25519 PRIVATE KEY"
ED25519_PUBLIC_KEY = "NEBULA ED25519 PUBLIC KEY"

_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END ([A-Z0-9 ]+)-----", re.DOTALL)


def encode(banner: str, data: bytes) -> bytes:
    """One PEM block: 64-character base64 lines and a trailing newline, as Go writes it."""
    b64 = base64.b64encode(data)
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    head = f"-----BEGIN {banner}-----\n".encode()
    tail = f"-----END {banner}-----\n".encode()
    return head + b"".join(line + b"\n" for line in lines) + tail


def decode_all(text: bytes) -> list[tuple[str, bytes]]:
    """Every PEM block in ``text`` as (banner, payload); malformed framing is an error."""
    blocks: list[tuple[str, bytes]] = []
    for match in _BLOCK.finditer(text):
        begin, body, end = match.group(1), match.group(2), match.group(3)
        if begin != end:
            raise CertificateError("PEM block has mismatched BEGIN and END banners")
        body = b"".join(line for line in body.split() if b":" not in line)
        try:
            payload = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise CertificateError("PEM block is not valid base64") from None
        blocks.append((begin.decode(), payload))
    if not blocks:
        raise CertificateError("input did not contain a valid PEM encoded block")
    return blocks


def decode_one(text: bytes, banner: str) -> bytes:
    """The payload of the single block in ``text``, which must carry ``banner``."""
    blocks = decode_all(text)
    if len(blocks) != 1:
        raise CertificateError(f"expected one {banner} block, found {len(blocks)} PEM blocks")
    found, payload = blocks[0]
    if found != banner:
        raise CertificateError(f"expected a {banner} block, found {found}")
    return payload


def ed25519_private_to_pem(key: Ed25519PrivateKey) -> bytes:
    """Nebula stores an Ed25519 private key as 64 bytes: the seed followed by the public key."""
    seed = key.private_bytes_raw()
    return encode(ED25519_PRIVATE_KEY, seed + key.public_key().public_bytes_raw())


def ed25519_private_from_pem(text: bytes) -> Ed25519PrivateKey:
    raw = decode_one(text, ED25519_PRIVATE_KEY)
    if len(raw) != 64:
        raise CertificateError("Ed25519 private key must be 64 bytes (seed and public key)")
    key = Ed25519PrivateKey.from_private_bytes(raw[:32])
    if key.public_key().public_bytes_raw() != raw[32:]:
        raise CertificateError("Ed25519 private key does not match its embedded public key")
    return key


def ed25519_public_to_pem(key: Ed25519PublicKey) -> bytes:
    return encode(ED25519_PUBLIC_KEY, key.public_bytes_raw())


def x25519_private_to_pem(raw: bytes) -> bytes:
    return encode(X25519_PRIVATE_KEY, raw)


def x25519_private_from_pem(text: bytes) -> bytes:
    raw = decode_one(text, X25519_PRIVATE_KEY)
    if len(raw) != 32:
        raise CertificateError("X25519 private key must be 32 bytes")
    return raw


def x25519_public_to_pem(raw: bytes) -> bytes:
    return encode(X25519_PUBLIC_KEY, raw)


def x25519_public_from_pem(text: bytes) -> bytes:
    raw = decode_one(text, X25519_PUBLIC_KEY)
    if len(raw) != 32:
        raise CertificateError("X25519 public key must be 32 bytes")
    return raw


def x25519_keypair() -> tuple[bytes, bytes]:
    """A fresh host key pair as (private, public) raw 32-byte strings."""
    key = X25519PrivateKey.generate()
    return key.private_bytes_raw(), key.public_key().public_bytes_raw()


def x25519_public_from_private(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()
