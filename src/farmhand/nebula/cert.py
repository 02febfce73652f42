"""Nebula v1 certificates: the model, canonical encoding, parsing, signing and verification.

Given the same keys and times, ``sign`` yields a PEM byte-identical to ``nebula-cert``'s; the
interop tests hold us to that. Verification follows nebula 1.6's rules so that what we accept,
every Nebula node accepts too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from farmhand.errors import CertificateError
from farmhand.nebula import pem, proto

CURVE25519 = 0
KEY_LENGTH = 32

# Field numbers of RawNebulaCertificateDetails and RawNebulaCertificate (cert.proto, v1).
_NAME, _IPS, _SUBNETS, _GROUPS, _NOT_BEFORE, _NOT_AFTER = 1, 2, 3, 4, 5, 6
_PUBLIC_KEY, _IS_CA, _ISSUER, _CURVE = 7, 8, 9, 100
_DETAILS, _SIGNATURE = 1, 2


@dataclass(frozen=True)
class CertDetails:
    """What a certificate asserts. ``ips`` keep their host bits; ``issuer`` is raw sha256 bytes."""

    name: str
    not_before: int
    not_after: int
    public_key: bytes
    ips: tuple[IPv4Interface, ...] = ()
    subnets: tuple[IPv4Interface, ...] = ()
    groups: tuple[str, ...] = ()
    is_ca: bool = False
    issuer: bytes = b""
    curve: int = CURVE25519

    def encode(self) -> bytes:
        """Canonical protobuf, exactly as Go writes RawNebulaCertificateDetails."""
        return b"".join(
            (
                proto.encode_bytes_field(_NAME, self.name.encode()),
                proto.encode_packed_varints(_IPS, _pairs(self.ips)),
                proto.encode_packed_varints(_SUBNETS, _pairs(self.subnets)),
                b"".join(proto.encode_repeated_bytes(_GROUPS, g.encode()) for g in self.groups),
                proto.encode_varint_field(_NOT_BEFORE, self.not_before),
                proto.encode_varint_field(_NOT_AFTER, self.not_after),
                proto.encode_bytes_field(_PUBLIC_KEY, self.public_key),
                proto.encode_varint_field(_IS_CA, int(self.is_ca)),
                proto.encode_bytes_field(_ISSUER, self.issuer),
                proto.encode_varint_field(_CURVE, self.curve),
            )
        )

    @property
    def issuer_hex(self) -> str:
        return self.issuer.hex()


@dataclass(frozen=True)
class NebulaCertificate:
    details: CertDetails
    signature: bytes

    def to_bytes(self) -> bytes:
        """The serialized RawNebulaCertificate (details re-encoded canonically, as Nebula does)."""
        return proto.encode_bytes_field(_DETAILS, self.details.encode()) + proto.encode_bytes_field(
            _SIGNATURE, self.signature
        )

    def to_pem(self) -> bytes:
        return pem.encode(pem.CERTIFICATE, self.to_bytes())

    @property
    def fingerprint(self) -> str:
        """Hex sha256 of the serialized certificate: Nebula's fingerprint and a host's issuer."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @property
    def name(self) -> str:
        return self.details.name

    @property
    def ip(self) -> IPv4Interface | None:
        return self.details.ips[0] if self.details.ips else None

    def check_signature(self, public_key: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(
                self.signature, self.details.encode()
            )
        except (InvalidSignature, ValueError):
            return False
        return True

    def is_expired(self, at: int) -> bool:
        return self.details.not_before > at or self.details.not_after < at


def _pairs(addresses: tuple[IPv4Interface, ...]) -> list[int]:
    out: list[int] = []
    for iface in addresses:
        out.append(int(iface.ip))
        out.append(int(iface.netmask))
    return out


def _unpair(values: list[int], what: str) -> tuple[IPv4Interface, ...]:
    if len(values) % 2:
        raise CertificateError(f"encoded {what} should be in pairs, an odd number was found")
    out = []
    for ip, mask in zip(values[::2], values[1::2], strict=True):
        if ip > 0xFFFFFFFF or mask > 0xFFFFFFFF:
            raise CertificateError(f"encoded {what} has a value beyond 32 bits")
        prefix = 32 - (0xFFFFFFFF ^ mask).bit_length() if mask else 0
        if mask != (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF:
            raise CertificateError(f"encoded {what} has a non-contiguous netmask")
        out.append(IPv4Interface((IPv4Address(ip), prefix)))
    return tuple(out)


def parse_details(data: bytes) -> CertDetails:
    name = ""
    ips: list[int] = []
    subnets: list[int] = []
    groups: list[str] = []
    not_before = not_after = curve = 0
    public_key = issuer = b""
    is_ca = False
    for number, wire, value in proto.iter_fields(data):
        if number in (_NAME, _GROUPS, _PUBLIC_KEY, _ISSUER):
            if not isinstance(value, bytes) or wire != proto.LENGTH_DELIMITED:
                raise CertificateError(f"certificate field {number} has the wrong wire type")
            if number == _NAME:
                name = _utf8(value)
            elif number == _GROUPS:
                groups.append(_utf8(value))
            elif number == _PUBLIC_KEY:
                public_key = value
            else:
                issuer = value
        elif number in (_IPS, _SUBNETS):
            if wire not in (proto.VARINT, proto.LENGTH_DELIMITED):
                raise CertificateError(f"certificate field {number} has the wrong wire type")
            (ips if number == _IPS else subnets).extend(proto.decode_packed_varints(value))
        elif number in (_NOT_BEFORE, _NOT_AFTER, _IS_CA, _CURVE):
            if not isinstance(value, int):
                raise CertificateError(f"certificate field {number} has the wrong wire type")
            if number == _NOT_BEFORE:
                not_before = proto.to_int64(value)
            elif number == _NOT_AFTER:
                not_after = proto.to_int64(value)
            elif number == _IS_CA:
                is_ca = value != 0
            else:
                curve = value
        # Unknown fields are dropped, as Nebula drops them; the signature check then fails.
    if curve != CURVE25519:
        raise CertificateError(f"unsupported certificate curve {curve} (only Curve25519)")
    if len(public_key) != KEY_LENGTH:
        raise CertificateError(f"certificate public key is {len(public_key)} bytes, not 32")
    if issuer and len(issuer) != 32:
        raise CertificateError("certificate issuer is not a sha256 fingerprint")
    return CertDetails(
        name=name,
        not_before=not_before,
        not_after=not_after,
        public_key=public_key,
        ips=_unpair(ips, "IPs"),
        subnets=_unpair(subnets, "subnets"),
        groups=tuple(groups),
        is_ca=is_ca,
        issuer=issuer,
        curve=curve,
    )


def _utf8(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise CertificateError("certificate string field is not valid UTF-8") from None


def parse_certificate(data: bytes) -> NebulaCertificate:
    """Parse a serialized RawNebulaCertificate; any malformation raises CertificateError."""
    details_raw: bytes | None = None
    signature = b""
    for number, wire, value in proto.iter_fields(data):
        if number == _DETAILS:
            if not isinstance(value, bytes) or wire != proto.LENGTH_DELIMITED:
                raise CertificateError("certificate details have the wrong wire type")
            # Protobuf merges a repeated message field (Nebula would see both, combined).
            if details_raw is not None:
                raise CertificateError("certificate has more than one Details field")
            details_raw = value
        elif number == _SIGNATURE:
            if not isinstance(value, bytes) or wire != proto.LENGTH_DELIMITED:
                raise CertificateError("certificate signature has the wrong wire type")
            signature = value
    if details_raw is None:
        raise CertificateError("encoded Details was nil")
    return NebulaCertificate(details=parse_details(details_raw), signature=signature)


def certificate_from_pem(text: bytes) -> NebulaCertificate:
    return parse_certificate(pem.decode_one(text, pem.CERTIFICATE))


def certificates_from_pem(text: bytes) -> list[NebulaCertificate]:
    """Every certificate in a PEM file (a CA file may hold several during a CA rotation)."""
    out = []
    for banner, payload in pem.decode_all(text):
        if banner != pem.CERTIFICATE:
            raise CertificateError(f"expected {pem.CERTIFICATE} blocks, found {banner}")
        out.append(parse_certificate(payload))
    return out


def sign(details: CertDetails, ca_key: Ed25519PrivateKey) -> NebulaCertificate:
    """Sign ``details`` with the CA's Ed25519 key (Ed25519 is deterministic: same in, same out)."""
    return NebulaCertificate(details=details, signature=ca_key.sign(details.encode()))


def create_ca(
    name: str,
    ca_key: Ed25519PrivateKey,
    not_before: int,
    not_after: int,
    ips: tuple[IPv4Network, ...] = (),
    subnets: tuple[IPv4Network, ...] = (),
    groups: tuple[str, ...] = (),
) -> NebulaCertificate:
    """A self-signed CA; non-empty ips/subnets/groups constrain what it may ever sign."""
    _check_times(not_before, not_after)
    details = CertDetails(
        name=name,
        not_before=not_before,
        not_after=not_after,
        public_key=ca_key.public_key().public_bytes_raw(),
        ips=tuple(IPv4Interface((n.network_address, n.prefixlen)) for n in ips),
        subnets=tuple(IPv4Interface((n.network_address, n.prefixlen)) for n in subnets),
        groups=_clean_groups(groups),
        is_ca=True,
    )
    return sign(details, ca_key)


def sign_host(
    ca: NebulaCertificate,
    ca_key: Ed25519PrivateKey,
    name: str,
    ip: IPv4Interface,
    public_key: bytes,
    not_before: int,
    not_after: int,
    groups: tuple[str, ...] = (),
    subnets: tuple[IPv4Network, ...] = (),
    ca_fingerprint: bytes = b"",
) -> NebulaCertificate:
    """A host certificate; refuses anything the CA could not legitimately sign.

    Batch signers pass ``ca_fingerprint`` (raw) to skip re-hashing the CA for every host.
    """
    if len(public_key) != KEY_LENGTH:
        raise CertificateError("host public key must be 32 bytes")
    _check_times(not_before, not_after)
    details = CertDetails(
        name=name,
        not_before=not_before,
        not_after=not_after,
        public_key=public_key,
        ips=(ip,),
        subnets=tuple(IPv4Interface((n.network_address, n.prefixlen)) for n in subnets),
        groups=_clean_groups(groups),
        issuer=ca_fingerprint or bytes.fromhex(ca.fingerprint),
    )
    check_constraints(details, ca.details)
    return sign(details, ca_key)


def _check_times(not_before: int, not_after: int) -> None:
    if not_after <= not_before:
        raise CertificateError("certificate would expire before it becomes valid")


def _clean_groups(groups: tuple[str, ...]) -> tuple[str, ...]:
    cleaned = tuple(g.strip() for g in groups if g.strip())
    for group in cleaned:
        if "," in group:
            raise CertificateError(f"group name {group!r} may not contain a comma")
    return cleaned


def check_constraints(details: CertDetails, ca: CertDetails) -> None:
    """Nebula's CheckRootConstrains: what the CA limits, the host must stay within."""
    if ca.not_after < details.not_after:
        raise CertificateError("certificate expires after signing certificate")
    if ca.not_before > details.not_before:
        raise CertificateError("certificate is valid before the signing certificate")
    if ca.groups:
        for group in details.groups:
            if group not in ca.groups:
                raise CertificateError(
                    f"certificate contained a group not present on the signing ca: {group}"
                )
    if ca.ips:
        for iface in details.ips:
            if not _net_match(iface, ca.ips):
                raise CertificateError(
                    "certificate contained an ip assignment outside the limitations of the "
                    f"signing ca: {iface}"
                )
    if ca.subnets:
        for iface in details.subnets:
            if not _net_match(iface, ca.subnets):
                raise CertificateError(
                    "certificate contained a subnet assignment outside the limitations of the "
                    f"signing ca: {iface}"
                )


def _net_match(iface: IPv4Interface, allowed: tuple[IPv4Interface, ...]) -> bool:
    return any(
        iface.ip in root.network and iface.network.prefixlen >= root.network.prefixlen
        for root in allowed
    )


def verify(
    cert: NebulaCertificate,
    ca: NebulaCertificate,
    at: int,
    blocklist: frozenset[str] = frozenset(),
) -> None:
    """Raise CertificateError unless a Nebula node trusting ``ca`` accepts ``cert`` at ``at``."""
    verify_ca(ca)
    if cert.fingerprint in blocklist:
        raise CertificateError("certificate is in the block list")
    if cert.details.issuer != bytes.fromhex(ca.fingerprint):
        raise CertificateError("could not find ca for the certificate (signed by another CA)")
    if ca.is_expired(at):
        raise CertificateError("root certificate is expired")
    if cert.is_expired(at):
        raise CertificateError("certificate is expired")
    if not cert.check_signature(ca.details.public_key):
        raise CertificateError("certificate signature did not match")
    check_constraints(cert.details, ca.details)


def verify_ca(ca: NebulaCertificate) -> None:
    if not ca.details.is_ca:
        raise CertificateError(f"certificate {ca.name!r} is not a CA")
    if not ca.check_signature(ca.details.public_key):
        raise CertificateError(f"CA certificate {ca.name!r} is not self-signed")
