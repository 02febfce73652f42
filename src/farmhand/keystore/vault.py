"""The store's private half: the CA key and every host key, in one age file (``secrets.age``).

Nothing private ever sits on the desktop in clear. Bundles are rebuilt from the vault, so a
renewal, a new worker or a revocation never loses or regenerates a key it did not mean to.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from farmhand.errors import BundleError, PassphraseError, StoreError
from farmhand.keystore import age
from farmhand.keystore.bundle import pack, unpack
from farmhand.keystore.farm_secrets import PREFIX as EXTRAS_PREFIX
from farmhand.keystore.farm_secrets import completed as completed_extras
from farmhand.nebula import pem

VAULT_FILE = "secrets.age"
_CA_KEY = "ca.key"
_HOST_PREFIX = "keys/"
_SMB_PASSWORD = "smb.password"  # noqa: S105 - a file name


@dataclass(frozen=True)
class Vault:
    ca_key: Ed25519PrivateKey = field(repr=False)
    smb_password: str = field(repr=False)
    host_keys: dict[str, bytes] = field(default_factory=dict, repr=False)
    extras: dict[str, bytes] = field(default_factory=dict, repr=False)

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
        return pack(files, mtime)


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
    except (KeyError, BundleError, UnicodeDecodeError) as exc:
        raise StoreError(f"{VAULT_FILE} is damaged: {exc}") from None
    return Vault(ca_key=ca_key, smb_password=smb_password, host_keys=host_keys, extras=extras)
