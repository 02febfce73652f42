"""The register: every certificate ever issued, so no address, name or key is reused or lost."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from typing import Any

from farmhand.errors import StoreError, UsageError
from farmhand.keystore.plan import Role, validate_fingerprint, validate_group, validate_host_name
from farmhand.nebula.cert import NebulaCertificate

REGISTER_FORMAT = 1


@dataclass(frozen=True)
class Entry:
    """One issued identity. Renewal keeps the entry and remembers the old fingerprints."""

    name: str
    role: Role
    ip: IPv4Address
    groups: tuple[str, ...]
    fingerprint: str
    not_before: int
    not_after: int
    revoked_at: int | None = None
    previous_fingerprints: tuple[str, ...] = ()
    blocked_fingerprints: tuple[str, ...] = ()

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @classmethod
    def for_certificate(cls, cert: NebulaCertificate, role: Role) -> Entry:
        if cert.ip is None:
            raise StoreError(f"certificate {cert.name} has no overlay address")
        return cls(
            name=cert.name,
            role=role,
            ip=cert.ip.ip,
            groups=cert.details.groups,
            fingerprint=cert.fingerprint,
            not_before=cert.details.not_before,
            not_after=cert.details.not_after,
        )

    def renewed(self, cert: NebulaCertificate, *, block_old: bool) -> Entry:
        """The entry once ``cert`` replaces its certificate; ``block_old`` when the key changed."""
        return replace(
            self,
            fingerprint=cert.fingerprint,
            not_before=cert.details.not_before,
            not_after=cert.details.not_after,
            previous_fingerprints=(*self.previous_fingerprints, self.fingerprint),
            blocked_fingerprints=(
                (*self.blocked_fingerprints, *self.previous_fingerprints, self.fingerprint)
                if block_old
                else self.blocked_fingerprints
            ),
        )

    @property
    def blocklisted(self) -> frozenset[str]:
        """Fingerprints no host may accept: all of a revoked entry's, and any retired keys'."""
        if self.revoked:
            return frozenset((self.fingerprint, *self.previous_fingerprints))
        return frozenset(self.blocked_fingerprints)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role.value,
            "ip": str(self.ip),
            "groups": list(self.groups),
            "fingerprint": self.fingerprint,
            "not_before": self.not_before,
            "not_after": self.not_after,
            "revoked_at": self.revoked_at,
            "previous_fingerprints": list(self.previous_fingerprints),
            "blocked_fingerprints": list(self.blocked_fingerprints),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Entry:
        """An entry as register.json holds it, every identifier checked whole (a name such as
        'bob\\n' would become a file name and a config Nebula cannot load)."""
        return cls(
            name=validate_host_name(_text(data["name"])),
            role=Role(data["role"]),
            ip=IPv4Address(_text(data["ip"])),
            groups=tuple(validate_group(_text(g)) for g in data["groups"]),
            fingerprint=validate_fingerprint(_text(data["fingerprint"])),
            not_before=int(data["not_before"]),
            not_after=int(data["not_after"]),
            revoked_at=None if data.get("revoked_at") is None else int(data["revoked_at"]),
            previous_fingerprints=_fingerprints(data.get("previous_fingerprints", [])),
            blocked_fingerprints=_fingerprints(data.get("blocked_fingerprints", [])),
        )


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, not {value!r}")
    return value


def _fingerprints(values: Any) -> tuple[str, ...]:
    if not isinstance(values, list):
        raise TypeError(f"expected a list of fingerprints, not {values!r}")
    return tuple(validate_fingerprint(_text(v)) for v in values)


@dataclass(frozen=True)
class Register:
    """All entries in issue order; lookups by name and the derived blocklist."""

    entries: tuple[Entry, ...] = ()

    def get(self, name: str) -> Entry | None:
        for entry in self.entries:
            if entry.name == name:
                return entry
        return None

    def by_role(self, role: Role, *, live_only: bool = False) -> list[Entry]:
        return [e for e in self.entries if e.role is role and not (live_only and e.revoked)]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(e.name for e in self.entries)

    @property
    def used_addresses(self) -> frozenset[IPv4Address]:
        """Every address ever issued, revoked ones included: addresses are never reused."""
        return frozenset(e.ip for e in self.entries)

    @property
    def blocklist(self) -> frozenset[str]:
        out: set[str] = set()
        for entry in self.entries:
            out |= entry.blocklisted
        return frozenset(out)

    def with_entries(self, *new: Entry) -> Register:
        return Register((*self.entries, *new))

    def replaced(self, entry: Entry) -> Register:
        return Register(tuple(entry if e.name == entry.name else e for e in self.entries))

    def to_json(self) -> str:
        data = {"format": REGISTER_FORMAT, "certificates": [e.to_dict() for e in self.entries]}
        return json.dumps(data, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "register.json") -> Register:
        try:
            data = json.loads(text)
            if data.get("format") != REGISTER_FORMAT:
                raise StoreError(f"{source} has unsupported format {data.get('format')!r}")
            entries = tuple(Entry.from_dict(item) for item in data["certificates"])
        except (ValueError, KeyError, TypeError, AttributeError, UsageError) as exc:
            raise StoreError(f"{source} is damaged: {exc}") from None
        names = [e.name for e in entries]
        if len(set(names)) != len(names):
            raise StoreError(f"{source} is damaged: a name appears twice")
        return cls(entries)
