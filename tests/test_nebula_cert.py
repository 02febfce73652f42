"""Pure-Python tests of the Nebula v1 certificate format: encoding, parsing, PEM, constraints.

The interop tests (test_nebula_interop.py) check the same code against the real binaries; these
run everywhere and in well under a few seconds.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from farmhand.errors import CertificateError
from farmhand.nebula import pem, proto
from farmhand.nebula.cert import (
    CertDetails,
    NebulaCertificate,
    certificate_from_pem,
    certificates_from_pem,
    check_constraints,
    create_ca,
    parse_certificate,
    parse_details,
    sign,
    sign_host,
    verify,
    verify_ca,
)

# ---------------------------------------------------------------------------------------------
# A known vector, made once with nebula-cert 1.6.1:
#   nebula-cert ca -name vector-ca -ips 10.87.0.0/16 -subnets 192.168.0.0/16 \
#       -groups render,boss -duration 87600h
#   nebula-cert keygen -out-key h.key -out-pub h.pub
#   nebula-cert sign -name w1 -ip 10.87.99.1/16 -subnets 192.168.1.0/24 -groups boss,render \
#       -in-pub h.pub -out-crt h.crt
# The fingerprints are the ones `nebula-cert print -json` reported.
# ---------------------------------------------------------------------------------------------

VECTOR_CA_KEY_PEM = b"""-----BEGIN NEBULA ED25519 PRIVATE KEY-----
l5DInn53vmrTQZX5fLNQCWdCzbTp7Z0wnT2FU8HPjZVyEfEzd8u9Hc5TdFJ0ZN57
raM1u3eo7oBbFti3ZaB2jA==
-----END NEBULA ED25519 PRIVATE KEY-----
"""

VECTOR_CA_HEX = (
    "0a600a09766563746f722d636112098080dc528080fcff0f1a0a8080a0850c8080fcff0f220672656e646572"
    "2204626f737328f3da94d80630f3e0c4ee073a207211f13377cbbd1dce5374527464de7bada335bb77a8ee80"
    "5b16d8b765a0768c400112405482b417a2123b4bf6f24d91fc27ccd3fd00f48cc2478e021f3abdcd9398e578"
    "e57b9dad2b1300db255c0ccae03ceccf22af946a9e744fcd5b58809b82ab6a0d"
)
VECTOR_CA_FINGERPRINT = "7291419b1ab0c20654cba8bba68a6129650d620cba381dcd892983869aa111fc"

VECTOR_HOST_HEX = (
    "0a790a027731120981c6dd528080fcff0f1a0a8082a0850c80feffff0f2204626f7373220672656e64657228"
    "f3da94d80630f2e0c4ee073a20599a93c186e75f369caedf668a2c98a995896d5375fd8a0e4d40c99688da89"
    "534a207291419b1ab0c20654cba8bba68a6129650d620cba381dcd892983869aa111fc12408be4aacdd39a74"
    "e83dfddd8f0e328ca71f09027f5a0047081c0e41fea1f198c3b5a58c7452257a5380f65bf745fb81abd68912"
    "a0c470743b87d38ca5f26b5306"
)
VECTOR_HOST_FINGERPRINT = "8777681914ba707ad98dc82dea597b307dc79e6719c04c915a8644b73efe8835"
VECTOR_HOST_PEM = b"""-----BEGIN NEBULA CERTIFICATE-----
CnkKAncxEgmBxt1SgID8/w8aCoCCoIUMgP7//w8iBGJvc3MiBnJlbmRlcijz2pTY
BjDy4MTuBzogWZqTwYbnXzacrt9miiyYqZWJbVN1/YoOTUDJlojaiVNKIHKRQZsa
sMIGVMuou6aKYSllDWIMujgdzYkpg4aaoRH8EkCL5KrN05p06D393Y8OMoynHwkC
f1oARwgcDkH+ofGYw7WljHRSJXpTgPZb90X7gavWiRKgxHB0O4fTjKXya1MG
-----END NEBULA CERTIFICATE-----
"""

VECTOR_CA_DETAILS = CertDetails(
    name="vector-ca",
    not_before=1795501427,  # 2026-11-24T06:23:47Z
    not_after=2110861427,  # 2036-11-21T06:23:47Z
    public_key=bytes.fromhex("7211f13377cbbd1dce5374527464de7bada335bb77a8ee805b16d8b765a0768c"),
    ips=(IPv4Interface("10.87.0.0/16"),),
    subnets=(IPv4Interface("192.168.0.0/16"),),
    groups=("render", "boss"),
    is_ca=True,
)
VECTOR_HOST_DETAILS = CertDetails(
    name="w1",
    not_before=1795501427,
    not_after=2110861426,  # one second before the CA, as nebula-cert does
    public_key=bytes.fromhex("599a93c186e75f369caedf668a2c98a995896d5375fd8a0e4d40c99688da8953"),
    ips=(IPv4Interface("10.87.99.1/16"),),
    subnets=(IPv4Interface("192.168.1.0/24"),),
    groups=("boss", "render"),
    issuer=bytes.fromhex(VECTOR_CA_FINGERPRINT),
)

# A fixed signing key for the property tests (deterministic, so failures reproduce).
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
NOW = 1_800_000_000
DAY = 86_400

# ---------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
interfaces = st.builds(
    lambda ip, prefix: IPv4Interface((IPv4Address(ip), prefix)),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.integers(min_value=0, max_value=32),
)
details_strategy = st.builds(
    CertDetails,
    name=st.text(max_size=40),
    not_before=INT64,
    not_after=INT64,
    public_key=st.binary(min_size=32, max_size=32),
    ips=st.lists(interfaces, max_size=4).map(tuple),
    subnets=st.lists(interfaces, max_size=4).map(tuple),
    groups=st.lists(st.text(max_size=20), max_size=5).map(tuple),
    is_ca=st.booleans(),
    issuer=st.one_of(st.just(b""), st.binary(min_size=32, max_size=32)),
)

FAST = settings(max_examples=150, deadline=None)
SLOW = settings(max_examples=60, deadline=None)


def _raw_cert(details_raw: bytes, signature: bytes) -> bytes:
    """A RawNebulaCertificate around already-encoded details (to smuggle in altered bytes)."""
    return proto.encode_bytes_field(1, details_raw) + proto.encode_bytes_field(2, signature)


def _parse_or_none(data: bytes) -> NebulaCertificate | None:
    """Parse, allowing only CertificateError: any other exception fails the calling test."""
    try:
        return parse_certificate(data)
    except CertificateError:
        return None


def _pem_or_none(text: bytes) -> NebulaCertificate | None:
    try:
        return certificate_from_pem(text)
    except CertificateError:
        return None


def _field_numbers(data: bytes) -> list[int]:
    return [number for number, _, _ in proto.iter_fields(data)]


def _vector_ca() -> NebulaCertificate:
    return parse_certificate(bytes.fromhex(VECTOR_CA_HEX))


def _vector_host() -> NebulaCertificate:
    return parse_certificate(bytes.fromhex(VECTOR_HOST_HEX))


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------


@FAST
@given(details=details_strategy)
def test_details_round_trip(details: CertDetails) -> None:
    encoded = details.encode()
    parsed = parse_details(encoded)
    assert parsed == details
    assert parsed.encode() == encoded


@FAST
@given(details=details_strategy)
def test_certificate_and_pem_round_trip(details: CertDetails) -> None:
    cert = sign(details, KEY)
    raw = cert.to_bytes()
    assert parse_certificate(raw) == cert
    assert cert.fingerprint == hashlib.sha256(raw).hexdigest()

    text = cert.to_pem()
    assert text.startswith(b"-----BEGIN NEBULA CERTIFICATE-----\n")
    assert text.endswith(b"-----END NEBULA CERTIFICATE-----\n")
    assert all(len(line) <= 64 for line in text.splitlines())
    assert certificate_from_pem(text) == cert
    assert pem.decode_one(text, pem.CERTIFICATE) == raw
    assert certificates_from_pem(text + text) == [cert, cert]


@SLOW
@given(details=details_strategy, mask=st.integers(min_value=1, max_value=255))
def test_signature_detects_any_changed_details_byte(details: CertDetails, mask: int) -> None:
    cert = sign(details, KEY)
    public = KEY.public_key().public_bytes_raw()
    assert cert.check_signature(public)
    assert not cert.check_signature(OTHER_KEY.public_key().public_bytes_raw())
    assert not cert.check_signature(b"short")

    encoded = details.encode()
    for i in range(len(encoded)):
        changed = bytearray(encoded)
        changed[i] ^= mask
        tampered = _parse_or_none(_raw_cert(bytes(changed), cert.signature))
        if tampered is None or not tampered.check_signature(public):
            continue
        # Nebula verifies the *re-encoded* details, so the only accepted change is one that
        # means the same thing (IsCA=1 rewritten as another non-zero varint): same certificate.
        assert details.is_ca
        assert tampered == cert
        assert tampered.to_bytes() == cert.to_bytes()


def test_every_single_bit_flip_of_vector_breaks_host_signature() -> None:
    ca = _vector_ca()
    raw = bytes.fromhex(VECTOR_HOST_HEX)
    for i in range(len(raw)):
        for bit in range(8):
            changed = bytearray(raw)
            changed[i] ^= 1 << bit
            cert = _parse_or_none(bytes(changed))
            if cert is not None:
                assert not cert.check_signature(ca.details.public_key), (i, bit)
                with pytest.raises(CertificateError):
                    verify(cert, ca, at=NOW)


def test_is_ca_value_is_normalised_on_reencode() -> None:
    details = CertDetails(name="ca", not_before=1, not_after=2, public_key=b"k" * 32, is_ca=True)
    encoded = details.encode()
    assert b"\x40\x01" in encoded
    parsed = parse_details(encoded.replace(b"\x40\x01", b"\x40\x7f"))
    assert parsed.is_ca
    assert parsed.encode() == encoded


# ---------------------------------------------------------------------------------------------
# Malformed input: only CertificateError, never anything else
# ---------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_never_crash(data: bytes) -> None:
    _parse_or_none(data)
    _parse_or_none(_raw_cert(data, b"s" * 64))
    with contextlib.suppress(CertificateError):
        parse_details(data)


def test_every_truncation_of_a_valid_cert_is_rejected_or_unsigned() -> None:
    for raw, signer in (
        (bytes.fromhex(VECTOR_HOST_HEX), VECTOR_CA_DETAILS.public_key),
        (bytes.fromhex(VECTOR_CA_HEX), VECTOR_CA_DETAILS.public_key),
    ):
        for length in range(len(raw)):
            cert = _parse_or_none(raw[:length])
            # Cutting just after the details leaves a certificate without a signature.
            if cert is not None:
                assert not cert.check_signature(signer), length
        assert parse_certificate(raw).check_signature(signer)


@settings(max_examples=200, deadline=None)
@given(
    which=st.sampled_from([VECTOR_HOST_HEX, VECTOR_CA_HEX]),
    flips=st.lists(st.integers(min_value=0, max_value=8 * 200 - 1), min_size=1, max_size=8),
)
def test_random_bit_flips_never_crash(which: str, flips: list[int]) -> None:
    raw = bytearray.fromhex(which)
    original = parse_certificate(bytes(raw))
    for bit in flips:
        raw[(bit // 8) % len(raw)] ^= 1 << (bit % 8)
    cert = _parse_or_none(bytes(raw))
    if cert is not None and cert.check_signature(VECTOR_CA_DETAILS.public_key):
        assert cert == original


@settings(max_examples=200, deadline=None)
@given(text=st.one_of(st.binary(max_size=400), st.text(max_size=400).map(str.encode)))
def test_random_text_as_pem_never_crashes(text: bytes) -> None:
    assert _pem_or_none(text) is None
    with contextlib.suppress(CertificateError):
        certificates_from_pem(text)


@settings(max_examples=200, deadline=None)
@given(
    body=st.one_of(
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\n"),
        st.binary(max_size=200).map(base64.b64encode),
    ),
    banner=st.sampled_from(["NEBULA CERTIFICATE", "NEBULA X25519 PUBLIC KEY", "X"]),
)
def test_random_pem_bodies_never_crash(body: str | bytes, banner: str) -> None:
    raw = body.encode() if isinstance(body, str) else body
    text = f"-----BEGIN {banner}-----\n".encode() + raw + f"\n-----END {banner}-----\n".encode()
    _pem_or_none(text)
    for decode in (
        pem.x25519_public_from_pem,
        pem.x25519_private_from_pem,
        pem.ed25519_private_from_pem,
    ):
        with contextlib.suppress(CertificateError):
            decode(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"", "did not contain a valid PEM"),
        (b"just some text\n", "did not contain a valid PEM"),
        (
            pem.encode(pem.CERTIFICATE, b"").replace(b"\n-", b"\n!!not base64!!\n-"),
            "not valid base64",
        ),
        (
            b"-----BEGIN NEBULA CERTIFICATE-----\nCnk\n-----END NEBULA CERTIFICATE-----\n",
            "not valid base64",
        ),
        (
            b"-----BEGIN NEBULA CERTIFICATE-----\nAAAA\n-----END NEBULA X25519 PUBLIC KEY-----\n",
            "mismatched BEGIN and END",
        ),
        (
            pem.encode(pem.X25519_PUBLIC_KEY, b"k" * 32),
            "expected a NEBULA CERTIFICATE block, found NEBULA X25519 PUBLIC KEY",
        ),
        (VECTOR_HOST_PEM + VECTOR_HOST_PEM, "expected one NEBULA CERTIFICATE block, found 2"),
        (pem.encode(pem.CERTIFICATE, b""), "encoded Details was nil"),
        (pem.encode(pem.CERTIFICATE, b"\xff"), "truncated"),
    ],
)
def test_broken_pem_is_rejected(text: bytes, message: str) -> None:
    with pytest.raises(CertificateError, match=message):
        certificate_from_pem(text)


def test_duplicate_details_field_is_rejected() -> None:
    # Protobuf merges a repeated embedded message, so Nebula would read these two Details as one
    # (groups "evil", "boss", "render") and reject the signature; taking only the last one would
    # accept a certificate that every Nebula node refuses.
    extra = proto.encode_bytes_field(4, b"evil")
    raw = proto.encode_bytes_field(1, extra) + bytes.fromhex(VECTOR_HOST_HEX)
    with pytest.raises(CertificateError, match="more than one Details field"):
        parse_certificate(raw)


def test_pem_tolerates_crlf_and_surrounding_text() -> None:
    crlf = VECTOR_HOST_PEM.replace(b"\n", b"\r\n")
    assert certificate_from_pem(b"leading junk\n" + crlf + b"trailing\n") == _vector_host()


def test_certificates_from_pem_rejects_foreign_blocks() -> None:
    key_block = pem.encode(pem.X25519_PUBLIC_KEY, b"k" * 32)
    with pytest.raises(CertificateError, match="expected NEBULA CERTIFICATE blocks"):
        certificates_from_pem(VECTOR_HOST_PEM + key_block)


def test_key_pem_helpers_round_trip_and_reject_bad_lengths() -> None:
    private, public = pem.x25519_keypair()
    assert len(private) == len(public) == 32
    assert pem.x25519_public_from_private(private) == public
    assert pem.x25519_private_from_pem(pem.x25519_private_to_pem(private)) == private
    assert pem.x25519_public_from_pem(pem.x25519_public_to_pem(public)) == public

    key = Ed25519PrivateKey.generate()
    text = pem.ed25519_private_to_pem(key)
    assert len(pem.decode_one(text, pem.ED25519_PRIVATE_KEY)) == 64
    restored = pem.ed25519_private_from_pem(text)
    assert restored.private_bytes_raw() == key.private_bytes_raw()
    public_text = pem.ed25519_public_to_pem(key.public_key())
    raw_public = key.public_key().public_bytes_raw()
    assert pem.decode_one(public_text, pem.ED25519_PUBLIC_KEY) == raw_public

    assert pem.ed25519_private_from_pem(VECTOR_CA_KEY_PEM).public_key().public_bytes_raw() == (
        VECTOR_CA_DETAILS.public_key
    )

    with pytest.raises(CertificateError, match="must be 32 bytes"):
        pem.x25519_private_from_pem(pem.encode(pem.X25519_PRIVATE_KEY, b"k" * 31))
    with pytest.raises(CertificateError, match="must be 32 bytes"):
        pem.x25519_public_from_pem(pem.encode(pem.X25519_PUBLIC_KEY, b"k" * 33))
    with pytest.raises(CertificateError, match="must be 64 bytes"):
        pem.ed25519_private_from_pem(pem.encode(pem.ED25519_PRIVATE_KEY, b"k" * 32))
    wrong_half = key.private_bytes_raw() + OTHER_KEY.public_key().public_bytes_raw()
    with pytest.raises(CertificateError, match="does not match its embedded public key"):
        pem.ed25519_private_from_pem(pem.encode(pem.ED25519_PRIVATE_KEY, wrong_half))
    with pytest.raises(CertificateError, match="expected a NEBULA X25519 PRIVATE KEY block"):
        pem.x25519_private_from_pem(pem.x25519_public_to_pem(public))


@pytest.mark.parametrize(
    ("details_raw", "message"),
    [
        (b"\x0a\x02\xff\xfe" + b"\x3a\x20" + b"k" * 32, "not valid UTF-8"),
        (b"\x12\x01\x01" + b"\x3a\x20" + b"k" * 32, "in pairs"),
        (b"\x12\x02\x01\x03" + b"\x3a\x20" + b"k" * 32, "non-contiguous netmask"),
        (b"\x12\x06\x80\x80\x80\x80\x10\x00" + b"\x3a\x20" + b"k" * 32, "beyond 32 bits"),
        (b"\x3a\x1f" + b"k" * 31, "public key is 31 bytes"),
        (b"\x3a\x20" + b"k" * 32 + b"\x4a\x01\x00", "issuer is not a sha256"),
        (b"\x3a\x20" + b"k" * 32 + b"\xa0\x06\x01", "unsupported certificate curve 1"),
        (b"\x0d\x00\x00\x00\x00" + b"\x3a\x20" + b"k" * 32, "field 1 has the wrong wire type"),
        (b"\x28\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "over-long varint"),
        (b"\x28\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", "beyond 64 bits"),
        (b"\x00\x00", "invalid field number 0"),
        (b"\x0b", "unsupported wire type 3"),
    ],
)
def test_malformed_details_messages(details_raw: bytes, message: str) -> None:
    with pytest.raises(CertificateError, match=message):
        parse_details(details_raw)


# ---------------------------------------------------------------------------------------------
# Canonical encoding
# ---------------------------------------------------------------------------------------------


def test_known_vector_parses_to_the_expected_details() -> None:
    ca, host = _vector_ca(), _vector_host()
    assert ca.details == VECTOR_CA_DETAILS
    assert host.details == VECTOR_HOST_DETAILS
    assert ca.fingerprint == VECTOR_CA_FINGERPRINT
    assert host.fingerprint == VECTOR_HOST_FINGERPRINT
    assert host.details.issuer_hex == VECTOR_CA_FINGERPRINT
    assert host.name == "w1"
    assert host.ip == IPv4Interface("10.87.99.1/16")
    verify_ca(ca)
    verify(host, ca, at=VECTOR_HOST_DETAILS.not_before + DAY)


def test_known_vector_is_reproduced_byte_for_byte() -> None:
    key = pem.ed25519_private_from_pem(VECTOR_CA_KEY_PEM)
    # The details written from scratch encode to exactly the bytes nebula-cert signed...
    ca_details_raw = next(
        v for n, _, v in proto.iter_fields(bytes.fromhex(VECTOR_CA_HEX)) if n == 1
    )
    assert VECTOR_CA_DETAILS.encode() == ca_details_raw
    # ...and signing them reproduces nebula-cert's certificates, PEM framing included.
    assert sign(VECTOR_CA_DETAILS, key).to_bytes().hex() == VECTOR_CA_HEX
    host = sign(VECTOR_HOST_DETAILS, key)
    assert host.to_bytes().hex() == VECTOR_HOST_HEX
    assert host.to_pem() == VECTOR_HOST_PEM


def test_known_vector_field_layout() -> None:
    details_raw = next(v for n, _, v in proto.iter_fields(bytes.fromhex(VECTOR_HOST_HEX)) if n == 1)
    assert isinstance(details_raw, bytes)
    # name "w1", then the ips packed as one field: ip and mask varints.
    assert details_raw.startswith(bytes.fromhex("0a027731" + "1209" + "81c6dd52" + "8080fcff0f"))
    assert _field_numbers(details_raw) == [1, 2, 3, 4, 4, 5, 6, 7, 9]


def test_is_ca_false_and_defaults_are_omitted() -> None:
    minimal = CertDetails(name="", not_before=0, not_after=0, public_key=b"k" * 32)
    assert minimal.encode() == b"\x3a\x20" + b"k" * 32

    host = CertDetails(name="h", not_before=5, not_after=6, public_key=b"k" * 32)
    assert _field_numbers(host.encode()) == [1, 5, 6, 7]
    assert b"\x40" not in host.encode().replace(b"k" * 32, b"")
    ca = replace(host, is_ca=True)
    assert _field_numbers(ca.encode()) == [1, 5, 6, 7, 8]
    assert ca.encode().endswith(b"\x40\x01")


def test_explicit_is_ca_false_does_not_survive_reencoding() -> None:
    # Nebula re-encodes to verify: a signer that wrote IsCA=false explicitly is not accepted.
    host = CertDetails(name="h", not_before=5, not_after=6, public_key=b"k" * 32)
    explicit = host.encode() + b"\x40\x00"
    assert parse_details(explicit) == host
    cert = parse_certificate(_raw_cert(explicit, KEY.sign(explicit)))
    assert not cert.check_signature(KEY.public_key().public_bytes_raw())


def test_empty_lists_are_omitted_and_groups_keep_their_order() -> None:
    base = CertDetails(name="h", not_before=1, not_after=2, public_key=b"k" * 32)
    assert _field_numbers(replace(base, ips=(), subnets=(), groups=()).encode()) == [1, 5, 6, 7]

    grouped = replace(base, groups=("zeta", "alpha", "", "mid"))
    encoded = grouped.encode()
    groups = [v for n, _, v in proto.iter_fields(encoded) if n == 4]
    assert groups == [b"zeta", b"alpha", b"", b"mid"]
    assert parse_details(encoded).groups == ("zeta", "alpha", "", "mid")


def test_ips_are_packed_and_unpacked_input_is_accepted() -> None:
    base = CertDetails(name="h", not_before=1, not_after=2, public_key=b"k" * 32)
    two = replace(base, ips=(IPv4Interface("10.0.0.1/8"), IPv4Interface("0.0.0.0/0")))
    fields = [(n, w) for n, w, _ in proto.iter_fields(two.encode())]
    assert fields.count((2, proto.LENGTH_DELIMITED)) == 1
    # A writer may send repeated scalars unpacked; it parses to the same thing.
    unpacked = (
        proto.encode_bytes_field(1, b"h")
        + b"".join(
            proto.encode_key(2, proto.VARINT) + proto.encode_varint(v)
            for v in (0x0A000001, 0xFF000000, 0, 0)
        )
        + base.encode()[len(proto.encode_bytes_field(1, b"h")) :]
    )
    assert parse_details(unpacked) == two


def test_negative_times_are_ten_byte_varints() -> None:
    details = CertDetails(name="", not_before=-1, not_after=2**63 - 1, public_key=b"k" * 32)
    encoded = details.encode()
    assert encoded.startswith(b"\x28" + b"\xff" * 9 + b"\x01")
    assert parse_details(encoded) == details


# ---------------------------------------------------------------------------------------------
# Constraints and verification
# ---------------------------------------------------------------------------------------------


def _constrained_ca() -> NebulaCertificate:
    return create_ca(
        "farm-ca",
        KEY,
        not_before=NOW - DAY,
        not_after=NOW + 365 * DAY,
        ips=(IPv4Network("10.87.0.0/16"),),
        subnets=(IPv4Network("192.168.0.0/16"),),
        groups=("render", "boss"),
    )


def _host(ca: NebulaCertificate, **kwargs: object) -> NebulaCertificate:
    args: dict[str, object] = {
        "name": "w1",
        "ip": IPv4Interface("10.87.99.1/16"),
        "public_key": b"p" * 32,
        "not_before": NOW - 60,
        "not_after": NOW + 30 * DAY,
        "groups": ("render",),
    }
    args.update(kwargs)
    return sign_host(ca, KEY, **args)  # type: ignore[arg-type]


def test_create_ca_and_sign_host_within_constraints() -> None:
    ca = _constrained_ca()
    assert ca.details.is_ca
    assert ca.details.ips == (IPv4Interface("10.87.0.0/16"),)
    verify_ca(ca)
    host = _host(
        ca,
        groups=(" boss ", "render", ""),
        subnets=(IPv4Network("192.168.7.0/24"),),
    )
    assert host.details.groups == ("boss", "render")
    assert host.details.issuer == bytes.fromhex(ca.fingerprint)
    assert not host.details.is_ca
    verify(host, ca, at=NOW)
    # A narrower prefix inside the CA's range is fine too.
    verify(_host(ca, ip=IPv4Interface("10.87.5.9/24")), ca, at=NOW)


def test_sign_host_refuses_ip_outside_ca() -> None:
    with pytest.raises(
        CertificateError,
        match=r"ip assignment outside the limitations of the signing ca: 10\.88\.0\.1/16",
    ):
        _host(_constrained_ca(), ip=IPv4Interface("10.88.0.1/16"))


def test_sign_host_refuses_wider_prefix_than_ca() -> None:
    with pytest.raises(CertificateError, match=r"outside the limitations .*: 10.87.0.1/8"):
        _host(_constrained_ca(), ip=IPv4Interface("10.87.0.1/8"))


def test_sign_host_refuses_subnet_outside_ca() -> None:
    with pytest.raises(
        CertificateError, match="subnet assignment outside the limitations of the signing ca"
    ):
        _host(_constrained_ca(), subnets=(IPv4Network("172.16.0.0/24"),))


def test_sign_host_refuses_extra_group() -> None:
    with pytest.raises(
        CertificateError, match="certificate contained a group not present on the signing ca: evil"
    ):
        _host(_constrained_ca(), groups=("render", "evil"))


def test_unconstrained_ca_allows_any_ip_and_group() -> None:
    ca = create_ca("open", KEY, not_before=NOW - DAY, not_after=NOW + 365 * DAY)
    host = _host(ca, ip=IPv4Interface("172.16.0.9/12"), groups=("anything",))
    verify(host, ca, at=NOW)


def test_sign_host_refuses_not_after_beyond_ca() -> None:
    ca = _constrained_ca()
    with pytest.raises(CertificateError, match="certificate expires after signing certificate"):
        _host(ca, not_after=ca.details.not_after + 1)


def test_sign_host_refuses_not_before_before_ca() -> None:
    ca = _constrained_ca()
    with pytest.raises(
        CertificateError, match="certificate is valid before the signing certificate"
    ):
        _host(ca, not_before=ca.details.not_before - 1)


def test_sign_host_refuses_bad_inputs() -> None:
    ca = _constrained_ca()
    with pytest.raises(CertificateError, match="host public key must be 32 bytes"):
        _host(ca, public_key=b"short")
    with pytest.raises(CertificateError, match="expire before it becomes valid"):
        _host(ca, not_before=NOW, not_after=NOW)
    with pytest.raises(CertificateError, match="may not contain a comma"):
        _host(ca, groups=("a,b",))
    with pytest.raises(CertificateError, match="expire before it becomes valid"):
        create_ca("bad", KEY, not_before=NOW, not_after=NOW - 1)


def test_check_constraints_directly() -> None:
    ca = _constrained_ca().details
    ok = CertDetails(
        name="x",
        not_before=ca.not_before,
        not_after=ca.not_after,
        public_key=b"p" * 32,
        ips=(IPv4Interface("10.87.0.0/16"),),
    )
    check_constraints(ok, ca)
    with pytest.raises(CertificateError, match="outside the limitations"):
        check_constraints(replace(ok, ips=(IPv4Interface("10.87.0.0/15"),)), ca)


def _ca_from(ca: NebulaCertificate, not_before: int) -> NebulaCertificate:
    """The same CA key, re-issued with an earlier NotBefore (so old hosts fit inside it)."""
    return create_ca(
        ca.name,
        KEY,
        not_before=not_before,
        not_after=ca.details.not_after,
        ips=tuple(i.network for i in ca.details.ips),
        subnets=tuple(s.network for s in ca.details.subnets),
        groups=ca.details.groups,
    )


def test_verify_rejects_expired() -> None:
    ca = _ca_from(_constrained_ca(), NOW - 10 * DAY)
    host = sign_host(
        ca,
        KEY,
        "old",
        IPv4Interface("10.87.0.5/16"),
        b"p" * 32,
        not_before=NOW - 5 * DAY,
        not_after=NOW - DAY,
    )
    verify(host, ca, at=NOW - 2 * DAY)
    with pytest.raises(CertificateError, match=r"^certificate is expired$"):
        verify(host, ca, at=NOW)


def test_verify_rejects_not_yet_valid() -> None:
    ca = _constrained_ca()
    host = _host(ca, not_before=NOW + DAY, not_after=NOW + 2 * DAY)
    assert host.is_expired(NOW)
    with pytest.raises(CertificateError, match=r"^certificate is expired$"):
        verify(host, ca, at=NOW)
    verify(host, ca, at=NOW + DAY)


def test_verify_rejects_expired_root() -> None:
    ca = _constrained_ca()
    host = _host(ca)
    with pytest.raises(CertificateError, match="root certificate is expired"):
        verify(host, ca, at=ca.details.not_after + 1)


def test_verify_rejects_blocklisted() -> None:
    ca = _constrained_ca()
    host = _host(ca)
    verify(host, ca, at=NOW, blocklist=frozenset({"0" * 64}))
    with pytest.raises(CertificateError, match="certificate is in the block list"):
        verify(host, ca, at=NOW, blocklist=frozenset({host.fingerprint}))


def test_verify_rejects_wrong_ca() -> None:
    ca = _constrained_ca()
    other = create_ca("other", OTHER_KEY, not_before=NOW - DAY, not_after=NOW + DAY)
    with pytest.raises(CertificateError, match="could not find ca for the certificate"):
        verify(_host(ca), other, at=NOW)


def test_verify_rejects_tampered_signature() -> None:
    ca = _constrained_ca()
    host = _host(ca)
    bad = bytearray(host.signature)
    bad[10] ^= 0x01
    with pytest.raises(CertificateError, match="certificate signature did not match"):
        verify(replace(host, signature=bytes(bad)), ca, at=NOW)
    # Same issuer, but details changed after signing.
    moved = replace(host, details=replace(host.details, name="w2"))
    with pytest.raises(CertificateError, match="certificate signature did not match"):
        verify(moved, ca, at=NOW)


def test_verify_rejects_force_signed_cert_outside_constraints() -> None:
    ca = _constrained_ca()
    base = _host(ca).details
    outside_ip = sign(replace(base, ips=(IPv4Interface("10.88.0.1/16"),)), KEY)
    with pytest.raises(CertificateError, match="ip assignment outside the limitations"):
        verify(outside_ip, ca, at=NOW)
    foreign_group = sign(replace(base, groups=("render", "evil")), KEY)
    with pytest.raises(CertificateError, match="group not present on the signing ca: evil"):
        verify(foreign_group, ca, at=NOW)
    too_long = sign(replace(base, not_after=ca.details.not_after + 1), KEY)
    with pytest.raises(CertificateError, match="expires after signing certificate"):
        verify(too_long, ca, at=NOW)


def test_verify_ca_rejects_non_ca_and_not_self_signed() -> None:
    ca = _constrained_ca()
    host = _host(ca)
    with pytest.raises(CertificateError, match="certificate 'w1' is not a CA"):
        verify_ca(host)
    with pytest.raises(CertificateError, match="is not a CA"):
        verify(host, host, at=NOW)
    forged = sign(ca.details, OTHER_KEY)
    with pytest.raises(CertificateError, match="CA certificate 'farm-ca' is not self-signed"):
        verify_ca(forged)
