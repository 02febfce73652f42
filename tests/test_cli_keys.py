"""`farmhand keygen`, `farmhand keys …` and `farmhand bundle show`, end to end (issue #2).

Everything here goes through the real CLI in a subprocess (``run_cli``) or, for bundles, the
real ``age`` binary on a pseudo-terminal. Tests that change a store work on a copy of the
session's farm; every bad input checks the exit code, the one-line message and that the store
is byte-for-byte (and mode-for-mode) unchanged.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pyrage
import pytest
import typer
from typer.testing import CliRunner

from farmhand.cli import app
from farmhand.keystore import fs, pki
from farmhand.keystore.bundle import pack
from farmhand.keystore.plan import FarmPlan
from farmhand.keystore.register import Register
from farmhand.keystore.store import KeyStore
from farmhand.nebula import pem
from farmhand.nebula.cert import NebulaCertificate, certificate_from_pem
from support.cli import (
    PASSPHRASE,
    WITH_PASSPHRASE,
    WITH_WRONG_PASSPHRASE,
    Members,
    assert_cli_error,
    assert_no_secret,
    changed,
    decrypt_tar,
    decrypt_tars,
    popen_cli,
    run_cli,
    run_in_pty,
    snapshot,
    untar,
)
from support.session import BUNDLES, HOST_NAMES, SESSION_BOSS, WORKER_NAMES, Farm

HUB_IP = "10.87.0.1"
GROUPS = {
    "hub": ["farm", "hub", "lighthouse"],
    "worker": ["farm", "worker"],
    "boss": ["farm", "boss"],
}
SLOW = pytest.mark.slow
needs_age = pytest.mark.skipif(shutil.which("age") is None, reason="the age CLI is not installed")


# --------------------------------------------------------------------------------------------
# helpers


def keys_list(root: Path) -> dict[str, Any]:
    result = run_cli("keys", "list", "--json", "--dir", root)
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def entries(root: Path) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in keys_list(root)["certificates"]}


def cert(root: Path, name: str) -> NebulaCertificate:
    return certificate_from_pem((root / "certs" / f"{name}.crt").read_bytes())


def ca_cert(root: Path) -> NebulaCertificate:
    return certificate_from_pem((root / "ca.crt").read_bytes())


def metadata(members: Members) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(members["farm.json"][0])
    return data


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr


def check_bundle_members(root: Path, members: Members, names: list[str]) -> dict[str, Any]:
    """A bundle's tar holds farm.json, ca.crt and, per host, the store's cert and its key.

    Exactly those hosts; any other top-level file (farm-wide secrets such as a generated
    password) must be private (0600).
    """
    expected = {"farm.json", "ca.crt"}
    expected |= {f"certs/{n}.crt" for n in names} | {f"keys/{n}.key" for n in names}
    assert expected <= set(members)
    for extra in set(members) - expected:
        if extra.startswith("extras/"):  # declared farm-wide secrets (keystore/farm_secrets.py)
            assert members[extra][1] == (0o644 if extra.endswith(".pub") else 0o600), extra
            continue
        assert "/" not in extra, f"unexpected host file {extra}"
        assert members[extra][1] == 0o600, extra
    assert members["ca.crt"] == ((root / "ca.crt").read_bytes(), 0o644)
    assert members["farm.json"][1] == 0o644
    for name in names:
        cert_pem, cert_mode = members[f"certs/{name}.crt"]
        key_pem, key_mode = members[f"keys/{name}.key"]
        assert cert_pem == (root / "certs" / f"{name}.crt").read_bytes()
        assert (cert_mode, key_mode) == (0o644, 0o600)
        public = pem.x25519_public_from_private(pem.x25519_private_from_pem(key_pem))
        assert public == certificate_from_pem(cert_pem).details.public_key
    meta = metadata(members)
    assert meta["kind"] == "farmhand-keybundle"
    assert [h["name"] for h in meta["hosts"]] == names
    plan = FarmPlan.from_toml((root / "farm.toml").read_text())
    assert meta["plan"] == plan.to_dict()
    return meta


def key_material(members: Members) -> list[str]:
    """Every secret in a tar as the strings that would give it away.

    Private keys as base64 and hex; any other private (0600) file by its content.
    """
    out: list[str] = []
    for name, (content, mode) in members.items():
        if name.endswith(".key"):
            for _, raw in pem.decode_all(content):
                out += [base64.b64encode(raw).decode(), raw.hex(), raw[:16].hex()]
            out += [line for line in content.decode().splitlines() if "-----" not in line]
        elif mode == 0o600:
            out.append(content.decode().strip())
    assert all(out)
    return out


# --------------------------------------------------------------------------------------------
# keygen: layout, modes, plan, defaults


def test_keygen_creates_the_store_layout(farm: Farm) -> None:
    root = farm.root
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert files - {".lock"} == {
        ".gitignore",
        "farm.toml",
        "register.json",
        "ca.crt",
        "secrets.age",
        *BUNDLES,
        *(f"certs/{name}.crt" for name in HOST_NAMES),
    }
    assert not (root / fs.STAGING).exists()
    assert (root / ".gitignore").read_text() == "*\n"


def test_keygen_sets_private_modes(farm_store: Path) -> None:
    def mode(rel: str) -> int:
        return (farm_store / rel).stat().st_mode & 0o777

    assert mode(".") == 0o700
    for secret in ("secrets.age", *BUNDLES):
        assert mode(secret) == 0o600, secret
    for public in ("farm.toml", "register.json", "ca.crt", *(f"certs/{n}.crt" for n in HOST_NAMES)):
        assert mode(public) == 0o644, public


def test_no_private_key_in_clear_anywhere_in_the_store(farm_store: Path) -> None:
    for path in farm_store.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"PRIVATE KEY" not in data, path
            assert b"ca.key" not in data, path
    for age_file in ("secrets.age", *BUNDLES):
        assert (farm_store / age_file).read_bytes().startswith(b"age-encryption.org/v1\n")


def test_keygen_prints_a_summary(farm: Farm) -> None:
    out = farm.keygen.stdout
    assert "Traceback" not in farm.keygen.stderr
    assert "worker0001..worker0005" in out
    assert "10.87.99.1..10.87.99.5" in out
    assert SESSION_BOSS in out
    assert "10.87.10.1" in out
    for bundle in BUNDLES:
        assert f"wrote {farm.root / bundle}" in out


def test_keys_list_json_shows_the_planned_addresses_and_groups(farm_store: Path) -> None:
    data = keys_list(farm_store)
    assert data["farm"] == "farm"
    assert data["network"] == "10.87.0.0/16"
    assert data["port"] == 42042
    assert data["hub_address"] == ""
    ca = ca_cert(farm_store)
    assert data["ca"]["fingerprint"] == ca.fingerprint
    assert data["ca"]["not_after"] == ca.details.not_after
    certs = data["certificates"]
    assert [c["name"] for c in certs] == list(HOST_NAMES)
    by_name = {c["name"]: c for c in certs}
    assert by_name["hub"]["ip"] == HUB_IP
    assert by_name["hub"]["role"] == "hub"
    for n, name in enumerate(WORKER_NAMES, start=1):
        assert by_name[name]["ip"] == f"10.87.99.{n}"
        assert by_name[name]["role"] == "worker"
    assert by_name[SESSION_BOSS]["ip"] == "10.87.10.1"
    assert by_name[SESSION_BOSS]["role"] == "boss"
    for entry in certs:
        assert entry["groups"] == GROUPS[entry["role"]]
        assert entry["status"] == "valid"
        assert entry["revoked_at"] is None
        on_disk = cert(farm_store, entry["name"])
        assert entry["fingerprint"] == on_disk.fingerprint
        assert on_disk.details.issuer.hex() == ca.fingerprint
        assert str(on_disk.ip) == f"{entry['ip']}/16"
        assert list(on_disk.details.groups) == entry["groups"]


def test_keys_list_table(farm_store: Path) -> None:
    result = run_cli("keys", "list", "--dir", farm_store)
    assert_ok(result)
    assert "farm 'farm': 7 certificates" in result.stdout
    for name in HOST_NAMES:
        assert name in result.stdout
    assert result.stdout.count("valid") == len(HOST_NAMES)


def test_farm_toml_holds_the_default_plan(farm_store: Path) -> None:
    plan = FarmPlan.from_toml((farm_store / "farm.toml").read_text())
    assert plan.network == IPv4Network("10.87.0.0/16")
    assert plan.port == 42042
    assert plan.addresses.hub == IPv4Address(HUB_IP)
    assert str(plan.addresses.bosses) == "10.87.10.1-10.87.98.255"
    assert str(plan.addresses.workers) == "10.87.99.1-10.87.255.254"
    assert plan.ca_lifetime == plan.cert_lifetime == 5 * 365 * 86400


def test_keygen_defaults_are_100_workers_and_boss1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's defaults, without paying for 100 workers' bundle encryption."""
    calls: list[tuple[FarmPlan, int, list[str]]] = []

    def fake_create_farm(
        root: Path,
        plan: FarmPlan,
        workers: int,
        bosses: list[str],
        passphrase: str,
        *_: Any,
        bundle_passphrase: str | None = None,
    ) -> pki.Result:
        assert passphrase == PASSPHRASE
        assert bundle_passphrase is None  # no file and no terminal: the bundles share it
        calls.append((plan, workers, bosses))
        return pki.Result(issued=(), bundles=(), register=Register())

    monkeypatch.setattr(pki, "create_farm", fake_create_farm)
    monkeypatch.setenv("FARMHAND_PASSPHRASE", PASSPHRASE)
    result = CliRunner().invoke(app, ["keygen", "--dir", str(tmp_path / "keys")])
    assert result.exit_code == 0, result.output
    [(plan, workers, bosses)] = calls
    assert (workers, bosses) == (100, ["boss1"])
    assert (plan.name, str(plan.network), plan.port, plan.hub_address) == (
        "farm",
        "10.87.0.0/16",
        42042,
        "",
    )
    assert plan.ca_lifetime == plan.cert_lifetime == 5 * 365 * 86400


def test_keygen_default_pool_is_checked_against_the_network(tmp_path: Path) -> None:
    """No --workers: the default 100 does not fit a /26 (51 worker addresses)."""
    target = tmp_path / "keys"
    result = run_cli("keygen", "--dir", target, "--network", "10.9.0.0/26", env=WITH_PASSPHRASE)
    assert_cli_error(result, "room for 51 more workers, not 100", code=2)
    assert not target.exists()


# --------------------------------------------------------------------------------------------
# keys verify


def test_verify_passes_on_a_good_store(farm_store: Path) -> None:
    result = run_cli("keys", "verify", "--dir", farm_store)
    assert_ok(result)
    assert "8 certificates ok, 0 warnings, 0 errors" in result.stdout


def _resigned(root: Path) -> bytes:
    """worker0003 with a later expiry but its old signature."""
    original = cert(root, "worker0003")
    details = replace(original.details, not_after=original.details.not_after + 1)
    return NebulaCertificate(details, original.signature).to_pem()


TAMPERS: dict[str, tuple[Callable[[Path], bytes | None], str]] = {
    "re-signed": (_resigned, "worker0003: certificate signature did not match"),
    "swapped": (
        lambda root: (root / "certs" / "worker0004.crt").read_bytes(),
        "worker0003: certificate file does not match the register's fingerprint",
    ),
    "garbage": (lambda root: b"not a certificate\n", "worker0003:"),
    "missing": (lambda root: None, "worker0003: the key store is missing"),
}


@pytest.mark.parametrize("kind", list(TAMPERS))
def test_verify_fails_on_a_tampered_cert_file(store: Path, kind: str) -> None:
    make, message = TAMPERS[kind]
    target = store / "certs" / "worker0003.crt"
    content = make(store)
    if content is None:
        target.unlink()
    else:
        target.write_bytes(content)
    before = snapshot(store)
    result = run_cli("keys", "verify", "--dir", store)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"error: {message}" in result.stdout
    assert "7 certificates ok, 0 warnings, 1 errors" in result.stdout
    assert snapshot(store) == before


# --------------------------------------------------------------------------------------------
# bundle show


def test_bundle_show_lists_hosts_and_never_a_private_key(farm: Farm) -> None:
    bundle = farm.root / "workers.keybundle.age"
    result = run_cli("bundle", "show", bundle, env=WITH_PASSPHRASE)
    assert_ok(result)
    out = result.stdout
    assert "worker keybundle of farm 'farm'" in out
    assert "5 certificate(s)" in out
    for n, name in enumerate(WORKER_NAMES, start=1):
        assert re.search(rf"{name}\s+│\s+10\.87\.99\.{n}/16\s+│\s+farm,worker\s+│", out), out
    assert "PRIVATE KEY" not in out + result.stderr
    for secret in key_material(farm.tar("workers.keybundle.age")):
        assert secret not in out + result.stderr


def test_bundle_show_json(farm: Farm) -> None:
    bundle = farm.root / "workers.keybundle.age"
    result = run_cli("bundle", "show", "--json", bundle, env=WITH_PASSPHRASE)
    assert_ok(result)
    data = json.loads(result.stdout)
    assert data["role"] == "worker"
    assert (data["farm"], data["network"], data["port"]) == ("farm", "10.87.0.0/16", 42042)
    assert data["hub_overlay_ip"] == HUB_IP
    ca = {"name": "farm farmhand CA", "fingerprint": ca_cert(farm.root).fingerprint}
    assert data["ca"] == [ca]
    assert data["blocklist"] == []
    assert [h["name"] for h in data["hosts"]] == list(WORKER_NAMES)
    for n, host in enumerate(data["hosts"], start=1):
        on_disk = cert(farm.root, host["name"])
        assert host["ip"] == f"10.87.99.{n}/16"
        assert host["groups"] == GROUPS["worker"]
        assert host["fingerprint"] == on_disk.fingerprint
        assert host["not_after"] == on_disk.details.not_after
    assert "PRIVATE KEY" not in result.stdout
    for secret in key_material(farm.tar("workers.keybundle.age")):
        assert secret not in result.stdout


def test_bundle_show_asks_for_the_passphrase_on_a_terminal(farm_store: Path) -> None:
    code, transcript = run_in_pty(
        [sys.executable, "-m", "farmhand", "bundle", "show", str(farm_store / BUNDLES[2])],
        [(b"Farm passphrase: ", f"{PASSPHRASE}\n".encode())],
    )
    assert code == 0, transcript
    assert b"boss keybundle of farm 'farm'" in transcript
    assert SESSION_BOSS.encode() in transcript
    assert PASSPHRASE.encode() not in transcript  # hidden input: not echoed
    assert b"PRIVATE KEY" not in transcript


def test_keygen_asks_twice_on_a_terminal_and_hides_the_input(tmp_path: Path) -> None:
    target = tmp_path / "keys"
    code, transcript = run_in_pty(
        [sys.executable, "-m", "farmhand", "keygen", "--dir", str(target), "--workers", "1"],
        [
            (b"keep it to yourself): ", b"first-try-1234\n"),
            (b"Repeat the passphrase: ", b"first-try-9999\n"),
            (b"keep it to yourself): ", b"tiny7\n"),
            (b"Repeat the passphrase: ", b"tiny7\n"),
        ],
    )
    assert code == 1, transcript
    assert b"do not match" in transcript
    assert b"the passphrase is too short" in transcript
    assert b"first-try" not in transcript
    assert b"tiny7" not in transcript
    assert b"Traceback" not in transcript
    assert not target.exists()


# --------------------------------------------------------------------------------------------
# bundles and secrets open with the real age CLI


def age_decrypt(path: Path, out: Path) -> Members:
    """``age -d -o OUT FILE``, typing the passphrase at age's terminal prompt."""
    code, transcript = run_in_pty(
        ["age", "-d", "-o", str(out), str(path)],
        [(b"passphrase", f"{PASSPHRASE}\n".encode())],
    )
    assert code == 0, transcript
    assert PASSPHRASE.encode() not in transcript
    return untar(out.read_bytes())


@pytest.mark.interop
@needs_age
@pytest.mark.parametrize("bundle", BUNDLES)
def test_bundle_opens_with_the_age_cli(farm_store: Path, tmp_path: Path, bundle: str) -> None:
    members = age_decrypt(farm_store / bundle, tmp_path / "out.tar.gz")
    role = {"hub": "hub", "wor": "worker", "bos": "boss"}[bundle[:3]]
    names = {"hub": ["hub"], "worker": list(WORKER_NAMES), "boss": [SESSION_BOSS]}[role]
    meta = check_bundle_members(farm_store, members, names)
    assert meta["role"] == role
    assert meta["blocklist"] == []
    register = entries(farm_store)
    for host in meta["hosts"]:
        assert host["ip"] == f"{register[host['name']]['ip']}/16"
        assert host["groups"] == GROUPS[role]


@pytest.mark.interop
@needs_age
def test_secrets_open_with_the_age_cli_and_hold_the_ca_key(
    farm_store: Path, tmp_path: Path
) -> None:
    members = age_decrypt(farm_store / "secrets.age", tmp_path / "secrets.tar.gz")
    assert "ca.key" in members
    assert {n for n in members if n.startswith("keys/")} == {f"keys/{n}.key" for n in HOST_NAMES}
    assert not [
        n for n in members if "/" in n and not n.startswith(("keys/", "extras/", "passphrases/"))
    ]
    # One passphrase for all (the keygen here is given one): the vault records it for bundles.
    assert members["passphrases/bundles"][0].decode() == PASSPHRASE
    assert {mode for _, mode in members.values()} == {0o600}
    ca_key = pem.ed25519_private_from_pem(members["ca.key"][0])
    assert ca_key.public_key().public_bytes_raw() == ca_cert(farm_store).details.public_key
    for name in HOST_NAMES:
        raw = pem.x25519_private_from_pem(members[f"keys/{name}.key"][0])
        assert pem.x25519_public_from_private(raw) == cert(farm_store, name).details.public_key


# --------------------------------------------------------------------------------------------
# changing the store: add-workers, add-boss, revoke, renew


@SLOW
def test_revoke_a_worker_then_add_workers_never_reuses_it(store: Path) -> None:
    old = entries(store)["worker0005"]
    before = snapshot(store)
    result = run_cli("keys", "revoke", "worker0005", "--dir", store, env=WITH_PASSPHRASE)
    assert_ok(result)
    assert f"revoked worker0005 (10.87.99.5, fingerprint {old['fingerprint'][:16]})" in (
        result.stdout
    )
    # Every bundle is rebuilt with the new blocklist; keys and certificates stay.
    assert changed(before, snapshot(store)) == {"register.json", *BUNDLES}
    revoked = entries(store)["worker0005"]
    assert revoked["status"] == "revoked"
    assert isinstance(revoked["revoked_at"], int)
    assert revoked["fingerprint"] == old["fingerprint"]

    result = run_cli("keys", "add-workers", "2", "--dir", store, env=WITH_PASSPHRASE)
    assert_ok(result)
    assert "worker0006..worker0007" in result.stdout
    assert "10.87.99.6..10.87.99.7" in result.stdout
    after = entries(store)
    assert set(after) == {*HOST_NAMES, "worker0006", "worker0007"}
    assert (after["worker0006"]["ip"], after["worker0007"]["ip"]) == ("10.87.99.6", "10.87.99.7")
    assert len({e["ip"] for e in after.values()}) == len(after)
    for name in ("worker0006", "worker0007"):
        assert after[name]["groups"] == GROUPS["worker"]
        assert (store / "certs" / f"{name}.crt").stat().st_mode & 0o777 == 0o644

    hub, workers, boss = decrypt_tars([store / b for b in BUNDLES])
    for members in (hub, workers, boss):
        assert metadata(members)["blocklist"] == [old["fingerprint"]]
    live = ["worker0001", "worker0002", "worker0003", "worker0004", "worker0006", "worker0007"]
    check_bundle_members(store, workers, live)
    check_bundle_members(store, hub, ["hub"])
    check_bundle_members(store, boss, [SESSION_BOSS])

    for command in ("revoke", "renew"):
        again = run_cli("keys", command, "worker0005", "--dir", store, env=WITH_PASSPHRASE)
        assert_cli_error(again, "worker0005 is revoked", code=2)
    assert_ok(run_cli("keys", "verify", "--dir", store))


@SLOW
def test_add_boss_then_revoke_it(store: Path) -> None:
    before = snapshot(store)
    result = run_cli("keys", "add-boss", "bob", "--dir", store, env=WITH_PASSPHRASE)
    assert_ok(result)
    assert changed(before, snapshot(store)) == {
        "register.json",
        "secrets.age",
        "certs/bob.crt",
        "boss-bob.keybundle.age",
        *BUNDLES,  # every bundle lists the farm's peers
    }
    bob = entries(store)["bob"]
    assert (bob["ip"], bob["role"], bob["groups"]) == ("10.87.10.2", "boss", GROUPS["boss"])
    assert (store / "boss-bob.keybundle.age").stat().st_mode & 0o777 == 0o600
    shown = run_cli(
        "bundle", "show", "--json", store / "boss-bob.keybundle.age", env=WITH_PASSPHRASE
    )
    assert_ok(shown)
    data = json.loads(shown.stdout)
    assert data["role"] == "boss"
    assert [(h["name"], h["ip"]) for h in data["hosts"]] == [("bob", "10.87.10.2/16")]

    before = snapshot(store)
    result = run_cli("keys", "revoke", "bob", "--dir", store, env=WITH_PASSPHRASE)
    assert_ok(result)
    assert not (store / "boss-bob.keybundle.age").exists()
    assert changed(before, snapshot(store)) == {"register.json", "boss-bob.keybundle.age", *BUNDLES}
    assert entries(store)["bob"]["status"] == "revoked"
    shown = run_cli("bundle", "show", "--json", store / "hub.keybundle.age", env=WITH_PASSPHRASE)
    assert_ok(shown)
    assert json.loads(shown.stdout)["blocklist"] == [bob["fingerprint"]]

    before = snapshot(store)
    again = run_cli("keys", "add-boss", "bob", "--dir", store, env=WITH_PASSPHRASE)
    assert_cli_error(again, "'bob' is already taken", code=2)
    assert snapshot(store) == before


@SLOW
def test_renew_keeps_the_key_and_new_key_blocklists_the_old(store: Path, tmp_path: Path) -> None:
    first = {name: cert(store, name) for name in HOST_NAMES}
    result = run_cli(
        "keys", "renew", "--expiring-within", "3650", "--dir", store, env=WITH_PASSPHRASE
    )
    assert_ok(result)
    assert "renewed 7 certificate(s)" in result.stdout
    second = {name: cert(store, name) for name in HOST_NAMES}
    register = entries(store)
    for name in HOST_NAMES:
        assert second[name].fingerprint != first[name].fingerprint, name
        assert second[name].details.public_key == first[name].details.public_key, name
        assert second[name].details.not_before > first[name].details.not_before
        assert register[name]["fingerprint"] == second[name].fingerprint
        assert register[name]["previous_fingerprints"] == [first[name].fingerprint]
        assert register[name]["blocked_fingerprints"] == []

    # --new-key, with the passphrase from a file this time.
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text(f"{PASSPHRASE}\n")
    passphrase_file.chmod(0o600)
    before = snapshot(store)
    result = run_cli(
        "keys",
        "renew",
        "worker0002",
        "--new-key",
        "--passphrase-file",
        passphrase_file,
        "--dir",
        store,
    )
    assert_ok(result)
    assert changed(before, snapshot(store)) == {
        "register.json",
        "secrets.age",
        "certs/worker0002.crt",
        *BUNDLES,
    }
    third = cert(store, "worker0002")
    assert third.details.public_key != second["worker0002"].details.public_key
    retired = {first["worker0002"].fingerprint, second["worker0002"].fingerprint}
    entry = entries(store)["worker0002"]
    assert set(entry["blocked_fingerprints"]) == retired
    assert entry["status"] == "valid"

    hub, workers, boss = decrypt_tars([store / b for b in BUNDLES])
    for members in (hub, workers, boss):
        assert set(metadata(members)["blocklist"]) == retired
    check_bundle_members(store, workers, list(WORKER_NAMES))
    check_bundle_members(store, hub, ["hub"])
    check_bundle_members(store, boss, [SESSION_BOSS])
    assert_ok(run_cli("keys", "verify", "--dir", store))


def test_renew_expiring_within_with_nothing_due_changes_nothing(store: Path) -> None:
    before = snapshot(store)
    result = run_cli("keys", "renew", "--expiring-within", "30", "--dir", store)  # no passphrase
    assert_ok(result)
    assert "no certificate expires within 30 days; nothing to do" in result.stdout
    assert snapshot(store) == before


# --------------------------------------------------------------------------------------------
# bad input: one line, non-zero exit, store unchanged

BAD_STORE_INPUTS = [
    pytest.param(
        ["keys", "add-workers", "1"],
        WITH_WRONG_PASSPHRASE,
        1,
        ["wrong passphrase for this key store"],
        marks=SLOW,
        id="wrong-passphrase",
    ),
    pytest.param(
        ["keys", "add-workers", "1"],
        {},
        1,
        ["a passphrase is needed", "FARMHAND_PASSPHRASE", "--passphrase-file"],
        id="no-passphrase",
    ),
    pytest.param(
        ["keys", "add-boss", "carol"],
        {"FARMHAND_PASSPHRASE": ""},
        1,
        ["a passphrase is needed"],
        id="empty-passphrase-env",
    ),
    pytest.param(
        ["keys", "renew", "nosuch"],
        WITH_PASSPHRASE,
        2,
        ["no certificate named 'nosuch'", "farmhand keys list"],
        id="renew-unknown",
    ),
    pytest.param(
        ["keys", "renew", "worker0001", "ghost"],
        WITH_PASSPHRASE,
        2,
        ["no certificate named 'ghost'"],
        id="renew-one-unknown",
    ),
    pytest.param(
        ["keys", "revoke", "nosuch"],
        WITH_PASSPHRASE,
        2,
        ["no certificate named 'nosuch'"],
        id="revoke-unknown",
    ),
    pytest.param(
        ["keys", "revoke", "hub"],
        WITH_PASSPHRASE,
        2,
        ["the hub cannot be revoked", "keys renew hub --new-key"],
        id="revoke-hub",
    ),
    pytest.param(
        ["keys", "renew"],
        WITH_PASSPHRASE,
        2,
        ["name the certificates to renew, or give --expiring-within DAYS"],
        id="renew-nothing",
    ),
    pytest.param(
        ["keys", "renew", "worker0001", "--expiring-within", "30"],
        WITH_PASSPHRASE,
        2,
        ["name the certificates to renew, or give --expiring-within DAYS"],
        id="renew-both",
    ),
    pytest.param(
        ["keys", "add-boss", "worker0001"],
        WITH_PASSPHRASE,
        2,
        ["the name 'worker0001' is already taken"],
        id="boss-named-like-a-worker",
    ),
    pytest.param(
        ["keys", "add-boss", "worker9999"],
        WITH_PASSPHRASE,
        2,
        ["'worker9999' is already taken (or reserved)"],
        id="boss-named-like-a-future-worker",
    ),
    pytest.param(
        ["keys", "add-boss", SESSION_BOSS],
        WITH_PASSPHRASE,
        2,
        [f"the name '{SESSION_BOSS}' is already taken"],
        id="boss-twice",
    ),
    pytest.param(
        ["keys", "add-boss", "hub"],
        WITH_PASSPHRASE,
        2,
        ["the name 'hub' is already taken"],
        id="boss-named-hub",
    ),
    pytest.param(
        ["keys", "add-boss", "Bob"],
        WITH_PASSPHRASE,
        2,
        ["invalid name 'Bob'", "lowercase"],
        id="boss-uppercase",
    ),
    pytest.param(
        ["keys", "add-boss", "bob smith"],
        WITH_PASSPHRASE,
        2,
        ["invalid name 'bob smith'"],
        id="boss-with-space",
    ),
    pytest.param(
        ["keys", "add-boss", "bob_laptop"],
        WITH_PASSPHRASE,
        2,
        ["invalid name 'bob_laptop'"],
        id="boss-underscore",
    ),
    pytest.param(
        ["keys", "add-boss", "b" * 33],
        WITH_PASSPHRASE,
        2,
        ["invalid name", "at most 32"],
        id="boss-too-long",
    ),
    pytest.param(
        ["keys", "add-workers", "50000"],
        WITH_PASSPHRASE,
        2,
        [
            "the worker range 10.87.99.1-10.87.255.254 of 10.87.0.0/16 has room for 40185 "
            "more workers, not 50000: choose a larger --network"
        ],
        id="pool-full",
    ),
    pytest.param(
        ["keygen", "--workers", "1"],
        WITH_PASSPHRASE,
        1,
        ["already holds a key store", "farmhand keys add-workers"],
        id="keygen-on-existing-store",
    ),
]


@pytest.mark.parametrize(("args", "env", "code", "fragments"), BAD_STORE_INPUTS)
def test_bad_input_on_a_store(
    store: Path, args: list[str], env: dict[str, str], code: int, fragments: list[str]
) -> None:
    before = snapshot(store)
    result = run_cli(*args, "--dir", store, env=env)
    assert_cli_error(result, *fragments, code=code)
    assert snapshot(store) == before


@pytest.mark.parametrize(
    ("mode", "exists"), [(0o644, True), (0o640, True), (0o604, True), (0o600, False)]
)
def test_passphrase_file_must_be_private_and_exist(
    store: Path, tmp_path: Path, mode: int, exists: bool
) -> None:
    passphrase_file = tmp_path / "passphrase"
    if exists:
        passphrase_file.write_text(PASSPHRASE)
        passphrase_file.chmod(mode)
    before = snapshot(store)
    result = run_cli(
        "keys", "add-boss", "carol", "--passphrase-file", passphrase_file, "--dir", store
    )
    if exists:
        assert_cli_error(
            result, "is readable by other users", f"chmod 600 {passphrase_file}", code=1
        )
    else:
        assert_cli_error(result, f"passphrase file {passphrase_file} does not exist", code=1)
    assert snapshot(store) == before


def test_a_store_in_use_is_refused(store: Path) -> None:
    before = snapshot(store)
    with fs.locked(store):
        result = run_cli("keys", "add-workers", "1", "--dir", store, env=WITH_PASSPHRASE)
    assert_cli_error(result, "is in use by another farmhand run", code=1)
    assert snapshot(store) == before


@SLOW
def test_damaged_secrets_are_reported(store: Path) -> None:
    secrets = store / "secrets.age"
    secrets.write_bytes(secrets.read_bytes()[:-30])
    before = snapshot(store)
    result = run_cli("keys", "add-workers", "1", "--dir", store, env=WITH_PASSPHRASE)
    assert_cli_error(result, "secrets.age is damaged or truncated", code=1)
    assert snapshot(store) == before


def _edit_toml(old: str, new: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / "farm.toml"
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))

    return edit


def _write(rel: str, content: bytes) -> Callable[[Path], None]:
    def write(root: Path) -> None:
        (root / rel).write_bytes(content)

    return write


DAMAGED_STORES: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "overlapping-ranges": (
        _edit_toml('workers = "10.87.99.1-', 'workers = "10.87.98.1-'),
        [
            "farm.toml: address ranges bosses (10.87.10.1-10.87.98.255) and workers "
            "(10.87.98.1-10.87.255.254) overlap"
        ],
    ),
    "range-outside-network": (
        _edit_toml('workers = "10.87.99.1-10.87.255.254"', 'workers = "10.87.99.1-10.88.0.9"'),
        ["workers range 10.87.99.1-10.88.0.9 is not inside network 10.87.0.0/16"],
    ),
    "bad-port": (
        _edit_toml("port = 42042", "port = 0"),
        ["port = 0: expected a port number from 1 to 65535"],
    ),
    "not-toml": (_write("farm.toml", b"this is [not toml\n"), ["farm.toml is not valid TOML"]),
    # The error line is text, not Rich markup: brackets in it are printed as they are.
    "brackets-in-the-message": (
        _edit_toml('name = "farm"', 'name = "[farm]"'),
        ["invalid farm name '[farm]'"],
    ),
    "register-damaged": (_write("register.json", b'{"format": 1, "certificates": [{}'), []),
    "ca-damaged": (_write("ca.crt", b"-----BEGIN NEBULA CERTIFICATE-----\nAAAA\n"), ["ca.crt"]),
    "register-missing": (
        lambda root: (root / "register.json").unlink(),
        ["the key store is missing", "register.json"],
    ),
}


@pytest.mark.parametrize("kind", list(DAMAGED_STORES))
def test_a_damaged_store_is_reported_not_used(store: Path, kind: str) -> None:
    damage, fragments = DAMAGED_STORES[kind]
    damage(store)
    before = snapshot(store)
    for args in (["keys", "list"], ["keys", "verify"], ["keys", "add-workers", "1"]):
        result = run_cli(*args, "--dir", store, env=WITH_PASSPHRASE)
        assert_cli_error(result, *fragments, code=1)
        assert snapshot(store) == before


def test_a_valid_hand_edit_of_farm_toml_is_accepted(store: Path) -> None:
    _edit_toml('hub_address = ""', 'hub_address = "hub.example.com"')(store)
    assert keys_list(store)["hub_address"] == "hub.example.com"
    assert_ok(run_cli("keys", "verify", "--dir", store))


def _not_a_farm(tmp_path: Path, kind: str) -> Path:
    folder = tmp_path / "folder"
    if kind == "empty":
        folder.mkdir()
    elif kind == "random-files":
        (folder / "sub").mkdir(parents=True)
        (folder / "notes.txt").write_text("not a farm\n")
        (folder / "photo.jpg").write_bytes(os.urandom(256))
        (folder / "sub" / "farm.toml").write_text("format = 1\n")  # not at the top
    return folder


@pytest.mark.parametrize("kind", ["empty", "random-files", "missing"])
def test_keys_on_a_folder_that_is_not_a_farm(tmp_path: Path, kind: str) -> None:
    folder = _not_a_farm(tmp_path, kind)
    before = snapshot(folder) if folder.exists() else None
    message = "no key store at" if kind == "missing" else "is not a farmhand key store"
    for args in (
        ["keys", "list"],
        ["keys", "list", "--json"],
        ["keys", "verify"],
        ["keys", "add-workers", "1"],
        ["keys", "add-boss", "carol"],
        ["keys", "renew", "hub"],
        ["keys", "revoke", "worker0001"],
    ):
        result = run_cli(*args, "--dir", folder, env=WITH_PASSPHRASE)
        assert_cli_error(result, message, f"farmhand keygen --dir {folder}", code=1)
        assert (snapshot(folder) if folder.exists() else None) == before


def test_keygen_refuses_a_non_empty_folder_that_is_not_a_store(tmp_path: Path) -> None:
    folder = _not_a_farm(tmp_path, "random-files")
    before = snapshot(folder)
    result = run_cli("keygen", "--dir", folder, "--workers", "1", env=WITH_PASSPHRASE)
    assert_cli_error(
        result, "is not empty and not a key store", "choose an empty folder with --dir", code=1
    )
    assert snapshot(folder) == before


def test_keygen_refuses_a_file_as_the_store(tmp_path: Path) -> None:
    target = tmp_path / "keys"
    target.write_text("a file\n")
    result = run_cli("keygen", "--dir", target, "--workers", "1", env=WITH_PASSPHRASE)
    assert_cli_error(result, "exists and is not a folder", code=1)
    assert target.read_text() == "a file\n"


BAD_KEYGEN_INPUTS = [
    pytest.param(
        ["--network", "10.9.0.0/24", "--workers", "300"],
        WITH_PASSPHRASE,
        2,
        [
            "the worker range 10.9.0.50-10.9.0.254 of 10.9.0.0/24 has room for 205 more "
            "workers, not 300: choose a larger --network"
        ],
        id="pool-does-not-fit",
    ),
    pytest.param(
        ["--network", "10.9.0.0/27"],
        WITH_PASSPHRASE,
        2,
        ["network 10.9.0.0/27 is too small for a farm: use a /26 or larger"],
        id="network-too-small",
    ),
    pytest.param(
        ["--network", "10.9.0.1/24"],
        WITH_PASSPHRASE,
        2,
        ["invalid network '10.9.0.1/24'", "host bits set"],
        id="network-host-bits",
    ),
    pytest.param(
        ["--network", "farmnet"], WITH_PASSPHRASE, 2, ["invalid network 'farmnet'"], id="network"
    ),
    pytest.param(
        ["--boss", "a", "--boss", "a"],
        WITH_PASSPHRASE,
        2,
        ["a boss name is given twice"],
        id="boss-twice",
    ),
    pytest.param(
        ["--boss", "worker0003"],
        WITH_PASSPHRASE,
        2,
        ["the name 'worker0003' is already taken (or reserved)"],
        id="boss-named-like-a-worker",
    ),
    pytest.param(
        ["--boss", "hub"], WITH_PASSPHRASE, 2, ["the name 'hub' is already"], id="boss-hub"
    ),
    pytest.param(
        ["--boss", "Alice"], WITH_PASSPHRASE, 2, ["invalid name 'Alice'"], id="boss-uppercase"
    ),
    pytest.param(
        ["--boss", "big boss"],
        WITH_PASSPHRASE,
        2,
        ["invalid name 'big boss'"],
        id="boss-with-space",
    ),
    pytest.param(
        ["--name", "my farm"], WITH_PASSPHRASE, 2, ["invalid farm name 'my farm'"], id="farm-name"
    ),
    pytest.param(
        ["--ca-lifetime", "5x"],
        WITH_PASSPHRASE,
        2,
        ["invalid duration '5x'", "5y, 90d"],
        id="ca-lifetime-unit",
    ),
    pytest.param(
        ["--ca-lifetime", "0d"],
        WITH_PASSPHRASE,
        2,
        ["invalid duration '0d': must be longer than zero"],
        id="ca-lifetime-zero",
    ),
    pytest.param(
        ["--ca-lifetime", "forever"],
        WITH_PASSPHRASE,
        2,
        ["invalid duration 'forever'"],
        id="ca-lifetime-word",
    ),
    pytest.param(
        ["--cert-lifetime", "10d10"],
        WITH_PASSPHRASE,
        2,
        ["invalid duration '10d10'"],
        id="cert-lifetime-bad",
    ),
    pytest.param(
        ["--ca-lifetime", "1y", "--cert-lifetime", "366d"],
        WITH_PASSPHRASE,
        2,
        ["--cert-lifetime cannot be longer than --ca-lifetime"],
        id="cert-outlives-ca",
    ),
    pytest.param(
        ["--cert-lifetime", "6y"],
        WITH_PASSPHRASE,
        2,
        ["--cert-lifetime cannot be longer than --ca-lifetime"],
        id="cert-outlives-default-ca",
    ),
    pytest.param(["--port", "0"], WITH_PASSPHRASE, 2, ["invalid port 0"], id="port-zero"),
    pytest.param(
        ["--port", "70000"],
        WITH_PASSPHRASE,
        2,
        ["invalid port 70000: must be between 1 and 65535"],
        id="port-too-big",
    ),
    pytest.param(
        ["--hub-address", "hub.example.com:4242"],
        WITH_PASSPHRASE,
        2,
        ["invalid hub address", "the port is --port"],
        id="hub-address-with-port",
    ),
    pytest.param(
        ["--hub-address", "https://hub.example.com"],
        WITH_PASSPHRASE,
        2,
        ["invalid hub address"],
        id="hub-address-url",
    ),
    pytest.param(
        ["--hub-address", "1.2.3"],
        WITH_PASSPHRASE,
        2,
        ["invalid hub address '1.2.3': not a host name or IP address"],
        id="hub-address-partial-ip",
    ),
    pytest.param(
        ["--hub-address", "bad_host!"],
        WITH_PASSPHRASE,
        2,
        ["invalid hub address 'bad_host!'"],
        id="hub-address-junk",
    ),
    pytest.param(
        ["--workers", "1"],
        {"FARMHAND_PASSPHRASE": "tiny7"},
        1,
        ["the passphrase is too short: use at least 8 characters"],
        id="passphrase-too-short",
    ),
    pytest.param(
        ["--workers", "1"],
        {},
        1,
        ["a passphrase is needed: set FARMHAND_PASSPHRASE, use --passphrase-file FILE"],
        id="no-passphrase-without-terminal",
    ),
]


@pytest.mark.parametrize(("args", "env", "code", "fragments"), BAD_KEYGEN_INPUTS)
def test_bad_keygen_input_creates_nothing(
    tmp_path: Path, args: list[str], env: dict[str, str], code: int, fragments: list[str]
) -> None:
    target = tmp_path / "keys"
    result = run_cli("keygen", "--dir", target, *args, env=env)
    assert_cli_error(result, *fragments, code=code)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


# Bad keybundles for `bundle show`: each maker returns the file's bytes.


def _workers_bundle(farm: Farm) -> bytes:
    return (farm.root / "workers.keybundle.age").read_bytes()


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def _set(data: bytes, index: int, choices: bytes) -> bytes:
    """``data`` with the byte at ``index`` replaced by the first of ``choices`` it differs from."""
    out = bytearray(data)
    out[index] = next(c for c in choices if c != data[index])
    return bytes(out)


def _header_end(data: bytes) -> int:
    return data.index(b"\n---") + 1


def _keys_swapped(farm: Farm) -> bytes:
    members = farm.tar("workers.keybundle.age")
    files = [(name, content, mode) for name, (content, mode) in members.items()]
    keys = {name: content for name, content, _ in files if name.startswith("keys/")}
    a, b = "keys/worker0001.key", "keys/worker0002.key"
    swapped = [
        (name, keys[b] if name == a else keys[a] if name == b else content, mode)
        for name, content, mode in files
    ]
    return bytes(pyrage.passphrase.encrypt(pack(swapped, 0), PASSPHRASE))


def _x25519_age(farm: Farm) -> bytes:
    recipient = pyrage.x25519.Identity.generate().to_public()
    return bytes(pyrage.encrypt(b"hello", [recipient]))


BAD_BUNDLES: list[Any] = [
    pytest.param(
        _workers_bundle,
        WITH_WRONG_PASSPHRASE,
        ["wrong passphrase for {file}"],
        marks=SLOW,
        id="wrong-passphrase",
    ),
    pytest.param(
        lambda farm: _workers_bundle(farm)[:-40],
        WITH_PASSPHRASE,
        ["{file} is damaged or truncated (the passphrase was right)"],
        marks=SLOW,
        id="truncated-payload",
    ),
    pytest.param(
        lambda farm: _workers_bundle(farm)[: _header_end(_workers_bundle(farm)) - 20],
        WITH_PASSPHRASE,
        ["{file} is truncated or its header is damaged"],
        id="truncated-header",
    ),
    pytest.param(
        lambda farm: _flip(_workers_bundle(farm), len(_workers_bundle(farm)) - 100),
        WITH_PASSPHRASE,
        ["{file} is damaged or truncated (the passphrase was right)"],
        marks=SLOW,
        id="tampered-payload",
    ),
    pytest.param(
        lambda farm: _set(_workers_bundle(farm), _header_end(_workers_bundle(farm)) + 8, b"AB"),
        WITH_PASSPHRASE,
        ["{file} is truncated or its header is damaged"],
        marks=SLOW,
        id="tampered-header-mac",
    ),
    pytest.param(
        lambda farm: _set(_workers_bundle(farm), _header_end(_workers_bundle(farm)) + 8, b"@"),
        WITH_PASSPHRASE,
        ["{file} is truncated or its header is damaged"],
        id="header-not-base64",
    ),
    pytest.param(
        lambda farm: os.urandom(600),
        WITH_PASSPHRASE,
        ["{file} is not an age-encrypted file"],
        id="not-age",
    ),
    pytest.param(
        lambda farm: b"", WITH_PASSPHRASE, ["{file} is not an age-encrypted file"], id="empty"
    ),
    pytest.param(
        lambda farm: (farm.root / "ca.crt").read_bytes(),
        WITH_PASSPHRASE,
        ["{file} is not an age-encrypted file"],
        id="a-certificate",
    ),
    pytest.param(
        _x25519_age,
        WITH_PASSPHRASE,
        ["{file} is not encrypted with a passphrase"],
        id="age-for-a-recipient",
    ),
    pytest.param(
        lambda farm: bytes(pyrage.passphrase.encrypt(os.urandom(3000), PASSPHRASE)),
        WITH_PASSPHRASE,
        ["{file} decrypted, but is not a farmhand keybundle"],
        marks=SLOW,
        id="age-but-not-a-bundle",
    ),
    pytest.param(
        lambda farm: (farm.root / "secrets.age").read_bytes(),
        WITH_PASSPHRASE,
        ["{file} decrypted, but is not a farmhand keybundle"],
        marks=SLOW,
        id="the-secrets-file",
    ),
    pytest.param(
        _keys_swapped,
        WITH_PASSPHRASE,
        ["{file}: key worker0001 does not match its certificate"],
        marks=SLOW,
        id="keys-swapped",
    ),
    pytest.param(
        _workers_bundle,
        {},
        ["a passphrase is needed"],
        id="no-passphrase",
    ),
]


@pytest.mark.parametrize(("make", "env", "fragments"), BAD_BUNDLES)
def test_bad_bundle(
    farm: Farm,
    tmp_path: Path,
    make: Callable[[Farm], bytes],
    env: dict[str, str],
    fragments: list[str],
) -> None:
    bundle = tmp_path / "suspect.keybundle.age"
    content = make(farm)
    bundle.write_bytes(content)
    result = run_cli("bundle", "show", bundle, env=env)
    assert_cli_error(result, *(f.format(file=bundle) for f in fragments), code=1)
    assert "PRIVATE KEY" not in result.stdout + result.stderr
    assert bundle.read_bytes() == content
    assert sorted(tmp_path.iterdir()) == [bundle]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["keygen", "--port", "abc"], "invalid value for '--port'"),
        (["keygen", "--workers", "-1"], "invalid value for '--workers'"),
        (["keys", "add-workers", "0"], "invalid value for 'count'"),
        (["keys", "add-workers", "many"], "invalid value for 'count'"),
        (["bundle", "show", "no-such.keybundle.age"], "no such file: no-such.keybundle.age"),
    ],
)
def test_malformed_arguments_are_usage_errors(
    tmp_path: Path, args: list[str], fragment: str
) -> None:
    """Errors Typer itself reports (types, ranges) come as its usage box, never a traceback."""
    store_option: list[str | Path] = [] if args[0] == "bundle" else ["--dir", tmp_path / "keys"]
    result = run_cli(*args, *store_option, cwd=tmp_path, env=WITH_PASSPHRASE)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert fragment in " ".join(result.stderr.replace("│", " ").split()).lower()
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# interrupted changes leave no half state


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (Linux /proc; empty elsewhere)."""
    out = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat_file.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat_file.parent.name))
    return out


def _kill_leftovers(pids: list[int]) -> None:
    """SIGKILL processes this test started (checked by their command line) if still alive."""
    for pid in pids:
        with contextlib.suppress(OSError):
            if b"farmhand" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)


@SLOW
def test_killed_add_workers_leaves_no_half_state(store: Path) -> None:
    """SIGKILL farmhand while scrypt runs: nothing changes, and nothing stays locked.

    Only the main process is killed, as the OOM killer or a crash would: helper processes it
    forked for encryption may outlive it, and must not keep the store locked.
    """
    before = snapshot(store)
    proc = popen_cli("keys", "add-workers", "200", "--dir", store, env=WITH_PASSPHRASE)
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    helpers: list[int] = []
    try:
        assert proc.stdout is not None
        seen = []
        # Signing is done once this line shows; what remains is scrypt, then the commit.
        for line in proc.stdout:
            seen.append(line)
            if "encrypting" in line:
                break
        deadline = time.monotonic() + 2
        while not helpers and time.monotonic() < deadline:  # let encryption get going
            time.sleep(0.05)
            helpers = _children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, "".join(seen)
        assert_no_secret("".join(seen))

        assert_ok(run_cli("keys", "list", "--dir", store))
        assert snapshot(store) == before

        result = run_cli("keys", "add-workers", "200", "--dir", store, env=WITH_PASSPHRASE)
        assert_ok(result)
    finally:
        watchdog.cancel()
        _kill_leftovers(helpers)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    assert "worker0006..worker0205" in result.stdout
    register = entries(store)
    workers = [e for e in register.values() if e["role"] == "worker"]
    assert len(workers) == 205
    assert [e["ip"] for e in workers[5:]] == [f"10.87.99.{n}" for n in range(6, 206)]
    assert_ok(run_cli("keys", "verify", "--dir", store))
    assert not (store / fs.STAGING).exists()


def test_an_uncommitted_leftover_change_is_rolled_back(store: Path) -> None:
    before = snapshot(store)
    staging = store / fs.STAGING
    staging.mkdir(mode=0o700)
    (staging / "0").write_bytes(b"half a change")
    (staging / "manifest.json").write_text('[["register.json", true]]')
    result = run_cli("keys", "list", "--dir", store)
    assert_ok(result)
    assert snapshot(store) == before


class _FlakyOs:
    """Stands in for ``os`` inside farmhand.keystore.fs: rename fails after ``allowed`` calls."""

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def replace(self, src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        if self.calls >= self.allowed:
            raise OSError(errno.EIO, "simulated crash during commit")
        self.calls += 1
        os.replace(src, dst)


@SLOW
@pytest.mark.parametrize("renames", [0, 6])
def test_commit_interrupted_after_some_renames(
    store: Path, monkeypatch: pytest.MonkeyPatch, renames: int
) -> None:
    """3 new workers: 1 rename for the COMMIT marker, then 3 certs, secrets, bundle, register.

    0 renames: the marker never lands, so the change is rolled back at once. 6 renames:
    everything but the register is in place; the next open rolls the change forward.
    """
    before = snapshot(store)
    flaky = _FlakyOs(renames)
    monkeypatch.setattr(fs, "os", flaky)
    with pytest.raises(OSError, match="simulated crash"):
        pki.add_workers(KeyStore.open(store), 3, PASSPHRASE)
    monkeypatch.undo()

    if renames == 0:
        assert snapshot(store) == before
        assert len(KeyStore.open(store).register.entries) == len(HOST_NAMES)
        return

    # Half state on disk: committed, some files moved, the register not yet.
    assert (store / fs.STAGING / "COMMIT").exists()
    assert (store / "certs" / "worker0008.crt").exists()
    assert (store / "register.json").read_bytes() == before["register.json"][0]

    opened = KeyStore.open(store)
    assert not (store / fs.STAGING).exists()
    names = [e.name for e in opened.register.entries]
    assert names == [*HOST_NAMES, "worker0006", "worker0007", "worker0008"]
    assert_ok(run_cli("keys", "verify", "--dir", store))
    workers = decrypt_tar(store / "workers.keybundle.age")
    live = [*WORKER_NAMES, "worker0006", "worker0007", "worker0008"]
    check_bundle_members(store, workers, live)
    vault = opened.unlock(PASSPHRASE)
    assert set(vault.host_keys) == set(names)
    for name in names:
        public = pem.x25519_public_from_private(vault.host_key(name))
        assert public == cert(store, name).details.public_key


# --------------------------------------------------------------------------------------------
# the passphrase never travels in argv and never shows in output


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command under ``command`` (duck-typed: recent Typer vendors its own click)."""
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


PASSPHRASE_OPTION = re.compile(r"--passphrase(?!-file)")


def test_no_command_takes_a_passphrase_value() -> None:
    root = typer.main.get_command(app)
    with_file = set()
    for path, command in _commands(root):
        options = [o for p in command.params for o in (*p.opts, *p.secondary_opts)]
        assert not [o for o in options if PASSPHRASE_OPTION.match(o)], path
        # No option takes a secret as its value; a yes/no flag about secrets
        # (`files --with-secrets`) carries none.
        valued = [
            o
            for p in command.params
            if not getattr(p, "is_flag", False)
            for o in (*p.opts, *p.secondary_opts)
        ]
        assert not [o for o in valued if "secret" in o or "password" in o], path
        if "--passphrase-file" in options:
            with_file.add(" ".join(path))
        help_text = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"}).output
        assert not PASSPHRASE_OPTION.search(help_text), path
    # Issue #2's commands that need the passphrase (later commands may add themselves).
    assert with_file >= {
        "keygen",
        "keys add-workers",
        "keys add-boss",
        "keys renew",
        "keys revoke",
        "bundle show",
    }


def test_help_of_the_real_cli_offers_only_a_passphrase_file() -> None:
    for args in (["keygen"], ["keys", "add-workers"], ["bundle", "show"]):
        result = run_cli(*args, "--help")
        assert_ok(result)
        assert "--passphrase-file" in result.stdout
        assert not PASSPHRASE_OPTION.search(result.stdout)


@SLOW
def test_rebundle_carries_an_edited_farm_toml_into_every_bundle(store: Path) -> None:
    plan_file = store / "farm.toml"
    # Top-level keys go before farm.toml's first [table].
    plan_file.write_text('worker_hourly_price = 0.42\ncurrency = "EUR"\n' + plan_file.read_text())
    before = snapshot(store)
    result = run_cli("keys", "rebundle", "--dir", store, env=WITH_PASSPHRASE)
    assert_ok(result)
    assert changed(before, snapshot(store)) == set(BUNDLES)
    for name in BUNDLES:
        plan = metadata(decrypt_tar(store / name))["plan"]
        assert (plan["worker_hourly_price"], plan["currency"]) == (0.42, "EUR")
    assert_ok(run_cli("keys", "verify", "--dir", store))
    # A broken edit is a one-line error and nothing is rewritten.
    plan_file.write_text(plan_file.read_text() + "\nport = [\n")
    before = snapshot(store)
    broken = run_cli("keys", "rebundle", "--dir", store, env=WITH_PASSPHRASE)
    assert_cli_error(broken, "farm.toml")
    assert snapshot(store) == before
