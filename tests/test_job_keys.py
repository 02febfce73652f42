"""Per-boss job keys (keystore/job_keys.py): each boss bundle carries its own key, the hub
bundle the live bosses' public keys, and a revoked boss drops out of the hub's list."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from farmhand.keystore import job_keys
from support.cli import WITH_PASSPHRASE, decrypt_tar, run_cli


def _public_of(private: bytes) -> str:
    key = serialization.load_ssh_private_key(private, password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    line = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return line.decode()


def test_each_boss_has_its_own_key_and_revoke_drops_it(store: Path) -> None:
    result = run_cli("keys", "add-boss", "bob", "--dir", store, env=WITH_PASSPHRASE)
    assert result.returncode == 0, result.stderr
    hub = decrypt_tar(store / "hub.keybundle.age")
    listed = dict(job_keys.parse_boss_keys(hub[f"extras/{job_keys.BOSS_KEYS}"][0]))
    assert sorted(listed) == ["alice", "bob"]
    for boss in ("alice", "bob"):
        bundle = decrypt_tar(store / f"boss-{boss}.keybundle.age")
        key = bundle[f"extras/{job_keys.JOB_KEY}"]
        assert key[1] == 0o600
        assert listed[boss].startswith(_public_of(key[0]))
        assert "extras/lease-host-key.pub" in bundle  # the hub's key, to pin
        assert "extras/jobs-key-seed" not in bundle
    assert listed["alice"] != listed["bob"]
    workers = decrypt_tar(store / "workers.keybundle.age")
    assert not [n for n in workers if "jobs-" in n]

    result = run_cli("keys", "revoke", "bob", "--dir", store, env=WITH_PASSPHRASE)
    assert result.returncode == 0, result.stderr
    hub = decrypt_tar(store / "hub.keybundle.age")
    after = dict(job_keys.parse_boss_keys(hub[f"extras/{job_keys.BOSS_KEYS}"][0]))
    assert after == {"alice": listed["alice"]}  # alice keeps her key across the rebundle
