"""The key store on disk (``keys/`` by default) and the one way it changes: ``Change.apply``.

Layout::

    farm.toml                 the farm plan (human-readable, see plan.py)
    register.json             every issued certificate (see register.py)
    ca.crt                    the CA certificate, in clear
    certs/NAME.crt            every issued host certificate
    secrets.age               CA key and host keys, age-encrypted (see vault.py)
    hub.keybundle.age         one encrypted bundle per role (see bundle.py)
    workers.keybundle.age
    boss-NAME.keybundle.age
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from farmhand.errors import StoreError
from farmhand.keystore import age, fs, job_keys
from farmhand.keystore.bundle import Bundle, BundleHost, Peer, bundle_filename
from farmhand.keystore.farm_secrets import for_role as extras_for_role
from farmhand.keystore.plan import FarmPlan, Role
from farmhand.keystore.register import Register
from farmhand.keystore.vault import VAULT_FILE, BundlePassphrases, Vault, decrypt_vault
from farmhand.nebula import pem
from farmhand.nebula.cert import NebulaCertificate, certificate_from_pem, certificates_from_pem

PLAN_FILE = "farm.toml"
REGISTER_FILE = "register.json"
CA_FILE = "ca.crt"
CERTS_DIR = "certs"
GITIGNORE = "*\n"


def is_store(root: Path) -> bool:
    return (root / PLAN_FILE).is_file()


@dataclass
class KeyStore:
    """A loaded key store: its plan, register and CA (all public)."""

    root: Path
    plan: FarmPlan
    register: Register
    ca_pem: bytes

    @classmethod
    def open(cls, root: Path, report: Callable[[str], None] | None = None) -> KeyStore:
        """Load the store, first finishing or undoing a change a killed run left (``report``
        is told what was done, in one line)."""
        if not root.is_dir():
            raise StoreError(
                f"no key store at {root}: create one with 'farmhand keygen --dir {root}'"
            )
        if not is_store(root):
            raise StoreError(
                f"{root} is not a farmhand key store (no {PLAN_FILE}): "
                f"create one with 'farmhand keygen --dir {root}'"
            )
        if fs.pending(root) is not None:
            try:
                with fs.locked(root):
                    done = fs.recover(root)
            except fs.StoreBusy:
                done = None  # the staging folder is a running change's: left to it
            if done and report is not None:
                report(f"{root}: {done}")
        return cls.load(root)

    @classmethod
    def load(cls, root: Path) -> KeyStore:
        plan = FarmPlan.from_toml(_read(root / PLAN_FILE).decode(), str(root / PLAN_FILE))
        register = Register.from_json(
            _read(root / REGISTER_FILE).decode(), str(root / REGISTER_FILE)
        )
        ca_pem = _read(root / CA_FILE)
        store = cls(root=root, plan=plan, register=register, ca_pem=ca_pem)
        store.ca  # noqa: B018 - parse now so a damaged ca.crt is reported up front
        return store

    @property
    def ca(self) -> NebulaCertificate:
        try:
            cas = certificates_from_pem(self.ca_pem)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"{self.root / CA_FILE} is damaged: {exc}") from None
        return cas[-1]

    @property
    def cas(self) -> list[NebulaCertificate]:
        """Every CA the farm trusts: one, or during a CA rollover the old and then the new
        (the last one signs)."""
        self.ca  # noqa: B018 - the same one-line error for a damaged ca.crt
        return certificates_from_pem(self.ca_pem)

    @contextlib.contextmanager
    def changing(self) -> Iterator[KeyStore]:
        """Lock the store, finish any interrupted change and reload it before changing it."""
        with fs.locked(self.root):
            fs.recover(self.root)
            yield KeyStore.load(self.root)

    def cert_path(self, name: str) -> Path:
        return self.root / CERTS_DIR / f"{name}.crt"

    def cert_pem(self, name: str) -> bytes:
        return _read(self.cert_path(name))

    def certificate(self, name: str) -> NebulaCertificate:
        try:
            return certificate_from_pem(self.cert_pem(name))
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"{self.cert_path(name)} is damaged: {exc}") from None

    def unlock(self, passphrase: str) -> Vault:
        return decrypt_vault(_read(self.root / VAULT_FILE), passphrase)

    def bundle_path(self, role: Role, name: str = "") -> Path:
        return self.root / bundle_filename(role, name)

    def bundle_files(self) -> list[Path]:
        return sorted(self.root.glob("*.keybundle.age"))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"the key store is missing {path}") from None
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}") from None


def build_bundle(
    role: Role,
    plan: FarmPlan,
    register: Register,
    ca_pem: bytes,
    vault: Vault,
    cert_pems: dict[str, bytes],
    created: int,
    boss: str = "",
) -> Bundle:
    """The bundle for one role (for a boss, just that boss) from live, unrevoked entries."""
    entries = register.by_role(role, live_only=True)
    if role is Role.BOSS:
        entries = [e for e in entries if e.name == boss]
    hosts = tuple(
        BundleHost(
            name=e.name,
            ip=plan.overlay_interface(e.ip),
            groups=e.groups,
            cert_pem=cert_pems[e.name],
            key_pem=pem.x25519_private_to_pem(vault.host_key(e.name)),
        )
        for e in entries
    )
    return Bundle(
        role=role,
        plan=plan,
        ca_pem=ca_pem,
        hosts=hosts,
        blocklist=register.blocklist,
        created=created,
        # The bosses' share password; workers log in with accounts of their own (model/smb.py).
        smb_password=vault.smb_password if role is not Role.WORKER else "",
        peers=tuple(
            Peer(e.name, e.role, e.ip, e.not_after) for e in register.entries if not e.revoked
        ),
        extras={
            **extras_for_role(role, vault.extras),
            **job_keys.bundle_extras(role, boss, register, vault.extras),
        },
    )


@dataclass
class Change:
    """Everything one command changes in the store, applied atomically by ``apply``."""

    root: Path
    passphrase: str = field(repr=False)
    """The vault's passphrase."""
    bundle_passphrases: BundlePassphrases | None = field(default=None, repr=False)
    """What each rebuilt bundle is encrypted with (needed when ``bundles`` is not empty)."""
    plan: FarmPlan | None = None
    register: Register | None = None
    ca_pem: bytes | None = None
    replace_ca: bool = False
    """``ca_pem`` replaces ca.crt (a CA rollover); otherwise ca.crt must not exist yet."""
    new_certs: dict[str, bytes] = field(default_factory=dict)
    replaced_certs: dict[str, bytes] = field(default_factory=dict)
    vault: Vault | None = field(default=None, repr=False)
    bundles: list[Bundle] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    vault_mtime: int = 0

    def apply(self, *, create: bool = False) -> list[Path]:
        """Encrypt (in parallel), stage, then commit. Returns the bundle files written.

        scrypt sets the pace: each payload goes to an encryption process as soon as it is
        packed, and the public files are staged while scrypt runs."""
        count = (self.vault is not None) + len(self.bundles)
        passphrases = self.bundle_passphrases
        if passphrases is None and self.bundles:
            raise ValueError("a change that rebuilds bundles needs their passphrases")
        with fs.Transaction(self.root) as txn:
            with age.Encryptions(count, self.passphrase) as encryptions:
                pending: list[tuple[str, Future[bytes]]] = []
                if self.vault is not None:
                    vault_tar = self.vault.to_tar(self.vault_mtime)
                    pending.append((VAULT_FILE, encryptions.submit(vault_tar)))
                for bundle in self.bundles:
                    name = bundle.hosts[0].name if bundle.role is Role.BOSS else ""
                    secret = passphrases.for_bundle(bundle.role, name) if passphrases else None
                    encrypted = encryptions.submit(bundle.to_tar(), secret)
                    pending.append((bundle_filename(bundle.role, name), encrypted))
                self._stage_public(txn, create)
                register = None if self.register is None else self.register.to_json().encode()
                txn.sync_staged()  # the public files, on disk while scrypt still runs
                secrets = [(name, future.result()) for name, future in pending]
            # The encryption processes are gone before the commit starts.
            for name, content in secrets:
                txn.stage(name, content, fs.SECRET_MODE)
            for name in self.removed:
                txn.remove(name)
            # The register goes last in the manifest: it is what makes names and addresses taken.
            if register is not None:
                txn.stage(REGISTER_FILE, register, fs.PUBLIC_MODE)
            txn.commit()
        return [self.root / n for n, _ in secrets if n != VAULT_FILE]

    def _stage_public(self, txn: fs.Transaction, create: bool) -> None:
        if create and not (self.root / ".gitignore").exists():
            txn.stage(".gitignore", GITIGNORE.encode(), fs.PUBLIC_MODE)
        if self.plan is not None:
            txn.stage(PLAN_FILE, self.plan.to_toml().encode(), fs.PUBLIC_MODE)
        if self.ca_pem is not None:
            txn.stage(CA_FILE, self.ca_pem, fs.PUBLIC_MODE, new=not self.replace_ca)
        for name, content in self.new_certs.items():
            txn.stage(f"{CERTS_DIR}/{name}.crt", content, fs.PUBLIC_MODE, new=True)
        for name, content in self.replaced_certs.items():
            txn.stage(f"{CERTS_DIR}/{name}.crt", content, fs.PUBLIC_MODE)


def check_new_store(root: Path) -> None:
    """Refuse a folder that holds a store, or anything else that is not ours."""
    if is_store(root):
        raise StoreError(
            f"{root} already holds a key store: use 'farmhand keys add-workers', "
            "'keys add-boss', 'keys renew' or 'keys revoke' to change it"
        )
    if root.exists() and not root.is_dir():
        raise StoreError(f"{root} exists and is not a folder")
    ours = {".gitignore", ".lock", fs.STAGING, fs.DONE}
    leftovers = [p.name for p in root.iterdir() if p.name not in ours] if root.exists() else []
    if leftovers:
        raise StoreError(
            f"{root} is not empty and not a key store ({', '.join(sorted(leftovers)[:3])}): "
            "choose an empty folder with --dir"
        )


def prepare_new_store(root: Path) -> None:
    """Make (or accept an empty) folder for a new store; never touch an existing one."""
    check_new_store(root)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(root, 0o700)
