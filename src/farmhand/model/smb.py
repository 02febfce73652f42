"""The hub's Samba accounts, one kind per role, and what each may do on the shares.

- **boss**: the farm user (``farmhand``), with the farm's generated ``smb_password``. Hub and
  boss bundles carry it; workers' bundles do not. Bosses write scenes, read renders (and may
  remove them from the top of ``renders/``), and use the render queue's data folders.
- **workers**: one account per worker certificate, named like it (``worker0007``), each a
  no-login Unix user of the hub in group :data:`WORKERS_GROUP`. Its password is derived from
  one farm-wide secret (:data:`WORKER_SMB_KEY`, in hub and worker bundles only), so the hub
  can set every account and a worker needs only its certificate's name to pick its own at
  boot. Workers read scenes, add their own renders (and cannot replace or delete another
  worker's), write the queue's data folders and read, never write, the queue's code and the
  installers.

Every worker image carries the key (as it carries every pool certificate), so a compromised
worker image can act as any worker account until the pool is reissued; it still cannot
change scenes, the queue's code or the installers.

This is the one place other code asks for a host's SMB login (:func:`smb_account`): mounts,
the artifact fetcher, ``farmhand status``, the lab and the jobs commands.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from farmhand.errors import BundleError
from farmhand.keystore import farm_secrets
from farmhand.keystore.bundle import Bundle
from farmhand.keystore.plan import Role
from farmhand.model.paths import SHARES_ROOT

WORKERS_GROUP = "farmhand-workers"
"""The hub's Unix group of every worker account (renders and the queue's data are its)."""

WORKER_SMB_KEY = farm_secrets.declare(
    farm_secrets.ExtraSecret(
        name="smb-worker-key",
        make=lambda: secrets.token_hex(32).encode() + b"\n",
        private_roles=frozenset({Role.HUB, Role.WORKER}),
    )
)
"""What every worker account's password is derived from (never a boss's)."""


@dataclass(frozen=True)
class SmbAccount:
    """One Samba login on the hub."""

    user: str
    password: str = field(repr=False)


def worker_password(key: bytes, name: str) -> str:
    """The Samba password of worker certificate ``name``: HMAC-SHA256 of the name under the
    farm's worker key (hex, 64 characters)."""
    return hmac.new(key.strip(), name.encode(), hashlib.sha256).hexdigest()


def _worker_key(bundle: Bundle) -> bytes:
    key = bundle.extras.get(WORKER_SMB_KEY.name)
    if key is None:
        raise BundleError(
            f"the {bundle.role.value} bundle has no worker share key: rebuild it with "
            "'farmhand keys rebundle' (the store adds it)"
        )
    return key


def boss_account(bundle: Bundle) -> SmbAccount:
    """The bosses' account (the farm user), from a hub or boss bundle."""
    if not bundle.smb_password:
        raise BundleError(f"the {bundle.role.value} bundle holds no boss share password")
    return SmbAccount(bundle.plan.farm_user, bundle.smb_password)


def worker_account(bundle: Bundle, name: str) -> SmbAccount:
    """Worker certificate ``name``'s account, from a hub or workers bundle."""
    return SmbAccount(name, worker_password(_worker_key(bundle), name))


def smb_account(bundle: Bundle, name: str = "") -> SmbAccount:
    """The account a host of this bundle logs in with: a worker its certificate's (``name``,
    else the bundle's first), a boss or the hub the bosses' one."""
    if bundle.role is Role.WORKER:
        return worker_account(bundle, name or bundle.hosts[0].name)
    return boss_account(bundle)


def worker_accounts(bundle: Bundle) -> tuple[SmbAccount, ...]:
    """Every live worker's account, for the hub to set (from its bundle's peers)."""
    return tuple(worker_account(bundle, peer.name) for peer in bundle.peers_of(Role.WORKER))


@dataclass(frozen=True)
class ShareFolder:
    """A folder of the shares as the hub deploy keeps it: owner, group and mode."""

    path: str
    user: str
    group: str
    mode: int


def share_folders(farm_user: str) -> tuple[ShareFolder, ...]:
    """Who may change what, on disk (Samba adds nothing: each account writes as itself).

    ``farm/`` itself is root's: nobody renames ``scenes/``, ``renders/`` or the lease table's
    ``.farmhand/``. Scenes are the bosses' (the farm user's); workers read them. ``renders/``
    is the bosses' and group-writable by the workers, sticky: each worker adds its own files
    (0644) and folders (sticky too) and cannot replace or remove another's. The queue and the
    installers are root's; the render manager's deploy hands the queue's data folders to the
    farm user and the workers' group (queue/deadline.py REPOSITORY_DATA)."""
    return (
        ShareFolder(f"{SHARES_ROOT}/farm", "root", "root", 0o755),
        ShareFolder(f"{SHARES_ROOT}/farm/scenes", farm_user, farm_user, 0o2755),
        ShareFolder(f"{SHARES_ROOT}/farm/renders", farm_user, WORKERS_GROUP, 0o3775),
        ShareFolder(f"{SHARES_ROOT}/queue", "root", "root", 0o755),
        ShareFolder(f"{SHARES_ROOT}/installers", "root", "root", 0o755),
    )
