"""Our certificate code against the real ``nebula-cert`` and ``nebula`` binaries.

Each direction is checked: what we issue, nebula accepts and reports as we planned; what
nebula-cert issues, we parse, verify and reproduce byte for byte; what either side refuses, the
other refuses too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass, replace
from datetime import datetime
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from farmhand.errors import CertificateError
from farmhand.nebula import pem
from farmhand.nebula.cert import (
    CertDetails,
    NebulaCertificate,
    certificate_from_pem,
    create_ca,
    sign,
    sign_host,
    verify,
    verify_ca,
)

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        shutil.which("nebula-cert") is None,
        reason="nebula-cert is not on PATH (install the Debian package 'nebula'; CI does)",
    ),
]

needs_nebula = pytest.mark.skipif(
    shutil.which("nebula") is None,
    reason="nebula is not on PATH (install the Debian package 'nebula'; CI does)",
)

HOUR = 3600
DAY = 24 * HOUR


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], check=True, capture_output=True, text=True, timeout=60
    )


def run_fails(*args: str | Path) -> str:
    """Run a command that must fail; return what it printed (stdout and stderr)."""
    with pytest.raises(subprocess.CalledProcessError) as failure:
        run(*args)
    assert failure.value.returncode != 0
    return f"{failure.value.stdout}\n{failure.value.stderr}"


def nebula_print(path: Path) -> dict[str, Any]:
    printed: dict[str, Any] = json.loads(run("nebula-cert", "print", "-json", "-path", path).stdout)
    return printed


def unix(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp())


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@dataclass
class OurCA:
    cert: NebulaCertificate
    key: Ed25519PrivateKey
    crt: Path
    key_path: Path


def make_our_ca(
    directory: Path,
    *,
    not_before: int | None = None,
    ips: tuple[IPv4Network, ...] = (IPv4Network("10.87.0.0/16"),),
    subnets: tuple[IPv4Network, ...] = (),
    groups: tuple[str, ...] = ("render", "boss"),
) -> OurCA:
    now = int(time.time())
    key = Ed25519PrivateKey.generate()
    ca = create_ca(
        "farmhand test CA",
        key,
        not_before=now - HOUR if not_before is None else not_before,
        not_after=now + 365 * DAY,
        ips=ips,
        subnets=subnets,
        groups=groups,
    )
    directory.mkdir(parents=True, exist_ok=True)
    return OurCA(
        cert=ca,
        key=key,
        crt=write(directory / "ca.crt", ca.to_pem()),
        key_path=write(directory / "ca.key", pem.ed25519_private_to_pem(key)),
    )


@dataclass
class TheirPKI:
    """A CA and host made entirely by nebula-cert."""

    ca_crt: Path
    ca_key: Path
    host_crt: Path
    host_key: Path
    host_pub: Path


@pytest.fixture(scope="module")
def their_pki(tmp_path_factory: pytest.TempPathFactory) -> TheirPKI:
    d = tmp_path_factory.mktemp("their-pki")
    pki = TheirPKI(d / "ca.crt", d / "ca.key", d / "h.crt", d / "h.key", d / "h.pub")
    run(
        "nebula-cert", "ca", "-name", "their CA", "-duration", "48h",
        "-ips", "10.87.0.0/16", "-subnets", "192.168.0.0/16", "-groups", "render,boss",
        "-out-crt", pki.ca_crt, "-out-key", pki.ca_key,
    )  # fmt: skip
    run("nebula-cert", "keygen", "-out-key", pki.host_key, "-out-pub", pki.host_pub)
    run(
        "nebula-cert", "sign", "-ca-crt", pki.ca_crt, "-ca-key", pki.ca_key,
        "-name", "w7", "-ip", "10.87.7.7/16", "-subnets", "192.168.9.0/24",
        "-groups", "boss,render", "-in-pub", pki.host_pub, "-out-crt", pki.host_crt,
    )  # fmt: skip
    return pki


# ---------------------------------------------------------------------------------------------
# What we issue, nebula-cert accepts and reports as planned
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["w1", "render-node-ünïcødé"])
def test_our_certs_pass_nebula_cert_verify_and_print(tmp_path: Path, name: str) -> None:
    ca = make_our_ca(tmp_path, subnets=(IPv4Network("192.168.0.0/16"),))
    _, public = pem.x25519_keypair()
    now = int(time.time())
    host = sign_host(
        ca.cert,
        ca.key,
        name,
        IPv4Interface("10.87.99.1/16"),
        public,
        not_before=now - 300,
        not_after=now + 30 * DAY,
        groups=("render", "boss"),
        subnets=(IPv4Network("192.168.4.0/24"),),
    )
    host_crt = write(tmp_path / "host.crt", host.to_pem())

    run("nebula-cert", "verify", "-ca", ca.crt, "-crt", host_crt)

    printed = nebula_print(host_crt)
    assert printed["fingerprint"] == host.fingerprint
    details = printed["details"]
    assert details["name"] == name
    assert details["ips"] == ["10.87.99.1/16"]
    assert details["subnets"] == ["192.168.4.0/24"]
    assert details["groups"] == ["render", "boss"]
    assert details["isCa"] is False
    assert details["issuer"] == ca.cert.fingerprint
    assert details["publicKey"] == public.hex()
    assert unix(details["notBefore"]) == now - 300
    assert unix(details["notAfter"]) == now + 30 * DAY
    assert printed["signature"] == host.signature.hex()

    printed_ca = nebula_print(ca.crt)
    assert printed_ca["fingerprint"] == ca.cert.fingerprint
    assert printed_ca["details"]["isCa"] is True
    assert printed_ca["details"]["issuer"] == ""
    assert printed_ca["details"]["ips"] == ["10.87.0.0/16"]
    assert printed_ca["details"]["subnets"] == ["192.168.0.0/16"]
    assert printed_ca["details"]["groups"] == ["render", "boss"]
    assert printed_ca["details"]["publicKey"] == ca.key.public_key().public_bytes_raw().hex()


def test_our_unconstrained_ca_and_minimal_host_pass_nebula_cert(tmp_path: Path) -> None:
    ca = make_our_ca(tmp_path, ips=(), groups=())
    _, public = pem.x25519_keypair()
    now = int(time.time())
    host = sign_host(
        ca.cert, ca.key, "bare", IPv4Interface("172.16.5.4/12"), public, now - 60, now + DAY
    )
    host_crt = write(tmp_path / "host.crt", host.to_pem())
    run("nebula-cert", "verify", "-ca", ca.crt, "-crt", host_crt)
    details = nebula_print(host_crt)["details"]
    assert details["ips"] == ["172.16.5.4/12"]
    assert details["groups"] == []
    assert details["subnets"] == []
    assert nebula_print(ca.crt)["details"]["ips"] == []


# ---------------------------------------------------------------------------------------------
# What nebula-cert issues, we parse, verify and reproduce
# ---------------------------------------------------------------------------------------------


def test_nebula_cert_certs_parse_and_verify_in_our_code(their_pki: TheirPKI) -> None:
    ca = certificate_from_pem(their_pki.ca_crt.read_bytes())
    host = certificate_from_pem(their_pki.host_crt.read_bytes())
    verify_ca(ca)
    verify(host, ca, at=int(time.time()))

    assert ca.fingerprint == nebula_print(their_pki.ca_crt)["fingerprint"]
    assert host.fingerprint == nebula_print(their_pki.host_crt)["fingerprint"]

    assert ca.details.is_ca
    assert ca.details.name == "their CA"
    assert ca.details.ips == (IPv4Interface("10.87.0.0/16"),)
    assert ca.details.subnets == (IPv4Interface("192.168.0.0/16"),)
    assert ca.details.groups == ("render", "boss")
    assert ca.details.not_after - ca.details.not_before == 48 * HOUR

    assert not host.details.is_ca
    assert host.details.name == "w7"
    assert host.details.ips == (IPv4Interface("10.87.7.7/16"),)
    assert host.details.subnets == (IPv4Interface("192.168.9.0/24"),)
    assert host.details.groups == ("boss", "render")
    assert host.details.issuer.hex() == ca.fingerprint
    assert host.details.not_after == ca.details.not_after - 1

    # nebula-cert's key files parse in our code and belong to the certificates.
    assert host.details.public_key == pem.x25519_public_from_pem(their_pki.host_pub.read_bytes())
    private = pem.x25519_private_from_pem(their_pki.host_key.read_bytes())
    assert pem.x25519_public_from_private(private) == host.details.public_key
    ca_key = pem.ed25519_private_from_pem(their_pki.ca_key.read_bytes())
    assert ca_key.public_key().public_bytes_raw() == ca.details.public_key


def test_nebula_cert_generated_key_parses(tmp_path: Path, their_pki: TheirPKI) -> None:
    crt, key = tmp_path / "g.crt", tmp_path / "g.key"
    run(
        "nebula-cert", "sign", "-ca-crt", their_pki.ca_crt, "-ca-key", their_pki.ca_key,
        "-name", "gen", "-ip", "10.87.1.2/24", "-out-crt", crt, "-out-key", key,
    )  # fmt: skip
    cert = certificate_from_pem(crt.read_bytes())
    private = pem.x25519_private_from_pem(key.read_bytes())
    assert pem.x25519_public_from_private(private) == cert.details.public_key
    verify(cert, certificate_from_pem(their_pki.ca_crt.read_bytes()), at=int(time.time()))


def test_resigning_nebula_cert_details_is_byte_identical(their_pki: TheirPKI) -> None:
    ca_pem = their_pki.ca_crt.read_bytes()
    host_pem = their_pki.host_crt.read_bytes()
    ca = certificate_from_pem(ca_pem)
    host = certificate_from_pem(host_pem)
    key = pem.ed25519_private_from_pem(their_pki.ca_key.read_bytes())

    assert sign(ca.details, key).to_pem() == ca_pem
    assert sign(host.details, key).to_pem() == host_pem
    assert ca.to_pem() == ca_pem
    # Through the checked path too.
    again = sign_host(
        ca,
        key,
        "w7",
        IPv4Interface("10.87.7.7/16"),
        host.details.public_key,
        host.details.not_before,
        host.details.not_after,
        groups=("boss", "render"),
        subnets=(IPv4Network("192.168.9.0/24"),),
    )
    assert again.to_pem() == host_pem


def test_our_key_files_work_in_nebula_cert(tmp_path: Path) -> None:
    ca = make_our_ca(tmp_path)
    _, public = pem.x25519_keypair()
    pub_path = write(tmp_path / "h.pub", pem.x25519_public_to_pem(public))
    host_crt = tmp_path / "h.crt"
    run(
        "nebula-cert", "sign", "-ca-crt", ca.crt, "-ca-key", ca.key_path, "-in-pub", pub_path,
        "-name", "w3", "-ip", "10.87.3.3/16", "-groups", "render", "-out-crt", host_crt,
    )  # fmt: skip
    theirs = certificate_from_pem(host_crt.read_bytes())
    assert theirs.details.public_key == public
    assert theirs.details.issuer.hex() == ca.cert.fingerprint
    verify(theirs, ca.cert, at=int(time.time()))

    ours = sign_host(
        ca.cert,
        ca.key,
        "w3",
        IPv4Interface("10.87.3.3/16"),
        public,
        theirs.details.not_before,
        theirs.details.not_after,
        groups=("render",),
    )
    assert ours.to_pem() == host_crt.read_bytes()


# ---------------------------------------------------------------------------------------------
# What one side refuses, the other refuses too
# ---------------------------------------------------------------------------------------------

VIOLATIONS = [
    pytest.param(
        "10.88.0.1/16",
        "",
        "",
        "certificate contained an ip assignment outside the limitations of the signing ca: "
        "10.88.0.1/16",
        id="ip-outside",
    ),
    pytest.param(
        "10.87.0.2/8",
        "",
        "",
        "certificate contained an ip assignment outside the limitations of the signing ca: "
        "10.87.0.2/8",
        id="prefix-wider",
    ),
    pytest.param(
        "10.87.0.2/16",
        "render,evil",
        "",
        "certificate contained a group not present on the signing ca: evil",
        id="foreign-group",
    ),
    pytest.param(
        "10.87.0.2/16",
        "",
        "172.16.0.0/24",
        "certificate contained a subnet assignment outside the limitations of the signing ca",
        id="subnet-outside",
    ),
]


@pytest.mark.parametrize(("ip", "groups", "subnets", "message"), VIOLATIONS)
def test_constraint_violations_refused_by_both_signers(
    tmp_path: Path, their_pki: TheirPKI, ip: str, groups: str, subnets: str, message: str
) -> None:
    args: list[str | Path] = [
        "nebula-cert", "sign", "-ca-crt", their_pki.ca_crt, "-ca-key", their_pki.ca_key,
        "-in-pub", their_pki.host_pub, "-name", "bad", "-ip", ip, "-out-crt", tmp_path / "x.crt",
    ]  # fmt: skip
    if groups:
        args += ["-groups", groups]
    if subnets:
        args += ["-subnets", subnets]
    assert message in run_fails(*args)
    assert not (tmp_path / "x.crt").exists()

    ca = certificate_from_pem(their_pki.ca_crt.read_bytes())
    key = pem.ed25519_private_from_pem(their_pki.ca_key.read_bytes())
    with pytest.raises(CertificateError) as refused:
        sign_host(
            ca,
            key,
            "bad",
            IPv4Interface(ip),
            pem.x25519_public_from_pem(their_pki.host_pub.read_bytes()),
            ca.details.not_before,
            ca.details.not_after - 1,
            groups=tuple(groups.split(",")) if groups else (),
            subnets=(IPv4Network(subnets),) if subnets else (),
        )
    assert message in str(refused.value)


@pytest.mark.parametrize(("ip", "groups", "subnets", "message"), VIOLATIONS)
def test_force_signed_violations_rejected_by_both_verifiers(
    tmp_path: Path, their_pki: TheirPKI, ip: str, groups: str, subnets: str, message: str
) -> None:
    ca = certificate_from_pem(their_pki.ca_crt.read_bytes())
    key = pem.ed25519_private_from_pem(their_pki.ca_key.read_bytes())
    details = CertDetails(
        name="forced",
        not_before=ca.details.not_before,
        not_after=ca.details.not_after - 1,
        public_key=pem.x25519_public_from_pem(their_pki.host_pub.read_bytes()),
        ips=(IPv4Interface(ip),),
        subnets=(IPv4Interface(subnets),) if subnets else (),
        groups=tuple(groups.split(",")) if groups else (),
        issuer=bytes.fromhex(ca.fingerprint),
    )
    forced = sign(details, key)  # bypasses sign_host's checks
    assert forced.check_signature(ca.details.public_key)
    crt = write(tmp_path / "forced.crt", forced.to_pem())
    assert nebula_print(crt)["fingerprint"] == forced.fingerprint

    assert message in run_fails("nebula-cert", "verify", "-ca", their_pki.ca_crt, "-crt", crt)
    with pytest.raises(CertificateError) as rejected:
        verify(forced, ca, at=int(time.time()))
    assert message in str(rejected.value)


def _tampered_signature(cert: NebulaCertificate) -> NebulaCertificate:
    signature = bytearray(cert.signature)
    signature[0] ^= 0x01
    return replace(cert, signature=bytes(signature))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("expired", "certificate is expired"),
        ("not-yet-valid", "certificate is expired"),
        ("after-ca", "certificate expires after signing certificate"),
        ("tampered", "certificate signature did not match"),
        ("other-ca", "could not find ca for the certificate"),
    ],
)
def test_invalid_certs_rejected_by_both_verifiers(tmp_path: Path, case: str, message: str) -> None:
    now = int(time.time())
    ca = make_our_ca(tmp_path / "ca", not_before=now - 30 * DAY)
    _, public = pem.x25519_keypair()
    times = {
        "expired": (now - 10 * DAY, now - DAY),
        "not-yet-valid": (now + DAY, now + 2 * DAY),
        "after-ca": (now - DAY, ca.cert.details.not_after + DAY),
    }.get(case, (now - DAY, now + DAY))
    details = CertDetails(
        name="h",
        not_before=times[0],
        not_after=times[1],
        public_key=public,
        ips=(IPv4Interface("10.87.5.5/16"),),
        issuer=bytes.fromhex(ca.cert.fingerprint),
    )
    cert = sign(details, ca.key)
    trusted = ca
    if case == "tampered":
        cert = _tampered_signature(cert)
    elif case == "other-ca":
        trusted = make_our_ca(tmp_path / "other")
    crt = write(tmp_path / "h.crt", cert.to_pem())

    assert message in run_fails("nebula-cert", "verify", "-ca", trusted.crt, "-crt", crt)
    with pytest.raises(CertificateError) as rejected:
        verify(cert, trusted.cert, at=now)
    assert message in str(rejected.value)


def test_duplicate_details_rejected_by_both(tmp_path: Path, their_pki: TheirPKI) -> None:
    # nebula merges two Details fields into one (an extra group here) and the signature fails;
    # we must not accept the blob by reading only the last Details.
    host_raw = pem.decode_one(their_pki.host_crt.read_bytes(), pem.CERTIFICATE)
    extra = CertDetails(name="", not_before=0, not_after=0, public_key=b"", groups=("evil",))
    blob = b"\x0a" + bytes([len(extra.encode())]) + extra.encode() + host_raw
    crt = write(tmp_path / "dup.crt", pem.encode(pem.CERTIFICATE, blob))
    assert "evil" in nebula_print(crt)["details"]["groups"]
    output = run_fails("nebula-cert", "verify", "-ca", their_pki.ca_crt, "-crt", crt)
    assert "certificate signature did not match" in output
    with pytest.raises(CertificateError, match="more than one Details field"):
        certificate_from_pem(crt.read_bytes())


# ---------------------------------------------------------------------------------------------
# nebula itself loads our PKI
# ---------------------------------------------------------------------------------------------

CONFIG = """\
pki:
  ca: {ca}
  cert: {cert}
  key: {key}
  disconnect_invalid: true
static_host_map: {{}}
lighthouse:
  am_lighthouse: true
  interval: 60
listen:
  host: 0.0.0.0
  port: 4242
punchy:
  punch: true
tun:
  disabled: true
  dev: nebula1
logging:
  level: info
firewall:
  outbound:
    - port: any
      proto: any
      host: any
  inbound:
    - port: any
      proto: icmp
      host: any
    - port: 22
      proto: tcp
      groups:
        - boss
"""


@needs_nebula
def test_nebula_accepts_our_hub_config_and_rejects_a_wrong_key(tmp_path: Path) -> None:
    ca = make_our_ca(tmp_path, groups=("hub", "render", "boss"))
    private, public = pem.x25519_keypair()
    now = int(time.time())
    hub = sign_host(
        ca.cert,
        ca.key,
        "hub",
        IPv4Interface("10.87.0.1/16"),
        public,
        not_before=now - 300,
        not_after=ca.cert.details.not_after - 1,
        groups=("hub",),
    )
    hub_crt = write(tmp_path / "hub.crt", hub.to_pem())
    hub_key = write(tmp_path / "hub.key", pem.x25519_private_to_pem(private))
    config = tmp_path / "config.yml"
    config.write_text(CONFIG.format(ca=ca.crt, cert=hub_crt, key=hub_key))

    result = run("nebula", "-test", "-config", config)
    assert "error" not in (result.stdout + result.stderr).lower()

    other_private, _ = pem.x25519_keypair()
    write(hub_key, pem.x25519_private_to_pem(other_private))
    output = run_fails("nebula", "-test", "-config", config)
    assert "private key is not a pair with public key in nebula cert" in output
