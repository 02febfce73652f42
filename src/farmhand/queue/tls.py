"""TLS and credentials of the render queue's database, from the farm's own key store.

One farm-wide secret (``queue-tls``, declared below with keystore/farm_secrets.py) made once with
``cryptography``: an X.509 CA used for the queue only, the database server's key, one client
certificate (PEM and a PKCS#12 file for Deadline's clients) and the database password.

- The hub's bundle carries all of it: the hub *is* the queue server, and it signs its own
  server certificate for its overlay address when its host files are made. RSA PKCS#1 v1.5
  signatures are deterministic, so the host files come out the same each time (deploys stay
  idempotent).
- Workers' and bosses' bundles carry only the client part (``queue-tls.worker``/``.boss``):
  the CA certificate and the client certificate and key — never the CA key or the server key.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
from dataclasses import dataclass
from ipaddress import IPv4Address

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from farmhand.errors import BundleError
from farmhand.keystore.farm_secrets import ExtraSecret, declare
from farmhand.keystore.plan import Role

NAME = "queue-tls"
LIFETIME_DAYS = 10 * 365
CLIENT_CN = "farmhand-queue-client"
SERVER_CN = "farmhand-queue-db"


@dataclass(frozen=True)
class QueueTls:
    """The parts of ``queue-tls`` (some are empty in a client part)."""

    ca_cert: bytes
    client_cert: bytes
    client_key: bytes
    client_pfx: bytes
    ca_key: bytes = b""
    server_key: bytes = b""
    db_password: str = ""

    def to_bytes(self) -> bytes:
        data = {
            "ca_cert": self.ca_cert.decode(),
            "client_cert": self.client_cert.decode(),
            "client_key": self.client_key.decode(),
            "client_pfx": base64.b64encode(self.client_pfx).decode(),
            "ca_key": self.ca_key.decode(),
            "server_key": self.server_key.decode(),
            "db_password": self.db_password,
        }
        return json.dumps({k: v for k, v in data.items() if v}, indent=1).encode() + b"\n"

    @classmethod
    def from_bytes(cls, blob: bytes) -> QueueTls:
        try:
            data = json.loads(blob)
            return cls(
                ca_cert=data["ca_cert"].encode(),
                client_cert=data["client_cert"].encode(),
                client_key=data["client_key"].encode(),
                client_pfx=base64.b64decode(data["client_pfx"]),
                ca_key=data.get("ca_key", "").encode(),
                server_key=data.get("server_key", "").encode(),
                db_password=data.get("db_password", ""),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise BundleError(f"the bundle's {NAME} is damaged: {exc}") from None

    @property
    def client_pem(self) -> bytes:
        """Certificate and key in one file, as mongosh and MongoDB drivers take them."""
        return self.client_cert + self.client_key

    def client_part(self) -> QueueTls:
        return QueueTls(self.ca_cert, self.client_cert, self.client_key, self.client_pfx)

    def server_pem(self, address: IPv4Address) -> bytes:
        """The database's certificate for ``address`` (its overlay IP) and its key, one PEM."""
        if not self.ca_key or not self.server_key:
            raise BundleError(f"this bundle's {NAME} has no server part (only the hub's has)")
        ca_key = serialization.load_pem_private_key(self.ca_key, None)
        assert isinstance(ca_key, rsa.RSAPrivateKey)
        ca = x509.load_pem_x509_certificate(self.ca_cert)
        key = serialization.load_pem_private_key(self.server_key, None)
        assert isinstance(key, rsa.RSAPrivateKey)
        serial = int.from_bytes(
            hashlib.sha256(f"{address}".encode() + self.ca_cert).digest()[:16], "big"
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(SERVER_CN, "database"))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(serial >> 1)
            .not_valid_before(ca.not_valid_before_utc)
            .not_valid_after(ca.not_valid_after_utc)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(address)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM) + self.server_key


def _name(cn: str, unit: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "farmhand"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make() -> bytes:
    """A new queue CA, server key, client certificate and database password."""
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(minutes=5)
    until = now + dt.timedelta(days=LIFETIME_DAYS)
    ca_key, server_key, client_key = _key(), _key(), _key()
    ca_name = _name("farmhand queue CA", "queue")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    client = (
        x509.CertificateBuilder()
        .subject_name(_name(CLIENT_CN, "clients"))
        .issuer_name(ca_name)
        .public_key(client_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    # No PFX password: the file is protected like an SSH key (mode 0640, farm user's group),
    # and a password would have to appear on an installer's command line.
    pfx = pkcs12.serialize_key_and_certificates(
        CLIENT_CN.encode(), client_key, client, [ca], serialization.NoEncryption()
    )
    return QueueTls(
        ca_cert=ca.public_bytes(serialization.Encoding.PEM),
        client_cert=client.public_bytes(serialization.Encoding.PEM),
        client_key=_pem(client_key),
        client_pfx=pfx,
        ca_key=_pem(ca_key),
        server_key=_pem(server_key),
        db_password=secrets.token_urlsafe(24),
    ).to_bytes()


def client_part(blob: bytes) -> bytes:
    return QueueTls.from_bytes(blob).client_part().to_bytes()


def verify_signed(cert_pem: bytes, ca_pem: bytes) -> None:
    """Raise unless ``cert_pem`` was signed by ``ca_pem`` (used by tests and status)."""
    ca = x509.load_pem_x509_certificate(ca_pem)
    cert = x509.load_pem_x509_certificate(cert_pem)
    public = ca.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(
        cert.signature,
        cert.tbs_certificate_bytes,
        padding.PKCS1v15(),
        cert.signature_hash_algorithm or hashes.SHA256(),
    )


SECRET = declare(
    ExtraSecret(
        name=NAME,
        make=make,
        private_roles=frozenset({Role.HUB}),
        parts={Role.WORKER: client_part, Role.BOSS: client_part},
    )
)
"""The render queue's CA, server key, client certificate and database password, in the hub's
bundle; workers' and bosses' bundles carry the client part."""
