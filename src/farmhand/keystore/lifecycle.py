"""Keys for the life of a farm: rotate its secrets, change passphrases, reissue the workers.

Each is one ``Change``: the store is byte-identical until the commit, and after it every
bundle that carries what changed is rebuilt, so the next deploys bring it to the hosts.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from farmhand.errors import UsageError
from farmhand.keystore import farm_secrets
from farmhand.keystore.pki import (
    Result,
    all_roles,
    new_smb_password,
    rebuilt_bundles,
    renew,
)
from farmhand.keystore.plan import Role
from farmhand.keystore.store import Change, KeyStore
from farmhand.keystore.vault import BundlePassphrases, Vault

SMB_PASSWORD = "smb-password"  # noqa: S105 - the secret's name
"""The bosses' Samba password (the vault keeps it apart from the declared secrets)."""

VAULT = "vault"
BUNDLES = "bundles"


def rotatable() -> tuple[str, ...]:
    """Every farm-wide secret ``rotate`` knows, by the name it takes."""
    return (SMB_PASSWORD, *(spec.name for spec in farm_secrets.all_declared()))


def check_rotatable(names: Sequence[str]) -> list[str]:
    """``names`` without repeats; a name that is no secret is a UsageError."""
    known = rotatable()
    for name in names:
        if name not in known:
            raise UsageError(f"no farm-wide secret named {name!r}: choose from {', '.join(known)}")
    if not names:
        raise UsageError(f"name the secrets to rotate ({', '.join(known)}) or give --all")
    return list(dict.fromkeys(names))


def _rotated(vault: Vault, names: Sequence[str]) -> Vault:
    specs = {spec.name: spec for spec in farm_secrets.all_declared()}
    extras = dict(vault.extras)
    smb_password = vault.smb_password
    for name in names:
        if name == SMB_PASSWORD:
            smb_password = new_smb_password()
        else:
            extras[name] = specs[name].make()
    return replace(vault, smb_password=smb_password, extras=extras)


def rotate(
    store: KeyStore, names: Sequence[str], passphrase: str, now: int | None = None
) -> Result:
    """A new value for each named secret; every bundle is rebuilt to carry it."""
    now = int(time.time()) if now is None else now
    wanted = check_rotatable(names)
    with store.changing() as current:
        vault, _ = current.unlock(passphrase).completed()
        vault = _rotated(vault, wanted)
        change = Change(
            root=current.root,
            passphrase=passphrase,
            bundle_passphrases=vault.bundle_passphrases(),
            register=current.register,
            vault=vault,
            vault_mtime=now,
            bundles=rebuilt_bundles(
                current, all_roles(current.register), current.register, vault, {}, now
            ),
        )
        written = change.apply()
    return Result(issued=(), bundles=tuple(written), register=current.register)


def reissue_workers(store: KeyStore, passphrase: str, now: int | None = None) -> Result:
    """New keys and certificates for the whole worker pool, same names and addresses; every
    old worker fingerprint goes on the blocklist, so an old worker image cannot join."""
    names = [e.name for e in store.register.by_role(Role.WORKER, live_only=True)]
    if not names:
        raise UsageError("this farm has no live worker certificates to reissue")
    return renew(store, names, passphrase, new_key=True, now=now)


def check_passphrase_target(store: KeyStore, which: str) -> None:
    """``which`` is ``vault``, ``bundles`` or the name of a live boss."""
    if which in (VAULT, BUNDLES):
        return
    entry = store.register.get(which)
    if entry is None or entry.role is not Role.BOSS:
        raise UsageError(
            f"{which!r} is not 'vault', 'bundles' or a boss of this farm (see 'farmhand keys list')"
        )
    if entry.revoked:
        raise UsageError(f"{which} is revoked: it has no keybundle any more")


@dataclass(frozen=True)
class PassphraseChange:
    result: Result
    opened_by_vault_passphrase: tuple[str, ...]
    """``bundles`` and boss names whose bundle the vault's passphrase opens afterwards: whoever
    is given one of those could open the vault too."""


def change_passphrase(
    store: KeyStore, which: str, passphrase: str, new: str, now: int | None = None
) -> PassphraseChange:
    """Give the vault, the shared bundles or one boss's bundle the passphrase ``new``.

    ``passphrase`` is the vault's, as for every change. Only the files ``new`` encrypts are
    rewritten."""
    now = int(time.time()) if now is None else now
    with store.changing() as current:
        check_passphrase_target(current, which)
        vault, _ = current.unlock(passphrase).completed()
        old = vault.bundle_passphrases()
        vault_passphrase = new if which == VAULT else passphrase
        if which == VAULT:
            chosen, roles = old, []
        elif which == BUNDLES:
            chosen = BundlePassphrases(new, old.bosses)
            roles = [(r, n) for r, n in all_roles(current.register) if n not in old.bosses]
        else:
            chosen = BundlePassphrases(old.shared, {**old.bosses, which: new})
            roles = [(Role.BOSS, which)]
        vault = replace(vault, passphrases=chosen)
        change = Change(
            root=current.root,
            passphrase=vault_passphrase,
            bundle_passphrases=chosen,
            vault=vault,
            vault_mtime=now,
            bundles=rebuilt_bundles(current, roles, current.register, vault, {}, now),
        )
        written = change.apply()
    shared = (BUNDLES,) if chosen.shared == vault_passphrase else ()
    bosses = tuple(n for n, secret in chosen.bosses.items() if secret == vault_passphrase)
    return PassphraseChange(
        Result(issued=(), bundles=tuple(written), register=current.register), shared + bosses
    )
