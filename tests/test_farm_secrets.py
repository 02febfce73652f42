"""Farm-wide secrets (keystore/farm_secrets.py): made once, kept in the vault, split by role."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from farmhand.keystore import farm_secrets, pki
from farmhand.keystore.bundle import open_bundle
from farmhand.keystore.plan import Role, new_plan
from farmhand.keystore.store import KeyStore

PASSPHRASE = "correct horse battery"
TOKEN = farm_secrets.ExtraSecret(
    name="token",
    make=lambda: os.urandom(16).hex().encode(),
    private_roles=frozenset({Role.HUB}),
    public_roles=frozenset({Role.WORKER}),
    public=lambda value: b"public-of-" + value,
)


def test_completed_makes_only_what_is_missing() -> None:
    made = farm_secrets.completed({}, (TOKEN,))
    assert set(made) == {"token"}
    assert farm_secrets.completed(made, (TOKEN,)) == made


def test_roles_get_private_or_public_parts() -> None:
    made = farm_secrets.completed({}, (TOKEN,))
    assert farm_secrets.for_role(Role.HUB, made, (TOKEN,)) == {"token": made["token"]}
    assert farm_secrets.for_role(Role.WORKER, made, (TOKEN,)) == {
        "token.pub": b"public-of-" + made["token"]
    }
    assert farm_secrets.for_role(Role.BOSS, made, (TOKEN,)) == {}
    assert farm_secrets.file_mode("token") == 0o600
    assert farm_secrets.file_mode("token.pub") == 0o644


@pytest.mark.slow
def test_old_store_gains_new_secrets_once_and_keeps_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "keys"
    plan = new_plan("farm")
    monkeypatch.setattr(farm_secrets, "FEATURE_MODULES", ())  # only what this test declares
    monkeypatch.setattr(farm_secrets, "EXTRA_SECRETS", ())  # a store made before any was declared
    pki.create_farm(root, plan, workers=2, bosses=["boss1"], passphrase=PASSPHRASE)
    store = KeyStore.open(root)
    assert store.unlock(PASSPHRASE).extras == {}

    monkeypatch.setattr(farm_secrets, "EXTRA_SECRETS", (TOKEN,))
    pki.add_workers(store, 1, PASSPHRASE)
    made = KeyStore.open(root).unlock(PASSPHRASE).extras
    assert set(made) == {"token"}
    hub = open_bundle(root / "hub.keybundle.age", PASSPHRASE)
    workers = open_bundle(root / "workers.keybundle.age", PASSPHRASE)
    assert hub.extras == {"token": made["token"]}
    assert workers.extras == {"token.pub": b"public-of-" + made["token"]}
    # Every bundle lists the live peers, the new worker included.
    assert [p.name for p in hub.peers_of(Role.WORKER)] == [
        "worker0001",
        "worker0002",
        "worker0003",
    ]

    pki.revoke(KeyStore.open(root), "worker0002", PASSPHRASE)
    assert KeyStore.open(root).unlock(PASSPHRASE).extras == made
    workers = open_bundle(root / "workers.keybundle.age", PASSPHRASE)
    assert [p.name for p in workers.peers_of(Role.WORKER)] == ["worker0001", "worker0003"]


def test_the_key_store_knows_the_features_secrets_without_importing_them_first() -> None:
    """A library caller (the lab, a benchmark) that never imports the render queue still makes
    and rebuilds bundles with the queue's TLS material: the store loads the features that
    declare secrets when it first needs them, and not at import time (it depends on no
    feature)."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from farmhand.keystore import farm_secrets\n"
        "before = any(m.startswith('farmhand.queue') for m in sys.modules)\n"
        "names = [s.name for s in farm_secrets.all_declared()]\n"
        "print(before, ','.join(names))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    before, names = done.stdout.split()
    assert before == "False"
    assert set(names.split(",")) >= {"lease-claim-key", "lease-host-key", "queue-tls"}
