"""Roll the farm to a new CA without an outage, in three steps with a deploy after each.

1. ``begin``: a new CA is made and trusted next to the old one (Nebula accepts several CAs in
   ``pki.ca``); the new one signs from now on. Deployed, every host trusts both.
2. ``reissue``: every live certificate is signed again by the new CA, same key. Deployed host
   by host: a host still on the old certificate and one on the new trust each other.
3. ``finish``: the old CA is dropped, refused while any live certificate is still its. Deployed,
   nothing the old CA signed is trusted any more.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timezone

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from farmhand.errors import UsageError
from farmhand.keystore.pki import (
    Result,
    all_roles,
    bundles_for,
    farm_ca,
    renew,
)
from farmhand.keystore.store import Change, KeyStore
from farmhand.keystore.vault import Vault


def in_progress(store: KeyStore) -> bool:
    return len(store.cas) > 1


def on_old_ca(store: KeyStore) -> list[str]:
    """Live certificates the signing CA did not sign (still on the old one)."""
    signing = store.ca.fingerprint
    return [
        e.name
        for e in store.register.entries
        if not e.revoked and store.certificate(e.name).details.issuer.hex() != signing
    ]


def begin(store: KeyStore, passphrase: str, now: int | None = None) -> Result:
    """Trust a new CA next to the old one; the new one signs from now on."""
    now = int(time.time()) if now is None else now
    with store.changing() as current:
        if in_progress(current):
            raise UsageError(
                "a CA rollover is already under way: run 'farmhand keys ca-rollover reissue', "
                "then 'finish'"
            )
        vault, _ = current.unlock(passphrase).completed()
        plan = current.plan
        year = datetime.fromtimestamp(now, tz=timezone.utc).year
        new_key = Ed25519PrivateKey.generate()
        new_ca = farm_ca(plan, new_key, now, f"{plan.name} farmhand CA {year}")
        trusted = current.ca_pem + new_ca.to_pem()
        return _apply(
            current, passphrase, trusted, replace(vault, ca_key=new_key), now, new_key=True
        )


def reissue(store: KeyStore, passphrase: str, now: int | None = None) -> Result:
    """Sign every live certificate still on the old CA again, by the new one (same keys)."""
    if not in_progress(store):
        raise UsageError(
            "no CA rollover is under way: start one with 'farmhand keys ca-rollover begin'"
        )
    names = on_old_ca(store)
    if not names:
        raise UsageError(
            "every live certificate is already signed by the new CA: "
            "run 'farmhand keys ca-rollover finish'"
        )
    return renew(store, names, passphrase, now=now)


def finish(store: KeyStore, passphrase: str, now: int | None = None) -> Result:
    """Trust only the new CA, once no live certificate is the old one's."""
    now = int(time.time()) if now is None else now
    with store.changing() as current:
        if not in_progress(current):
            raise UsageError("no CA rollover is under way: there is nothing to finish")
        left = on_old_ca(current)
        if left:
            raise UsageError(
                f"{len(left)} live certificates are still the old CA's ({', '.join(left[:3])}"
                f"{', ...' if len(left) > 3 else ''}): run 'farmhand keys ca-rollover reissue'"
            )
        vault, _ = current.unlock(passphrase).completed()
        return _apply(current, passphrase, current.ca.to_pem(), vault, now, new_key=False)


def _apply(
    current: KeyStore, passphrase: str, ca_pem: bytes, vault: Vault, now: int, *, new_key: bool
) -> Result:
    """ca.crt becomes ``ca_pem`` and every bundle carries it (the vault is rewritten when it
    holds a new CA key)."""
    cert_pems = {
        e.name: current.cert_pem(e.name) for e in current.register.entries if not e.revoked
    }
    roles = all_roles(current.register)
    change = Change(
        root=current.root,
        passphrase=passphrase,
        bundle_passphrases=vault.bundle_passphrases(),
        ca_pem=ca_pem,
        replace_ca=True,
        vault=vault if new_key else None,
        vault_mtime=now,
        bundles=bundles_for(roles, current.plan, current.register, ca_pem, vault, cert_pems, now),
    )
    written = change.apply()
    return Result(issued=(), bundles=tuple(written), register=current.register)
