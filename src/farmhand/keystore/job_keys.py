"""Per-boss job keys: how a boss reaches the hub's job service (onhost/jobs.py) and how
``farmhand keys revoke BOSS`` ends that.

Each boss gets an ed25519 SSH key of its own, derived from one farm-wide seed kept only in the
vault (``jobs-key-seed``, carried by no bundle) and the boss's name, so a boss's key never
changes across rebundles and the store keeps nothing per boss. The key store never reuses a
name, so a derived key never comes back for another boss.

- a boss bundle carries its own key (``extras/jobs-key``, 0600) and the hub's pinned lease
  host key (``extras/lease-host-key.pub``) to know the hub by;
- the hub bundle carries the public keys of the live bosses only (``extras/jobs-bosses.pub``,
  ``NAME KEY`` a line), from which the hub's ``farmhand-jobs`` authorized_keys is made: one
  forced-command line per boss, naming the boss. A revoked boss is left out at the next
  rebundle (``keys revoke`` rebuilds every bundle), so once the hub is deployed again its
  key opens nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from farmhand.keystore.farm_secrets import ExtraSecret, declare
from farmhand.keystore.plan import Role
from farmhand.keystore.register import Register

JOB_KEY = "jobs-key"
"""A boss bundle's own job key (private, OpenSSH format)."""
BOSS_KEYS = "jobs-bosses.pub"
"""The hub bundle's list of live bosses' public job keys."""

JOBS_KEY_SEED = declare(
    ExtraSecret(
        name="jobs-key-seed",
        make=lambda: secrets.token_bytes(32),
        private_roles=frozenset(),
    )
)
"""The seed of every boss's job key: in the vault only."""


def _private(seed: bytes, boss: str) -> ed25519.Ed25519PrivateKey:
    info = b"farmhand jobs key 1 " + boss.encode()
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(seed)
    return ed25519.Ed25519PrivateKey.from_private_bytes(raw)


def boss_private_key(seed: bytes, boss: str) -> bytes:
    """The boss's job key, OpenSSH private format (what ssh -i reads)."""
    return _private(seed, boss).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )


def boss_public_key(seed: bytes, boss: str) -> str:
    """``ssh-ed25519 AAAA… farmhand-jobs-BOSS``."""
    line = (
        _private(seed, boss)
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    return f"{line.decode()} farmhand-jobs-{boss}"


def bundle_extras(
    role: Role, boss: str, register: Register, vault_extras: Mapping[str, bytes]
) -> dict[str, bytes]:
    """What a ``role`` bundle carries for the job service (nothing for workers, or when the
    vault has no seed yet: an older store gets one at its next change)."""
    seed = vault_extras.get(JOBS_KEY_SEED.name)
    if seed is None:
        return {}
    if role is Role.BOSS and boss:
        return {JOB_KEY: boss_private_key(seed, boss)}
    if role is Role.HUB:
        lines = [
            f"{e.name} {boss_public_key(seed, e.name)}\n"
            for e in register.by_role(Role.BOSS, live_only=True)
        ]
        return {BOSS_KEYS: "".join(lines).encode()}
    return {}


def parse_boss_keys(data: bytes) -> list[tuple[str, str]]:
    """(boss, public key line) from a hub bundle's ``jobs-bosses.pub``."""
    out = []
    for line in data.decode().splitlines():
        name, _, key = line.strip().partition(" ")
        if name and key:
            out.append((name, key))
    return out
