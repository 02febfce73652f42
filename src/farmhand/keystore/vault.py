"""The store's private half: the CA key and every host key, in one age file (``secrets.age``).

Nothing private ever sits on the desktop in clear. Bundles are rebuilt from the vault, so a
renewal, a new worker or a revocation never loses or regenerates a key it did not mean to.

The vault also keeps the passphrases the keybundles are encrypted with. So a change needs only
the vault's own passphrase, and the person a bundle is given to never learns the one that opens
the CA key. A vault older than this has none; its bundles use the vault's passphrase.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from farmhand.errors import BundleError, PassphraseError, StoreError
from farmhand.keystore import age
from farmhand.keystore.bundle import pack, unpack
from farmhand.keystore.farm_secrets import PREFIX as EXTRAS_PREFIX
from farmhand.keystore.farm_secrets import completed as completed_extras
from farmhand.keystore.plan import Role
from farmhand.nebula import pem

VAULT_FILE = "secrets.age"
_CA_KEY = "ca.key"
_HOST_PREFIX = "keys/"
_SMB_PASSWORD = "smb.password"  # noqa: S105 - a file name
_SHARED_PASSPHRASE = "passphrases/bundles"  # noqa: S105 - a file name
_BOSS_PASSPHRASE_PREFIX = "passphrases/boss/"  # noqa: S105 - a folder name


@dataclass(frozen=True)
class BundlePassphrases:
    """Which passphrase encrypts which keybundle."""

    shared: str = field(repr=False)
    """The hub's, the workers' and every boss bundle's that has none of its own."""
    bosses: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Boss bundles with a passphrase of their own, by boss name."""

    def for_bundle(self, role: Role, name: str = "") -> str:
        if role is Role.BOSS and name in self.bosses:
            return self.bosses[name]
        return self.shared


@dataclass(frozen=True)
class Vault:
    ca_key: Ed25519PrivateKey = field(repr=False)
    smb_password: str = field(repr=False)
    host_keys: dict[str, bytes] = field(default_factory=dict, repr=False)
    extras: dict[str, bytes] = field(default_factory=dict, repr=False)
    passphrases: BundlePassphrases | None = field(default=None, repr=False)
    """None only before a new store's are chosen; a loaded vault always has them."""

    def host_key(self, name: str) -> bytes:
        try:
            return self.host_keys[name]
        except KeyError:
            raise StoreError(f"the key store has no private key for {name}") from None

    def with_host_keys(self, new: dict[str, bytes]) -> Vault:
        return replace(self, host_keys={**self.host_keys, **new})

    def completed(self) -> tuple[Vault, bool]:
        """This vault with every declared farm-wide secret; True when some had to be made."""
        extras = completed_extras(self.extras)
        if extras == self.extras:
            return self, False
        return replace(self, extras=extras), True

    def to_tar(self, mtime: int) -> bytes:
        files = [
            (_CA_KEY, pem.ed25519_private_to_pem(self.ca_key), 0o600),
            (_SMB_PASSWORD, self.smb_password.encode() + b"\n", 0o600),
        ]
        files += [
            (f"{_HOST_PREFIX}{name}.key", pem.x25519_private_to_pem(raw), 0o600)
            for name, raw in self.host_keys.items()
        ]
        files += [(f"{EXTRAS_PREFIX}{name}", value, 0o600) for name, value in self.extras.items()]
        if self.passphrases is None:
            raise ValueError("a vault is saved only with its bundles' passphrases")
        files.append((_SHARED_PASSPHRASE, self.passphrases.shared.encode(), 0o600))
        files += [
            (f"{_BOSS_PASSPHRASE_PREFIX}{name}", secret.encode(), 0o600)
            for name, secret in self.passphrases.bosses.items()
        ]
        return pack(files, mtime)

    def bundle_passphrases(self) -> BundlePassphrases:
        if self.passphrases is None:
            raise ValueError("this vault's bundle passphrases were never chosen")
        return self.passphrases


def decrypt_vault(data: bytes, passphrase: str) -> Vault:
    """Unlock the vault; a wrong passphrase is a PassphraseError, damage a StoreError."""
    try:
        plain = age.decrypt(data, passphrase, VAULT_FILE)
    except BundleError as exc:
        if str(exc).startswith("wrong passphrase"):
            raise PassphraseError("wrong passphrase for this key store") from None
        raise StoreError(str(exc)) from None
    try:
        files = unpack(plain, VAULT_FILE)
        ca_key = pem.ed25519_private_from_pem(files[_CA_KEY])
        smb_password = files[_SMB_PASSWORD].decode().strip()
        host_keys = {
            name[len(_HOST_PREFIX) : -len(".key")]: pem.x25519_private_from_pem(content)
            for name, content in files.items()
            if name.startswith(_HOST_PREFIX) and name.endswith(".key")
        }
        extras = {
            name[len(EXTRAS_PREFIX) :]: content
            for name, content in files.items()
            if name.startswith(EXTRAS_PREFIX)
        }
        # An older vault keeps no bundle passphrases: its bundles were made with its own.
        shared = files[_SHARED_PASSPHRASE].decode() if _SHARED_PASSPHRASE in files else passphrase
        bosses = {
            name[len(_BOSS_PASSPHRASE_PREFIX) :]: content.decode()
            for name, content in files.items()
            if name.startswith(_BOSS_PASSPHRASE_PREFIX)
        }
    except (KeyError, BundleError, UnicodeDecodeError) as exc:
        raise StoreError(f"{VAULT_FILE} is damaged: {exc}") from None
    return Vault(
        ca_key=ca_key,
        smb_password=smb_password,
        host_keys=host_keys,
        extras=extras,
        passphrases=BundlePassphrases(shared, bosses),
    )
