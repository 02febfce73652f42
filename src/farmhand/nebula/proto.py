"""The few protobuf wire rules Nebula's v1 certificate needs, written out by hand.

Nebula verifies a signature over the details *as it re-encodes them*, so our encoder must write
exactly what Go's protobuf writes: fields in number order, default values omitted, repeated
scalars packed. A general protobuf library would add a dependency and still need checking; the
format is small enough to own.
"""

from __future__ import annotations

from collections.abc import Iterator

from farmhand.errors import CertificateError

VARINT = 0
FIXED64 = 1
LENGTH_DELIMITED = 2
FIXED32 = 5

_UINT64_MASK = (1 << 64) - 1


def encode_varint(value: int) -> bytes:
    """Encode an int64/uint64 as a base-128 varint (negative values as 10-byte two's complement)."""
    value &= _UINT64_MASK
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_key(field: int, wire_type: int) -> bytes:
    return encode_varint((field << 3) | wire_type)


def encode_bytes_field(field: int, value: bytes) -> bytes:
    """A length-delimited field, or nothing for an empty value (proto3 omits defaults)."""
    if not value:
        return b""
    return encode_key(field, LENGTH_DELIMITED) + encode_varint(len(value)) + value


def encode_repeated_bytes(field: int, value: bytes) -> bytes:
    """One element of a repeated string/bytes field: written even when empty."""
    return encode_key(field, LENGTH_DELIMITED) + encode_varint(len(value)) + value


def encode_varint_field(field: int, value: int) -> bytes:
    if value == 0:
        return b""
    return encode_key(field, VARINT) + encode_varint(value)


def encode_packed_varints(field: int, values: list[int]) -> bytes:
    if not values:
        return b""
    return encode_bytes_field(field, b"".join(encode_varint(v) for v in values))


def decode_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Return (value, next position); rejects truncated and over-long varints."""
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise CertificateError("certificate data is truncated (inside a varint)")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift >= 70:
            raise CertificateError("certificate data has an over-long varint")
    if result > _UINT64_MASK:
        raise CertificateError("certificate data has a varint beyond 64 bits")
    return result, pos


def to_int64(value: int) -> int:
    """Reinterpret a decoded uint64 as Go's int64."""
    return value - (1 << 64) if value & (1 << 63) else value


def iter_fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield (field number, wire type, value) for every field of one message."""
    pos = 0
    while pos < len(data):
        key, pos = decode_varint(data, pos)
        field, wire_type = key >> 3, key & 7
        if field == 0:
            raise CertificateError("certificate data has an invalid field number 0")
        if wire_type == VARINT:
            value, pos = decode_varint(data, pos)
            yield field, wire_type, value
        elif wire_type == LENGTH_DELIMITED:
            length, pos = decode_varint(data, pos)
            end = pos + length
            if end > len(data):
                raise CertificateError("certificate data is truncated (field runs past the end)")
            yield field, wire_type, data[pos:end]
            pos = end
        elif wire_type in (FIXED64, FIXED32):
            size = 8 if wire_type == FIXED64 else 4
            if pos + size > len(data):
                raise CertificateError("certificate data is truncated (fixed-size field)")
            yield field, wire_type, data[pos : pos + size]
            pos += size
        else:
            raise CertificateError(f"certificate data has an unsupported wire type {wire_type}")


def decode_packed_varints(value: int | bytes) -> list[int]:
    """Decode a repeated scalar field, which a writer may send packed or as a single varint."""
    if isinstance(value, int):
        return [value]
    out: list[int] = []
    pos = 0
    while pos < len(value):
        item, pos = decode_varint(value, pos)
        out.append(item)
    return out
