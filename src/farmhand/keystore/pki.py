"""The farm's certificate operations: create, add workers and bosses, renew, revoke, verify.

Each operation reads the store, does its work in memory, and hands one ``Change`` to the store,
so a failure at any point before the commit leaves the store exactly as it was.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from farmhand.errors import StoreError, UsageError
from farmhand.keystore import fs
from farmhand.keystore.bundle import Bundle, bundle_filename
from farmhand.keystore.plan import HUB_NAME, WORKER_PREFIX, FarmPlan, Role, validate_host_name
from farmhand.keystore.register import Entry, Register
from farmhand.keystore.store import (
    Change,
    KeyStore,
    build_bundle,
    is_store,
    prepare_new_store,
)
from farmhand.keystore.vault import BundlePassphrases, Vault
from farmhand.nebula import pem
from farmhand.nebula.cert import NebulaCertificate, create_ca, sign_host, verify, verify_ca

CLOCK_SKEW = 300  # backdate NotBefore so hosts with a slightly slow clock accept new certs
EXPIRY_WARNING_DAYS = 30
CA_EXPIRY_WARNING_DAYS = 180

Progress = Callable[[int], None]
"""Called with the number of certificates signed since the last call."""


def _no_progress(_: int) -> None:
    pass


@dataclass(frozen=True)
class HostSpec:
    name: str
    role: Role
    ip: IPv4Address


@dataclass(frozen=True)
class Result:
    """What an operation did, for the CLI's summary."""

    issued: tuple[Entry, ...]
    bundles: tuple[Path, ...]
    register: Register


def new_smb_password() -> str:
    """The farm's Samba password: generated, never a default (oomerfarm shipped one)."""
    return secrets.token_urlsafe(24)


def worker_name(number: int) -> str:
    return f"{WORKER_PREFIX}{number:04d}"


def worker_number(name: str) -> int | None:
    suffix = name[len(WORKER_PREFIX) :]
    numeric = suffix.isascii() and suffix.isdigit()  # isdigit alone takes other scripts' digits
    return int(suffix) if name.startswith(WORKER_PREFIX) and numeric else None


def _free_addresses(
    plan: FarmPlan, register: Register, role: Role, count: int
) -> list[IPv4Address]:
    """The lowest ``count`` never-issued addresses of the role's range."""
    rng = plan.addresses.range_for(role)
    used = register.used_addresses
    out: list[IPv4Address] = []
    address = int(rng.first)
    last = int(rng.last)
    while len(out) < count and address <= last:
        candidate = IPv4Address(address)
        if candidate not in used and candidate != plan.addresses.hub:
            out.append(candidate)
        address += 1
    if len(out) < count:
        free = len(out)
        raise UsageError(
            f"the {role.value} range {rng} of {plan.network} has room for {free} more "
            f"{role.value}{'s' if free != 1 else ''}, not {count}: choose a larger --network"
        )
    return out


def plan_workers(plan: FarmPlan, register: Register, count: int) -> list[HostSpec]:
    if count < 0:
        raise UsageError("the number of workers cannot be negative")
    numbers = [n for n in (worker_number(e.name) for e in register.entries) if n is not None]
    start = max(numbers, default=0) + 1
    addresses = _free_addresses(plan, register, Role.WORKER, count)
    return [HostSpec(worker_name(start + i), Role.WORKER, ip) for i, ip in enumerate(addresses)]


def plan_bosses(plan: FarmPlan, register: Register, names: Iterable[str]) -> list[HostSpec]:
    wanted = [validate_host_name(n) for n in names]
    taken = register.names
    for name in wanted:
        if name in taken or name == HUB_NAME or worker_number(name) is not None:
            raise UsageError(f"the name {name!r} is already taken (or reserved) in this farm")
    if len(set(wanted)) != len(wanted):
        raise UsageError("a boss name is given twice")
    addresses = _free_addresses(plan, register, Role.BOSS, len(wanted))
    return [HostSpec(n, Role.BOSS, ip) for n, ip in zip(wanted, addresses, strict=True)]


def _validity(ca: NebulaCertificate, plan: FarmPlan, now: int) -> tuple[int, int]:
    not_before = max(now - CLOCK_SKEW, ca.details.not_before)
    not_after = min(now + plan.cert_lifetime, ca.details.not_after - 1)
    if not_after <= now:
        raise StoreError("the farm's CA has expired: a new farm (CA) is needed")
    return not_before, not_after


def sign_hosts(
    ca: NebulaCertificate,
    ca_key: Ed25519PrivateKey,
    plan: FarmPlan,
    specs: list[HostSpec],
    now: int,
    progress: Progress = _no_progress,
    keys: dict[str, bytes] | None = None,
) -> tuple[dict[str, NebulaCertificate], dict[str, bytes]]:
    """Sign ``specs`` (with fresh keys unless ``keys`` has one). Returns certs and private keys."""
    not_before, not_after = _validity(ca, plan, now)
    certs: dict[str, NebulaCertificate] = {}
    private: dict[str, bytes] = {}
    pending = 0
    issuer = bytes.fromhex(ca.fingerprint)
    for spec in specs:
        if keys and spec.name in keys:
            private_raw = keys[spec.name]
            public_raw = pem.x25519_public_from_private(private_raw)
        else:
            private_raw, public_raw = pem.x25519_keypair()
        certs[spec.name] = sign_host(
            ca,
            ca_key,
            name=spec.name,
            ip=plan.overlay_interface(spec.ip),
            public_key=public_raw,
            not_before=not_before,
            not_after=not_after,
            groups=spec.role.groups,
            ca_fingerprint=issuer,
        )
        private[spec.name] = private_raw
        pending += 1
        if pending == 64:
            progress(pending)
            pending = 0
    if pending:
        progress(pending)
    return certs, private


def bundles_for(
    roles: Iterable[tuple[Role, str]],
    plan: FarmPlan,
    register: Register,
    ca_pem: bytes,
    vault: Vault,
    cert_pems: dict[str, bytes],
    now: int,
) -> list[Bundle]:
    return [
        build_bundle(role, plan, register, ca_pem, vault, cert_pems, now, boss=name)
        for role, name in roles
    ]


def rebuilt_bundles(
    store: KeyStore,
    roles: Iterable[tuple[Role, str]],
    register: Register,
    vault: Vault,
    fresh: dict[str, bytes],
    now: int,
) -> list[Bundle]:
    """The bundles of ``roles`` after a change: fresh certs from memory, the rest from disk."""
    cert_pems = _cert_pems(store, register, fresh)
    return bundles_for(roles, store.plan, register, store.ca_pem, vault, cert_pems, now)


def all_roles(register: Register) -> list[tuple[Role, str]]:
    roles: list[tuple[Role, str]] = [(Role.HUB, ""), (Role.WORKER, "")]
    roles += [(Role.BOSS, e.name) for e in register.by_role(Role.BOSS, live_only=True)]
    return roles


def _cert_pems(store: KeyStore, register: Register, fresh: dict[str, bytes]) -> dict[str, bytes]:
    """PEMs of every live certificate: freshly signed ones from memory, the rest from disk."""
    out = dict(fresh)
    for entry in register.entries:
        if not entry.revoked and entry.name not in out:
            out[entry.name] = store.cert_pem(entry.name)
    return out


def farm_ca(plan: FarmPlan, key: Ed25519PrivateKey, now: int, name: str) -> NebulaCertificate:
    """A CA for ``plan``: its lifetime, and able to sign only addresses inside its network."""
    return create_ca(
        name,
        key,
        not_before=now - CLOCK_SKEW,
        not_after=now + plan.ca_lifetime,
        ips=(plan.network,),
    )


def create_farm(
    root: Path,
    plan: FarmPlan,
    workers: int,
    bosses: list[str],
    passphrase: str,
    progress: Progress = _no_progress,
    now: int | None = None,
    bundle_passphrase: str | None = None,
) -> Result:
    """A new CA, the hub, ``workers`` workers and the named bosses, with every bundle.

    ``passphrase`` encrypts the vault; ``bundle_passphrase`` the bundles (by default the same)."""
    now = int(time.time()) if now is None else now
    register = Register()
    boss_specs = plan_bosses(plan, register, bosses)
    worker_specs = plan_workers(plan, register, workers)
    prepare_new_store(root)
    ca_key = Ed25519PrivateKey.generate()
    ca = farm_ca(plan, ca_key, now, f"{plan.name} farmhand CA")
    specs = [HostSpec(HUB_NAME, Role.HUB, plan.addresses.hub), *worker_specs, *boss_specs]
    certs, private = sign_hosts(ca, ca_key, plan, specs, now, progress)
    entries = tuple(Entry.for_certificate(certs[s.name], s.role) for s in specs)
    register = Register(entries)
    vault, _ = Vault(
        ca_key=ca_key,
        smb_password=new_smb_password(),
        host_keys=private,
        passphrases=BundlePassphrases(bundle_passphrase or passphrase),
    ).completed()
    cert_pems = {name: c.to_pem() for name, c in certs.items()}
    ca_pem = ca.to_pem()
    change = Change(
        root=root,
        passphrase=passphrase,
        bundle_passphrases=vault.bundle_passphrases(),
        plan=plan,
        register=register,
        ca_pem=ca_pem,
        new_certs=cert_pems,
        vault=vault,
        vault_mtime=now,
        bundles=bundles_for(all_roles(register), plan, register, ca_pem, vault, cert_pems, now),
    )
    with fs.locked(root):
        fs.recover(root)
        if is_store(root):
            raise StoreError(f"{root} became a key store while this one was being made")
        written = change.apply(create=True)
    return Result(issued=entries, bundles=tuple(written), register=register)


def add_workers(
    store: KeyStore,
    count: int,
    passphrase: str,
    progress: Progress = _no_progress,
    now: int | None = None,
) -> Result:
    if count < 1:
        raise UsageError("add at least one worker")
    return _add(store, Role.WORKER, count, [], passphrase, progress, now)


def add_boss(
    store: KeyStore,
    name: str,
    passphrase: str,
    now: int | None = None,
    own_passphrase: str | None = None,
) -> Result:
    """A new boss; ``own_passphrase`` gives its bundle a passphrase of its own."""
    return _add(store, Role.BOSS, 1, [name], passphrase, _no_progress, now, own_passphrase)


def _add(
    store: KeyStore,
    role: Role,
    count: int,
    names: list[str],
    passphrase: str,
    progress: Progress,
    now: int | None,
    own_passphrase: str | None = None,
) -> Result:
    now = int(time.time()) if now is None else now
    with store.changing() as current:
        if role is Role.WORKER:
            specs = plan_workers(current.plan, current.register, count)
        else:
            specs = plan_bosses(current.plan, current.register, names)
        vault, _ = current.unlock(passphrase).completed()
        certs, private = sign_hosts(current.ca, vault.ca_key, current.plan, specs, now, progress)
        new_entries = tuple(Entry.for_certificate(certs[s.name], s.role) for s in specs)
        register = current.register.with_entries(*new_entries)
        vault = vault.with_host_keys(private)
        if own_passphrase is not None:
            vault = with_boss_passphrase(vault, names[0], own_passphrase)
        fresh = {name: c.to_pem() for name, c in certs.items()}
        # Every bundle lists the farm's peers, so every bundle learns of new hosts.
        roles = all_roles(register)
        change = Change(
            root=current.root,
            passphrase=passphrase,
            bundle_passphrases=vault.bundle_passphrases(),
            register=register,
            new_certs=fresh,
            vault=vault,
            vault_mtime=now,
            bundles=rebuilt_bundles(current, roles, register, vault, fresh, now),
        )
        written = change.apply()
    return Result(issued=new_entries, bundles=tuple(written), register=register)


def expiring(register: Register, within_days: int, now: int) -> list[str]:
    horizon = now + within_days * 86400
    return [e.name for e in register.entries if not e.revoked and e.not_after <= horizon]


def renew(
    store: KeyStore,
    names: list[str],
    passphrase: str,
    *,
    new_key: bool = False,
    now: int | None = None,
) -> Result:
    """Re-sign certificates (same key unless ``new_key``, which also blocklists the old ones)."""
    now = int(time.time()) if now is None else now
    if not names:
        raise UsageError("nothing to renew")
    with store.changing() as current:
        entries = [live_entry(current.register, n) for n in dict.fromkeys(names)]
        vault, upgraded = current.unlock(passphrase).completed()
        specs = [HostSpec(e.name, e.role, e.ip) for e in entries]
        keep = None if new_key else {e.name: vault.host_key(e.name) for e in entries}
        certs, private = sign_hosts(current.ca, vault.ca_key, current.plan, specs, now, keys=keep)
        register = current.register
        for entry in entries:
            register = register.replaced(entry.renewed(certs[entry.name], block_old=new_key))
        vault = vault.with_host_keys(private)
        fresh = {name: c.to_pem() for name, c in certs.items()}
        # A new key blocklists the old certificate, and every host must learn that; new
        # farm-wide secrets and the peers' expiry dates go to every bundle too.
        roles = all_roles(register)
        change = Change(
            root=current.root,
            passphrase=passphrase,
            bundle_passphrases=vault.bundle_passphrases(),
            register=register,
            replaced_certs=fresh,
            vault=vault if new_key or upgraded else None,
            vault_mtime=now,
            bundles=rebuilt_bundles(current, roles, register, vault, fresh, now),
        )
        written = change.apply()
    renewed = tuple(e for e in register.entries if e.name in certs)
    return Result(issued=renewed, bundles=tuple(written), register=register)


def revoke(store: KeyStore, name: str, passphrase: str, now: int | None = None) -> Result:
    """Blocklist a certificate for good and rebuild every bundle without it."""
    now = int(time.time()) if now is None else now
    with store.changing() as current:
        entry = live_entry(current.register, name)
        check_revocable(entry)
        register = current.register.replaced(_revoked(entry, now))
        removed = [bundle_filename(Role.BOSS, name)] if entry.role is Role.BOSS else []
        written = _every_bundle(current, register, passphrase, now, removed).apply()
    return Result(issued=(), bundles=tuple(written), register=register)


def rebundle(store: KeyStore, passphrase: str, now: int | None = None) -> Result:
    """Rebuild every keybundle from the store as it is, e.g. after farm.toml was edited
    (artifact checksums, prices, idle settings travel to hosts inside the bundles)."""
    now = int(time.time()) if now is None else now
    with store.changing() as current:
        written = _every_bundle(current, current.register, passphrase, now).apply()
    return Result(issued=(), bundles=tuple(written), register=current.register)


def _every_bundle(
    current: KeyStore, register: Register, passphrase: str, now: int, removed: Sequence[str] = ()
) -> Change:
    """A change that rebuilds every role's bundle (and saves farm-wide secrets an older store
    lacked) with no new certificates."""
    vault, upgraded = current.unlock(passphrase).completed()
    return Change(
        root=current.root,
        passphrase=passphrase,
        bundle_passphrases=vault.bundle_passphrases(),
        register=register,
        vault=vault if upgraded else None,
        vault_mtime=now,
        bundles=rebuilt_bundles(current, all_roles(register), register, vault, {}, now),
        removed=list(removed),
    )


def with_boss_passphrase(vault: Vault, boss: str, secret: str) -> Vault:
    """``vault`` with ``boss``'s bundle on a passphrase of its own."""
    current = vault.bundle_passphrases()
    bosses = {**current.bosses, boss: secret}
    return replace(vault, passphrases=BundlePassphrases(current.shared, bosses))


def _revoked(entry: Entry, now: int) -> Entry:
    return replace(entry, revoked_at=now)


def check_revocable(entry: Entry) -> None:
    if entry.role is Role.HUB:
        raise UsageError(
            "the hub cannot be revoked; to replace a compromised hub key run "
            "'farmhand keys renew hub --new-key'"
        )


def live_entry(register: Register, name: str) -> Entry:
    entry = register.get(name)
    if entry is None:
        raise UsageError(f"no certificate named {name!r} in this farm (see 'farmhand keys list')")
    if entry.revoked:
        raise UsageError(f"{name} is revoked; revoked certificates cannot be renewed or revoked")
    return entry


@dataclass(frozen=True)
class Finding:
    """One result of ``verify_store``: level is 'ok', 'warning' or 'error'."""

    level: str
    subject: str
    message: str


def verify_store(store: KeyStore, now: int | None = None) -> list[Finding]:
    """Every certificate against the CA, the register and the plan, plus expiry warnings."""
    now = int(time.time()) if now is None else now
    findings: list[Finding] = []
    ca = store.ca
    try:
        verify_ca(ca)
        if ca.is_expired(now):
            findings.append(Finding("error", "ca", "the CA certificate has expired"))
        elif ca.details.not_after - now < CA_EXPIRY_WARNING_DAYS * 86400:
            days = (ca.details.not_after - now) // 86400
            findings.append(Finding("warning", "ca", f"the CA expires in {days} days"))
        else:
            findings.append(Finding("ok", "ca", "CA certificate is valid and self-signed"))
    except StoreError:
        raise
    except Exception as exc:
        findings.append(Finding("error", "ca", str(exc)))
    plan = store.plan
    blocklist = store.register.blocklist
    trusted = {c.fingerprint: c for c in store.cas}
    if len(trusted) > 1:
        findings.append(
            Finding("warning", "ca", "a CA rollover is under way: the farm trusts two CAs")
        )
    for entry in store.register.entries:
        if entry.revoked:
            continue
        findings.append(_verify_entry(store, entry, trusted, plan, blocklist, now))
    return findings


def _verify_entry(
    store: KeyStore,
    entry: Entry,
    trusted: dict[str, NebulaCertificate],
    plan: FarmPlan,
    blocklist: frozenset[str],
    now: int,
) -> Finding:
    try:
        cert = store.certificate(entry.name)
        issuer = trusted.get(cert.details.issuer.hex(), store.ca)  # unknown: verify says so
        verify(cert, issuer, now, blocklist)
    except Exception as exc:
        return Finding("error", entry.name, str(exc))
    problems = []
    if cert.fingerprint != entry.fingerprint:
        problems.append("certificate file does not match the register's fingerprint")
    if cert.name != entry.name:
        problems.append(f"certificate is named {cert.name!r}")
    if cert.ip is None or cert.ip.ip != entry.ip or cert.ip.network != plan.network:
        problems.append(f"certificate address {cert.ip} differs from the plan ({entry.ip})")
    if entry.ip not in plan.addresses.range_for(entry.role) and entry.ip != plan.addresses.hub:
        problems.append(f"address {entry.ip} is outside the {entry.role.value} range")
    if cert.details.groups != entry.role.groups:
        problems.append(f"groups {list(cert.details.groups)} are not the {entry.role.value} groups")
    if problems:
        return Finding("error", entry.name, "; ".join(problems))
    days_left = (cert.details.not_after - now) // 86400
    if days_left < EXPIRY_WARNING_DAYS:
        return Finding(
            "warning", entry.name, f"expires in {days_left} days: run 'farmhand keys renew'"
        )
    return Finding("ok", entry.name, f"valid, expires in {days_left} days")
