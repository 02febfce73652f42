"""Keybundles: what one role's hosts need, as a gzip tar inside age passphrase encryption.

Anyone can inspect one with standard tools (``age -d FILE | tar -tzv``). Layout::

    farm.json            role, farm plan, hosts, blocklist (no secrets)
    ca.crt               the farm's CA certificate(s)
    certs/NAME.crt       one per host of the role
    keys/NAME.key        the matching X25519 private keys (0600)
    smb.password         the farm's generated Samba password (0600)
    extras/NAME[.pub]    farm-wide secrets this role needs (see farm_secrets.py)
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any

from farmhand.errors import BundleError, FarmhandError, UsageError
from farmhand.keystore import age
from farmhand.keystore.farm_secrets import PREFIX as EXTRAS_PREFIX
from farmhand.keystore.farm_secrets import file_mode
from farmhand.keystore.plan import (
    FarmPlan,
    Role,
    validate_fingerprint,
    validate_group,
    validate_host_name,
)
from farmhand.nebula import pem
from farmhand.nebula.cert import NebulaCertificate, certificate_from_pem, certificates_from_pem

BUNDLE_FORMAT = 1
BUNDLE_KIND = "farmhand-keybundle"
METADATA = "farm.json"
SMB_PASSWORD = "smb.password"  # noqa: S105 - a file name


def bundle_filename(role: Role, name: str = "") -> str:
    """``hub.keybundle.age``, ``workers.keybundle.age`` or ``boss-NAME.keybundle.age``."""
    if role is Role.BOSS:
        return f"boss-{name}.keybundle.age"
    return "workers.keybundle.age" if role is Role.WORKER else "hub.keybundle.age"


@dataclass(frozen=True)
class BundleHost:
    name: str
    ip: IPv4Interface
    groups: tuple[str, ...]
    cert_pem: bytes
    key_pem: bytes = field(repr=False)

    @property
    def certificate(self) -> NebulaCertificate:
        return certificate_from_pem(self.cert_pem)


@dataclass(frozen=True)
class Peer:
    """Another live member of the farm, as every bundle lists them (no keys): the hub's lease
    table draws the worker pool from it, ``farmhand status`` the hosts to check."""

    name: str
    role: Role
    ip: IPv4Address
    not_after: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role.value,
            "ip": str(self.ip),
            "not_after": self.not_after,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Peer:
        return cls(
            name=validate_host_name(_text(data["name"])),
            role=Role(data["role"]),
            ip=IPv4Address(_text(data["ip"])),
            not_after=int(data["not_after"]),
        )


@dataclass(frozen=True)
class Bundle:
    """A decrypted keybundle, held in memory only."""

    role: Role
    plan: FarmPlan
    ca_pem: bytes
    hosts: tuple[BundleHost, ...]
    blocklist: frozenset[str]
    created: int
    smb_password: str = field(repr=False)
    peers: tuple[Peer, ...] = ()
    extras: dict[str, bytes] = field(default_factory=dict, repr=False)

    def peers_of(self, role: Role) -> tuple[Peer, ...]:
        return tuple(p for p in self.peers if p.role is role)

    def host(self, name: str) -> BundleHost:
        for host in self.hosts:
            if host.name == name:
                return host
        raise BundleError(f"the {self.role.value} bundle holds no certificate named {name!r}")

    def metadata(self) -> dict[str, Any]:
        return {
            "format": BUNDLE_FORMAT,
            "kind": BUNDLE_KIND,
            "role": self.role.value,
            "created": self.created,
            "plan": self.plan.to_dict(),
            "blocklist": sorted(self.blocklist),
            "hosts": [
                {"name": h.name, "ip": str(h.ip), "groups": list(h.groups)} for h in self.hosts
            ],
            "peers": [p.to_dict() for p in self.peers],
        }

    def to_tar(self) -> bytes:
        files: list[tuple[str, bytes, int]] = [
            (METADATA, json.dumps(self.metadata(), indent=1).encode() + b"\n", 0o644),
            ("ca.crt", self.ca_pem, 0o644),
        ]
        if self.smb_password:  # the bosses' share password: never in a workers bundle
            files.append((SMB_PASSWORD, self.smb_password.encode() + b"\n", 0o600))
        for host in self.hosts:
            files.append((f"certs/{host.name}.crt", host.cert_pem, 0o644))
            files.append((f"keys/{host.name}.key", host.key_pem, 0o600))
        for name, value in sorted(self.extras.items()):
            files.append((f"{EXTRAS_PREFIX}{name}", value, file_mode(name)))
        return pack(files, self.created)

    def encrypt(self, passphrase: str) -> bytes:
        return age.encrypt(self.to_tar(), passphrase)


def pack(files: list[tuple[str, bytes, int]], mtime: int) -> bytes:
    """A gzip tar of (name, content, mode) with neutral ownership."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content, mode in files:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = mode
            info.mtime = mtime
            info.uname = info.gname = "farmhand"
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=mtime)


def unpack(data: bytes, what: str) -> dict[str, bytes]:
    """Regular files of a gzip tar by name; anything else in it is refused."""
    try:
        raw = gzip.decompress(data)
        files: dict[str, bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for member in tar:
                if not member.isfile() or member.name.startswith("/") or ".." in member.name:
                    raise BundleError(f"{what} contains an unexpected entry {member.name!r}")
                extracted = tar.extractfile(member)
                if extracted is None:  # pragma: no cover - isfile() guarantees content
                    raise BundleError(f"{what} has an unreadable entry {member.name!r}")
                files[member.name] = extracted.read()
    except (OSError, EOFError, tarfile.TarError, gzip.BadGzipFile):
        raise BundleError(f"{what} decrypted, but is not a farmhand keybundle") from None
    return files


def bundle_from_tar(data: bytes, what: str) -> Bundle:
    """Parse and check a decrypted bundle: every cert signed by its CA and matching its key."""
    files = unpack(data, what)
    try:
        meta = json.loads(files[METADATA])
        if meta.get("kind") != BUNDLE_KIND:
            raise KeyError("kind")
        if meta.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{what} has unsupported bundle format {meta.get('format')!r}")
        role = Role(meta["role"])
        try:
            plan = FarmPlan.from_dict(meta["plan"])
        except UsageError as exc:
            raise BundleError(
                f"{what}: its farm plan is refused: {exc} (fix farm.toml, then run "
                "'farmhand keys rebundle')"
            ) from None
        ca_pem = files["ca.crt"]
        hosts = []
        for item in meta["hosts"]:
            # Names become file names and Nebula config: checked whole, as the store does.
            name = validate_host_name(_text(item["name"]))
            hosts.append(
                BundleHost(
                    name=name,
                    ip=IPv4Interface(_text(item["ip"])),
                    groups=tuple(validate_group(_text(g)) for g in item["groups"]),
                    cert_pem=files[f"certs/{name}.crt"],
                    key_pem=files[f"keys/{name}.key"],
                )
            )
        bundle = Bundle(
            role=role,
            plan=plan,
            ca_pem=ca_pem,
            hosts=tuple(hosts),
            blocklist=frozenset(validate_fingerprint(_text(f)) for f in meta.get("blocklist", ())),
            created=int(meta["created"]),
            smb_password=files.get(SMB_PASSWORD, b"").decode().strip(),
            peers=tuple(Peer.from_dict(p) for p in meta.get("peers", ())),
            extras={
                name[len(EXTRAS_PREFIX) :]: content
                for name, content in files.items()
                if name.startswith(EXTRAS_PREFIX)
            },
        )
    except BundleError:
        raise
    except (KeyError, ValueError, TypeError, UnicodeDecodeError, UsageError) as exc:
        raise BundleError(f"{what} decrypted, but is not a farmhand keybundle ({exc})") from None
    check_bundle(bundle, what)
    return bundle


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, not {value!r}")
    return value


def check_bundle(bundle: Bundle, what: str) -> None:
    try:
        cas = certificates_from_pem(bundle.ca_pem)
        by_fingerprint = {ca.fingerprint: ca for ca in cas}
        for host in bundle.hosts:
            cert = host.certificate
            ca = by_fingerprint.get(cert.details.issuer.hex())
            if ca is None or not cert.check_signature(ca.details.public_key):
                raise BundleError(f"{what}: certificate {host.name} is not signed by its CA")
            private = pem.x25519_private_from_pem(host.key_pem)
            if pem.x25519_public_from_private(private) != cert.details.public_key:
                raise BundleError(f"{what}: key {host.name} does not match its certificate")
            if cert.name != host.name or cert.ip != host.ip:
                raise BundleError(f"{what}: certificate {host.name} does not match farm.json")
    except BundleError:
        raise
    except FarmhandError as exc:
        raise BundleError(f"{what}: {exc}") from None


def open_bundle(path: Path, passphrase: str) -> Bundle:
    """Read, decrypt and check a keybundle file, in memory only."""
    what = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"no such keybundle: {path}") from None
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror}") from None
    return bundle_from_tar(age.decrypt(data, passphrase, what), what)
