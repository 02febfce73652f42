"""Farm-wide secrets beyond Nebula keys, made once and carried by the vault and the bundles.

Each feature that needs a farm-wide secret declares it as an :class:`ExtraSecret`: its name,
how to make it, which roles get the private part and which only a derived public part. The key
store knows no feature: the leases' keys are declared here (they need nothing but
``cryptography``), and higher layers add theirs with :func:`declare` when they are imported
(farmhand/queue/tls.py declares the render queue's TLS material; ``farmhand.cli`` imports the
queue, so every store farmhand makes or changes has them all). ``keygen`` makes every declared
secret; any later change to an older store makes the ones it lacks, so stores upgrade in place.

In the vault and in bundles they live as ``extras/NAME`` (private, 0600) and
``extras/NAME.pub`` (derived public part, 0644).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from farmhand.keystore.plan import Role

PREFIX = "extras/"
PUBLIC_SUFFIX = ".pub"


@dataclass(frozen=True)
class ExtraSecret:
    """One farm-wide secret: ``make`` creates it; ``public`` derives what others may see."""

    name: str
    make: Callable[[], bytes]
    private_roles: frozenset[Role]
    public_roles: frozenset[Role] = frozenset()
    public: Callable[[bytes], bytes] | None = None
    parts: Mapping[Role, Callable[[bytes], bytes]] = field(
        default_factory=dict, hash=False, compare=False
    )
    """Private parts derived for other roles (a client key), carried as ``NAME.ROLE``, 0600."""


def _openssh_private(key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )


def _openssh_public(comment: str) -> Callable[[bytes], bytes]:
    def public(private: bytes) -> bytes:
        key = serialization.load_ssh_private_key(private, password=None)
        line = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        return line + f" {comment}\n".encode()

    return public


LEASE_CLAIM_KEY = ExtraSecret(
    name="lease-claim-key",
    make=lambda: _openssh_private(ed25519.Ed25519PrivateKey.generate()),
    private_roles=frozenset({Role.WORKER}),
    public_roles=frozenset({Role.HUB}),
    public=_openssh_public("farmhand-lease-claim"),
)
"""Workers claim a certificate with it; the hub's sshd accepts it only for the lease command."""

LEASE_HOST_KEY = ExtraSecret(
    name="lease-host-key",
    make=lambda: _openssh_private(ec.generate_private_key(ec.SECP384R1())),
    private_roles=frozenset({Role.HUB}),
    public_roles=frozenset({Role.WORKER, Role.BOSS}),  # bosses pin it too (job service)
    public=_openssh_public("farmhand-hub"),
)
"""An extra ECDSA P-384 host key for the hub's sshd that workers pin (no trust on first use);
no distribution makes a P-384 host key, so the keys users already know stay as they are."""


EXTRA_SECRETS: tuple[ExtraSecret, ...] = (LEASE_CLAIM_KEY, LEASE_HOST_KEY)
"""Every declared farm-wide secret (features add theirs with :func:`declare`)."""


FEATURE_MODULES = (
    "farmhand.queue.tls",
    "farmhand.queue.slurm",
    "farmhand.model.smb",
    "farmhand.keystore.job_keys",
)
"""Modules that declare farm-wide secrets of their own, loaded by name when the secrets are
first needed: the key store depends on no feature, yet never makes or rebuilds a bundle that
lacks one of them (a library caller need not remember to import the queue first)."""


def all_declared() -> tuple[ExtraSecret, ...]:
    """Every farm-wide secret, the features' included."""
    for module in FEATURE_MODULES:
        importlib.import_module(module)
    return EXTRA_SECRETS


def declare(spec: ExtraSecret) -> ExtraSecret:
    """Add a feature's farm-wide secret to :data:`EXTRA_SECRETS` (once per name); returns it."""
    global EXTRA_SECRETS  # the registry higher layers fill when they are imported
    if all(known.name != spec.name for known in EXTRA_SECRETS):
        EXTRA_SECRETS = (*EXTRA_SECRETS, spec)
    return spec


def completed(
    extras: Mapping[str, bytes], declared: tuple[ExtraSecret, ...] | None = None
) -> dict[str, bytes]:
    """``extras`` plus a freshly made value for every declared secret it lacks."""
    out = dict(extras)
    for spec in all_declared() if declared is None else declared:
        if spec.name not in out:
            out[spec.name] = spec.make()
    return out


def for_role(
    role: Role, extras: Mapping[str, bytes], declared: tuple[ExtraSecret, ...] | None = None
) -> dict[str, bytes]:
    """What a ``role`` bundle carries: private parts it needs, public parts of the others."""
    out: dict[str, bytes] = {}
    for spec in all_declared() if declared is None else declared:
        value = extras.get(spec.name)
        if value is None:
            continue
        if role in spec.private_roles:
            out[spec.name] = value
        if role in spec.public_roles and spec.public is not None:
            out[spec.name + PUBLIC_SUFFIX] = spec.public(value)
        if role in spec.parts:
            out[f"{spec.name}.{role.value}"] = spec.parts[role](value)
    return out


def file_mode(name: str) -> int:
    return 0o644 if name.endswith(PUBLIC_SUFFIX) else 0o600
