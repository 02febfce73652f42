"""`farmhand keys rotate`, `keys passphrase`, `keys reissue-workers` and separate passphrases.

Every run is the real CLI in a subprocess on a copy of the session farm; files are opened with
pyrage (not farmhand), so a test fails if farmhand encrypted a file with the wrong passphrase.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyrage
import pytest

from support.cli import (
    NEW_PASSPHRASE,
    OTHER_PASSPHRASE,
    PASSPHRASE,
    WITH_PASSPHRASE,
    WITH_WRONG_PASSPHRASE,
    Members,
    Snapshot,
    assert_cli_error,
    changed,
    decrypt_tar,
    run_cli,
    run_in_pty,
    snapshot,
    untar,
)
from support.session import BUNDLES, SESSION_BOSS, WORKER_NAMES

VAULT = "secrets.age"
HUB_BUNDLE, WORKERS_BUNDLE, BOSS_BUNDLE = BUNDLES


def secret_file(folder: Path, name: str, value: str) -> Path:
    path = folder / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def opens(path: Path, passphrase: str) -> bool:
    try:
        pyrage.passphrase.decrypt(path.read_bytes(), passphrase)
    except pyrage.DecryptError:
        return False
    return True


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def farm_json(members: Members) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(members["farm.json"][0])
    return data


# --------------------------------------------------------------------------------------------
# separate passphrases


def test_keygen_gives_the_bundles_their_own_passphrase(tmp_path: Path) -> None:
    store = tmp_path / "keys"
    vault_file = secret_file(tmp_path, "vault", PASSPHRASE)
    bundle_file = secret_file(tmp_path, "bundles", OTHER_PASSPHRASE)
    out = ok(
        run_cli(
            "keygen", "--dir", store, "--workers", "2",
            "--passphrase-file", vault_file, "--bundle-passphrase-file", bundle_file,
        )
    )  # fmt: skip
    assert "note: the vault's passphrase also opens" not in out
    assert opens(store / VAULT, PASSPHRASE)
    assert not opens(store / VAULT, OTHER_PASSPHRASE)
    for bundle in ("hub.keybundle.age", "workers.keybundle.age", "boss-boss1.keybundle.age"):
        assert opens(store / bundle, OTHER_PASSPHRASE), bundle
        assert not opens(store / bundle, PASSPHRASE), bundle
    # A change needs only the vault's passphrase, and keeps each file on its own.
    ok(run_cli("keys", "add-workers", "1", "--dir", store, env=WITH_PASSPHRASE))
    assert opens(store / "workers.keybundle.age", OTHER_PASSPHRASE)
    assert opens(store / VAULT, PASSPHRASE)
    # The bundle passphrase does not open the store for a change.
    assert_cli_error(
        run_cli("keys", "rebundle", "--dir", store, "--passphrase-file", bundle_file),
        "wrong passphrase for this key store",
    )


def test_keygen_with_one_passphrase_says_the_bundles_share_it(tmp_path: Path) -> None:
    out = ok(run_cli("keygen", "--dir", tmp_path / "keys", "--workers", "1", env=WITH_PASSPHRASE))
    assert "note: the vault's passphrase also opens every keybundle" in " ".join(out.split())


def test_keygen_on_a_terminal_asks_for_each_passphrase_and_says_which(tmp_path: Path) -> None:
    store = tmp_path / "keys"
    code, transcript = run_in_pty(
        [sys.executable, "-m", "farmhand", "keygen", "--dir", str(store), "--workers", "1"],
        [
            (b"keep it to yourself): ", f"{PASSPHRASE}\n".encode()),
            (b"Repeat the passphrase: ", f"{PASSPHRASE}\n".encode()),
            (b"open their keybundles with it; Enter: the vault's): ", b"short\n"),
            (b"Repeat the passphrase: ", b"short\n"),
        ],
    )
    assert code == 1, transcript
    assert b"New vault passphrase" in transcript
    assert b"the passphrase is too short" in transcript
    assert not store.joinpath("farm.toml").exists()  # nothing made before both were good
    code, transcript = run_in_pty(
        [sys.executable, "-m", "farmhand", "keygen", "--dir", str(store), "--workers", "1"],
        [
            (b"keep it to yourself): ", f"{PASSPHRASE}\n".encode()),
            (b"Repeat the passphrase: ", f"{PASSPHRASE}\n".encode()),
            (b"Enter: the vault's): ", f"{OTHER_PASSPHRASE}\n".encode()),
            (b"Repeat the passphrase: ", f"{OTHER_PASSPHRASE}\n".encode()),
        ],
    )
    assert code == 0, transcript
    assert PASSPHRASE.encode() not in transcript
    assert OTHER_PASSPHRASE.encode() not in transcript
    assert opens(store / VAULT, PASSPHRASE)
    assert opens(store / "hub.keybundle.age", OTHER_PASSPHRASE)
    assert not opens(store / "hub.keybundle.age", PASSPHRASE)


def test_a_boss_bundle_with_its_own_passphrase_does_not_open_the_vault(
    store: Path, tmp_path: Path
) -> None:
    own = secret_file(tmp_path, "bob", OTHER_PASSPHRASE)
    before = snapshot(store)
    ok(
        run_cli(
            "keys", "add-boss", "bob", "--dir", store, "--own-passphrase-file", own,
            env=WITH_PASSPHRASE,
        )
    )  # fmt: skip
    bob = store / "boss-bob.keybundle.age"
    assert opens(bob, OTHER_PASSPHRASE)
    assert not opens(bob, PASSPHRASE)
    assert not opens(store / VAULT, OTHER_PASSPHRASE)
    # The bundle's holder can use it: farmhand opens it with its own passphrase.
    shown = ok(run_cli("bundle", "show", bob, "--json", "--passphrase-file", own))
    assert [h["name"] for h in json.loads(shown)["hosts"]] == ["bob"]
    # Everyone else's bundles learned of bob and still open with the shared passphrase.
    assert {HUB_BUNDLE, WORKERS_BUNDLE, BOSS_BUNDLE} <= changed(before, snapshot(store))
    for bundle in BUNDLES:
        assert opens(store / bundle, PASSPHRASE), bundle
    # The vault's passphrase refuses a change made with the boss's.
    assert_cli_error(
        run_cli("keys", "rebundle", "--dir", store, "--passphrase-file", own),
        "wrong passphrase for this key store",
    )
    # A later change keeps bob on his own passphrase.
    ok(run_cli("keys", "rebundle", "--dir", store, env=WITH_PASSPHRASE))
    assert opens(bob, OTHER_PASSPHRASE)
    assert not opens(bob, PASSPHRASE)


def test_changing_the_vault_passphrase_rewrites_only_the_vault(store: Path, tmp_path: Path) -> None:
    new = secret_file(tmp_path, "new", NEW_PASSPHRASE)
    before = snapshot(store)
    out = ok(
        run_cli(
            "keys", "passphrase", "vault", "--dir", store, "--new-passphrase-file", new,
            env=WITH_PASSPHRASE,
        )
    )  # fmt: skip
    assert changed(before, snapshot(store)) == {VAULT}
    assert opens(store / VAULT, NEW_PASSPHRASE)
    assert not opens(store / VAULT, PASSPHRASE)
    assert "also opens" not in out  # the bundles keep the old one: now apart from the vault
    for bundle in BUNDLES:
        assert opens(store / bundle, PASSPHRASE)
    # The old passphrase no longer changes the store; the new one does, and bundles stay on
    # the passphrase they had.
    assert_cli_error(
        run_cli("keys", "rebundle", "--dir", store, env=WITH_PASSPHRASE),
        "wrong passphrase for this key store",
    )
    ok(run_cli("keys", "rebundle", "--dir", store, "--passphrase-file", new))
    for bundle in BUNDLES:
        assert opens(store / bundle, PASSPHRASE)
        assert not opens(store / bundle, NEW_PASSPHRASE)


def test_changing_the_bundles_passphrase_rewrites_the_bundles_only(
    store: Path, tmp_path: Path
) -> None:
    new = secret_file(tmp_path, "new", NEW_PASSPHRASE)
    before = snapshot(store)
    ok(
        run_cli(
            "keys", "passphrase", "bundles", "--dir", store, "--new-passphrase-file", new,
            env=WITH_PASSPHRASE,
        )
    )  # fmt: skip
    assert changed(before, snapshot(store)) == {VAULT, *BUNDLES}  # the vault records it
    assert opens(store / VAULT, PASSPHRASE)
    assert not opens(store / VAULT, NEW_PASSPHRASE)
    for bundle in BUNDLES:
        assert opens(store / bundle, NEW_PASSPHRASE)
        assert not opens(store / bundle, PASSPHRASE)
    # The content is the same: only the passphrase changed.
    assert (
        farm_json(decrypt_tar(store / HUB_BUNDLE, NEW_PASSPHRASE))["hosts"]
        == farm_json(_members_before(before, HUB_BUNDLE))["hosts"]
    )


def _members_before(before: Snapshot, name: str) -> Members:
    content = before[name][0]
    assert content is not None
    return untar(bytes(pyrage.passphrase.decrypt(content, PASSPHRASE)))


def test_one_boss_gets_a_passphrase_of_its_own_later(store: Path, tmp_path: Path) -> None:
    new = secret_file(tmp_path, "new", OTHER_PASSPHRASE)
    before = snapshot(store)
    ok(
        run_cli(
            "keys", "passphrase", SESSION_BOSS, "--dir", store, "--new-passphrase-file", new,
            env=WITH_PASSPHRASE,
        )
    )  # fmt: skip
    assert changed(before, snapshot(store)) == {VAULT, BOSS_BUNDLE}
    assert opens(store / BOSS_BUNDLE, OTHER_PASSPHRASE)
    assert not opens(store / BOSS_BUNDLE, PASSPHRASE)
    assert not opens(store / VAULT, OTHER_PASSPHRASE)


@pytest.mark.parametrize(
    ("args", "env", "fragments"),
    [
        (("passphrase", "nobody"), WITH_PASSPHRASE, ("'nobody' is not 'vault', 'bundles'",)),
        (("passphrase", "worker0001"), WITH_PASSPHRASE, ("'worker0001' is not",)),
        (("passphrase", "vault"), WITH_WRONG_PASSPHRASE, ("wrong passphrase",)),
        (("passphrase", "vault"), WITH_PASSPHRASE, ("the new vault passphrase is needed",)),
        (("rotate", "smb-pasword"), WITH_PASSPHRASE, ("no farm-wide secret named 'smb-pasword'",)),
        (("rotate",), WITH_PASSPHRASE, ("name the secrets to rotate",)),
        (("rotate", "munge-key", "--all"), WITH_PASSPHRASE, ("not both",)),
        (("rotate", "munge-key"), WITH_WRONG_PASSPHRASE, ("wrong passphrase",)),
        (("reissue-workers",), WITH_WRONG_PASSPHRASE, ("wrong passphrase",)),
    ],
)
def test_bad_input_is_one_line_and_the_store_stays_byte_identical(
    store: Path, args: tuple[str, ...], env: dict[str, str], fragments: tuple[str, ...]
) -> None:
    before = snapshot(store)
    assert_cli_error(run_cli("keys", *args, "--dir", store, env=env), *fragments)
    assert snapshot(store) == before


@pytest.mark.parametrize(
    "args", [("rotate", "munge-key"), ("reissue-workers",), ("passphrase", "vault")]
)
def test_a_store_a_newer_farmhand_wrote_is_refused_untouched(
    store: Path, args: tuple[str, ...]
) -> None:
    register = store / "register.json"
    data = json.loads(register.read_text())
    data["format"] = 99
    register.write_text(json.dumps(data))
    before = snapshot(store)
    assert_cli_error(
        run_cli("keys", *args, "--dir", store, env=WITH_PASSPHRASE), "unsupported format 99"
    )
    assert snapshot(store) == before


# --------------------------------------------------------------------------------------------
# rotate


def test_rotate_gives_only_the_named_secrets_new_values_in_every_bundle(store: Path) -> None:
    old = {name: decrypt_tar(store / name) for name in (VAULT, *BUNDLES)}
    before = snapshot(store)
    out = ok(
        run_cli(
            "keys", "rotate", "smb-password", "lease-claim-key", "--dir", store,
            env=WITH_PASSPHRASE,
        )
    )  # fmt: skip
    assert "rotated smb-password, lease-claim-key" in out
    assert changed(before, snapshot(store)) == {VAULT, *BUNDLES}  # certs, register untouched
    new = {name: decrypt_tar(store / name) for name in (VAULT, *BUNDLES)}
    # The Samba password: in the vault, and in every bundle that carries it.
    assert new[VAULT]["smb.password"] != old[VAULT]["smb.password"]
    for bundle in (HUB_BUNDLE, BOSS_BUNDLE):
        assert new[bundle]["smb.password"][0] == new[VAULT]["smb.password"][0]
    # The claim key: workers get the new private key, the hub the matching public one.
    claim = "extras/lease-claim-key"
    assert new[VAULT][claim] != old[VAULT][claim]
    assert new[WORKERS_BUNDLE][claim] == new[VAULT][claim]
    assert new[HUB_BUNDLE][claim + ".pub"] != old[HUB_BUNDLE][claim + ".pub"]
    # Every other secret keeps its value, and so do host keys.
    for member, value in old[VAULT].items():
        if member not in ("smb.password", claim):
            assert new[VAULT][member] == value, member


def test_rotate_all_changes_every_declared_secret(store: Path) -> None:
    names = ok(run_cli("keys", "rotate", "--list")).split()
    assert {"smb-password", "lease-claim-key", "munge-key", "queue-tls"} <= set(names)
    old = decrypt_tar(store / VAULT)
    ok(run_cli("keys", "rotate", "--all", "--dir", store, env=WITH_PASSPHRASE))
    new = decrypt_tar(store / VAULT)
    assert new["smb.password"] != old["smb.password"]
    for name in names[1:]:
        assert new[f"extras/{name}"] != old[f"extras/{name}"], name
    assert {m: v for m, v in new.items() if m.startswith("keys/")} == {
        m: v for m, v in old.items() if m.startswith("keys/")
    }


# --------------------------------------------------------------------------------------------
# reissue-workers


def test_reissue_workers_replaces_every_worker_key_and_blocklists_the_old(store: Path) -> None:
    listed = json.loads(ok(run_cli("keys", "list", "--json", "--dir", store)))["certificates"]
    old = {c["name"]: c for c in listed}
    old_workers = decrypt_tar(store / WORKERS_BUNDLE)
    ok(run_cli("keys", "reissue-workers", "--dir", store, env=WITH_PASSPHRASE))
    listed = json.loads(ok(run_cli("keys", "list", "--json", "--dir", store)))["certificates"]
    new = {c["name"]: c for c in listed}
    retired = {old[name]["fingerprint"] for name in WORKER_NAMES}
    for name in WORKER_NAMES:
        assert new[name]["fingerprint"] != old[name]["fingerprint"]
        assert new[name]["ip"] == old[name]["ip"]
    for name in ("hub", SESSION_BOSS):
        assert new[name]["fingerprint"] == old[name]["fingerprint"]
    workers = decrypt_tar(store / WORKERS_BUNDLE)
    for name in WORKER_NAMES:
        assert workers[f"keys/{name}.key"] != old_workers[f"keys/{name}.key"]
    for bundle in BUNDLES:
        assert retired <= set(farm_json(decrypt_tar(store / bundle))["blocklist"]), bundle
    verified = run_cli("keys", "verify", "--dir", store)
    assert verified.returncode == 0
    assert "0 errors" in verified.stdout


def test_nothing_secret_is_readable_by_others_after_a_change(store: Path, tmp_path: Path) -> None:
    new = secret_file(tmp_path, "new", NEW_PASSPHRASE)
    ok(run_cli("keys", "rotate", "munge-key", "--dir", store, env=WITH_PASSPHRASE))
    ok(
        run_cli(
            "keys", "passphrase", "bundles", "--dir", store, "--new-passphrase-file", new,
            env=WITH_PASSPHRASE,
        )
    )  # fmt: skip
    for path in (store / VAULT, *(store / b for b in BUNDLES)):
        assert os.stat(path).st_mode & 0o077 == 0, path
    assert {mode for _, mode in decrypt_tar(store / VAULT).values()} == {0o600}
