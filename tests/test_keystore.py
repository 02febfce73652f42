"""The key store's building blocks, in process and without scrypt (issue #2).

The farm plan and its layouts, farm.toml round trips and hand-edit checks, durations, the
register, safe file changes (fs), where the passphrase comes from, certificate planning and
``verify_store`` on a store written here by hand (no age files, so every test is fast).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from farmhand.durations import format_duration, parse_duration
from farmhand.errors import FarmhandError, PassphraseError, StoreError, UsageError
from farmhand.keystore import fs, pki
from farmhand.keystore.plan import (
    DEFAULT_BOSSES,
    DEFAULT_PORT,
    DEFAULT_WORKERS,
    AddressRange,
    FarmPlan,
    Role,
    default_addresses,
    new_plan,
)
from farmhand.keystore.register import Entry, Register
from farmhand.keystore.store import KeyStore, check_new_store, prepare_new_store
from farmhand.nebula.cert import NebulaCertificate, create_ca
from farmhand.passphrase import ENV_VAR, MIN_LENGTH, read_passphrase_file, resolve_passphrase

NOW = 1_800_000_000
YEAR = 365 * 86400

# --------------------------------------------------------------------------------------------
# the farm plan: defaults and layouts


def test_plan_defaults_follow_the_design() -> None:
    plan = new_plan()
    assert (DEFAULT_WORKERS, DEFAULT_BOSSES, DEFAULT_PORT) == (100, ("boss1",), 42042)
    assert plan.name == "farm"
    assert plan.network == IPv4Network("10.87.0.0/16")
    assert plan.port == 42042
    assert plan.hub_address == ""
    assert plan.ca_lifetime == plan.cert_lifetime == 5 * YEAR
    a = plan.addresses
    assert a.hub == IPv4Address("10.87.0.1")
    assert str(a.lighthouses) == "10.87.0.1-10.87.0.255"
    assert str(a.servers) == "10.87.1.1-10.87.9.255"
    assert str(a.bosses) == "10.87.10.1-10.87.98.255"
    assert str(a.workers) == "10.87.99.1-10.87.255.254"


@pytest.mark.parametrize(
    ("network", "lighthouses", "servers", "bosses", "workers"),
    [
        (
            "10.0.0.0/8",
            "10.0.0.1-10.0.0.255",
            "10.0.1.1-10.0.9.255",
            "10.0.10.1-10.0.98.255",
            "10.0.99.1-10.255.255.254",
        ),
        (
            "172.16.0.0/12",
            "172.16.0.1-172.16.0.255",
            "172.16.1.1-172.16.9.255",
            "172.16.10.1-172.16.98.255",
            "172.16.99.1-172.31.255.254",
        ),
        (
            "192.168.7.0/24",
            "192.168.7.1-192.168.7.3",
            "192.168.7.4-192.168.7.9",
            "192.168.7.10-192.168.7.49",
            "192.168.7.50-192.168.7.254",
        ),
        (
            "10.9.0.0/26",
            "10.9.0.1-10.9.0.1",
            "10.9.0.2-10.9.0.2",
            "10.9.0.3-10.9.0.11",
            "10.9.0.12-10.9.0.62",
        ),
    ],
)
def test_scaled_layouts(
    network: str, lighthouses: str, servers: str, bosses: str, workers: str
) -> None:
    plan = new_plan(network=network)
    a = plan.addresses
    assert a.hub == IPv4Network(network).network_address + 1
    assert (str(a.lighthouses), str(a.servers), str(a.bosses), str(a.workers)) == (
        lighthouses,
        servers,
        bosses,
        workers,
    )


@pytest.mark.parametrize("prefix", range(8, 27))
def test_every_allowed_prefix_gives_a_valid_ordered_layout(prefix: int) -> None:
    network = IPv4Network(f"10.0.0.0/{prefix}")
    plan = new_plan(network=str(network))
    plan.check()
    a = plan.addresses
    ranges = [a.lighthouses, a.servers, a.bosses, a.workers]
    assert a.hub == a.lighthouses.first == network.network_address + 1
    for before, after in itertools.pairwise(ranges):
        assert before.last < after.first
    assert a.workers.last == network.broadcast_address - 1
    assert all(r.size >= 1 for r in ranges)
    if prefix <= 24:
        assert a.workers.size >= DEFAULT_WORKERS
    assert default_addresses(network) == a


@pytest.mark.parametrize("network", ["10.9.0.0/27", "10.9.0.0/30", "10.9.0.1/32"])
def test_networks_smaller_than_a_26_are_refused(network: str) -> None:
    with pytest.raises(UsageError, match="too small for a farm: use a /26 or larger"):
        new_plan(network=network)


@pytest.mark.parametrize(
    ("network", "message"),
    [
        ("10.9.0.1/24", "host bits set"),
        ("10.9.0.0/33", "invalid network"),
        ("fd00::/64", "invalid network"),
        ("farm", "invalid network 'farm'"),
        ("", "invalid network"),
    ],
)
def test_invalid_networks_are_refused(network: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        new_plan(network=network)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "my farm"}, "invalid farm name"),
        ({"name": ""}, "invalid farm name"),
        ({"port": 0}, "invalid port 0"),
        ({"port": 65536}, "invalid port 65536"),
        ({"hub_address": "hub.example.com:4242"}, "the port is --port"),
        ({"hub_address": "http://hub.example.com"}, "invalid hub address"),
        ({"hub_address": "10.1.2"}, "not a host name or IP address"),
        ({"hub_address": "-hub.example.com"}, "not a host name or IP address"),
        ({"hub_address": "2001:db8::1"}, "Nebula here listens on IPv4 only"),
        ({"hub_address": "[2001:db8::1]"}, "Nebula here listens on IPv4 only"),
        ({"hub_address": "hub.example.com\n"}, "whitespace or a control character"),
    ],
)
def test_invalid_plan_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        new_plan(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given_address", "stored"),
    [
        ("hub.example.com", "hub.example.com"),
        ("  203.0.113.7 ", "203.0.113.7"),
        ("", ""),
    ],
)
def test_valid_hub_addresses(given_address: str, stored: str) -> None:
    assert new_plan(hub_address=given_address).hub_address == stored


# --------------------------------------------------------------------------------------------
# farm.toml: round trip and hand edits


def test_farm_toml_round_trip() -> None:
    plan = new_plan("render-farm", "10.50.0.0/16", 4242, "hub.example.com", 2 * YEAR, 90 * 86400)
    text = plan.to_toml()
    assert text.startswith("# farmhand farm plan")
    again = FarmPlan.from_toml(text)
    assert again == plan
    assert again.to_toml() == text


def test_farm_toml_keeps_its_settings_as_written() -> None:
    text = new_plan().to_toml() + '\n[artifacts.deadline]\nsha256 = "' + "AB" * 32 + '"\n'
    plan = FarmPlan.from_toml(text)
    assert plan.settings.given == {"artifacts": {"deadline": {"sha256": "AB" * 32}}}
    assert plan.settings.artifact_sha256 == {"deadline": "ab" * 32}
    assert FarmPlan.from_toml(plan.to_toml()) == plan
    assert plan.to_toml() == text


def test_farm_toml_refuses_keys_it_does_not_know() -> None:
    text = new_plan().to_toml() + '\n[deploy]\nuser = "render"\n'
    with pytest.raises(StoreError) as refused:
        FarmPlan.from_toml(text)
    assert str(refused.value) == 'farm.toml: deploy.user = "render": unknown setting ' + (
        "('farmhand keys settings' lists every setting)"
    )


DEFAULT_TOML = new_plan().to_toml()

HAND_EDITS = {
    "workers-overlap-bosses": (
        'workers = "10.87.99.1-',
        'workers = "10.87.98.1-',
        "address ranges bosses (10.87.10.1-10.87.98.255) and workers "
        "(10.87.98.1-10.87.255.254) overlap",
    ),
    "lighthouses-overlap-servers": (
        'lighthouses = "10.87.0.1-10.87.0.255"',
        'lighthouses = "10.87.0.1-10.87.1.10"',
        "address ranges lighthouses (10.87.0.1-10.87.1.10) and servers",
    ),
    "hub-outside-lighthouses": (
        'hub = "10.87.0.1"',
        'hub = "10.87.1.1"',
        "hub address 10.87.1.1 is not in the lighthouses range",
    ),
    "range-outside-network": (
        'workers = "10.87.99.1-10.87.255.254"',
        'workers = "10.87.99.1-10.87.255.255"',
        "workers range 10.87.99.1-10.87.255.255 is not inside network 10.87.0.0/16",
    ),
    "network-shrunk": (
        'network = "10.87.0.0/16"',
        'network = "10.87.0.0/24"',
        "is not inside network 10.87.0.0/24",
    ),
    "range-reversed": (
        'workers = "10.87.99.1-10.87.255.254"',
        'workers = "10.87.255.254-10.87.99.1"',
        "invalid workers range '10.87.255.254-10.87.99.1': last address before first",
    ),
    "range-not-a-range": (
        'bosses = "10.87.10.1-10.87.98.255"',
        'bosses = "10.87.10.1"',
        "invalid bosses range '10.87.10.1': expect FIRST-LAST",
    ),
    "format": ("format = 1", "format = 2", "format = 2: unsupported farm plan format"),
    "name-missing": ('name = "farm"\n', "", "the farm plan is incomplete: name is missing"),
    "port-not-a-number": ("port = 42042", 'port = "udp"', 'port = "udp": expected a port number'),
    "port-out-of-range": ("port = 42042", "port = 70000", "port = 70000: expected a port number"),
    "lifetime": ('ca_lifetime = "5y"', 'ca_lifetime = "5q"', 'ca_lifetime = "5q": expected a dur'),
    "hub-address": ('hub_address = ""', 'hub_address = "http://x"', "invalid hub address"),
    "farm-name": ('name = "farm"', 'name = "my farm"', "invalid farm name 'my farm'"),
    "farm-name-newline": ('name = "farm"', 'name = "farm\\n"', "invalid farm name 'farm\\n'"),
    "farm-user-newline": (
        'farm_user = "farmhand"',
        'farm_user = "farmhand\\n"',
        "invalid farm user 'farmhand\\n'",
    ),
    "not-toml": ("[addresses]", "[addresses", "is not valid TOML"),
}


@pytest.mark.parametrize("edit", list(HAND_EDITS))
def test_hand_edits_of_farm_toml_are_checked(edit: str) -> None:
    old, new, message = HAND_EDITS[edit]
    assert old in DEFAULT_TOML
    with pytest.raises(StoreError) as caught:
        FarmPlan.from_toml(DEFAULT_TOML.replace(old, new), "keys/farm.toml")
    assert str(caught.value).startswith("keys/farm.toml")
    assert message in str(caught.value)


def test_a_valid_hand_edit_is_accepted() -> None:
    edited = DEFAULT_TOML.replace('hub_address = ""', 'hub_address = "hub.example.com"')
    edited = edited.replace('cert_lifetime = "5y"', 'cert_lifetime = "1y30d"')
    plan = FarmPlan.from_toml(edited)
    assert plan.hub_address == "hub.example.com"
    assert plan.cert_lifetime == YEAR + 30 * 86400


def test_address_ranges() -> None:
    rng = AddressRange.parse(" 10.0.0.5 - 10.0.0.9 ", "test")
    assert (str(rng), rng.size) == ("10.0.0.5-10.0.0.9", 5)
    assert IPv4Address("10.0.0.9") in rng
    assert IPv4Address("10.0.0.10") not in rng
    assert "10.0.0.5" not in rng  # only addresses, not strings
    assert rng.overlaps(AddressRange.parse("10.0.0.9-10.0.0.20", "x"))
    assert not rng.overlaps(AddressRange.parse("10.0.0.10-10.0.0.20", "x"))


# --------------------------------------------------------------------------------------------
# durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5y", 5 * YEAR),
        ("90d", 90 * 86400),
        ("1y30d", YEAR + 30 * 86400),
        ("8760h", YEAR),
        ("2w", 14 * 86400),
        ("90m", 5400),
        ("45s", 45),
        (" 5Y ", 5 * YEAR),
        ("1d12h", 86400 + 12 * 3600),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid duration ''"),
        ("   ", "invalid duration"),
        ("5", "invalid duration '5'"),
        ("y", "invalid duration 'y'"),
        ("5x", "invalid duration '5x'"),
        ("1.5y", "invalid duration '1.5y'"),
        ("-1d", "invalid duration '-1d'"),
        ("5 y", "invalid duration '5 y'"),
        ("forever", "invalid duration 'forever'"),
        ("0d", "must be longer than zero"),
        ("0y0d", "must be longer than zero"),
    ],
)
def test_bad_durations(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        parse_duration(text)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5 * YEAR, "5y"), (YEAR + 30 * 86400, "1y30d"), (14 * 86400, "14d"), (61, "1m1s"), (0, "0s")],
)
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=1, max_value=200 * YEAR))
def test_durations_round_trip(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


# --------------------------------------------------------------------------------------------
# the register


def _ca(now: int = NOW, lifetime: int = 5 * YEAR) -> tuple[NebulaCertificate, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    ca = create_ca("test CA", key, now - 300, now + lifetime, ips=(IPv4Network("10.87.0.0/16"),))
    return ca, key


def _entry(name: str, role: Role, ip: str, fingerprint: str, **extra: object) -> Entry:
    return Entry(
        name=name,
        role=role,
        ip=IPv4Address(ip),
        groups=role.groups,
        fingerprint=fingerprint,
        not_before=NOW - 300,
        not_after=NOW + YEAR,
        **extra,  # type: ignore[arg-type]
    )


def _register() -> Register:
    return Register(
        (
            _entry("hub", Role.HUB, "10.87.0.1", "aa" * 32),
            _entry("worker0001", Role.WORKER, "10.87.99.1", "bb" * 32),
            _entry(
                "worker0002",
                Role.WORKER,
                "10.87.99.2",
                "cc" * 32,
                revoked_at=NOW,
                previous_fingerprints=("c0" * 32,),
            ),
            _entry(
                "boss1",
                Role.BOSS,
                "10.87.10.1",
                "dd" * 32,
                previous_fingerprints=("d0" * 32, "d1" * 32),
                blocked_fingerprints=("d0" * 32,),
            ),
        )
    )


def test_register_json_round_trip() -> None:
    register = _register()
    text = register.to_json()
    assert json.loads(text)["format"] == 1
    assert Register.from_json(text) == register


def test_register_lookups_and_blocklist() -> None:
    register = _register()
    assert register.get("worker0001") is not None
    assert register.get("nobody") is None
    assert [e.name for e in register.by_role(Role.WORKER)] == ["worker0001", "worker0002"]
    assert [e.name for e in register.by_role(Role.WORKER, live_only=True)] == ["worker0001"]
    assert IPv4Address("10.87.99.2") in register.used_addresses  # revoked, still used
    assert register.names == {"hub", "worker0001", "worker0002", "boss1"}
    # A revoked entry blocks all its fingerprints; a renewed one only the retired keys.
    assert register.blocklist == {"cc" * 32, "c0" * 32, "d0" * 32}


def test_entry_renewal_remembers_and_blocks_old_fingerprints() -> None:
    ca, key = _ca()
    plan = new_plan()
    spec = pki.HostSpec("worker0001", Role.WORKER, IPv4Address("10.87.99.1"))
    certs, private = pki.sign_hosts(ca, key, plan, [spec], NOW)
    entry = Entry.for_certificate(certs["worker0001"], Role.WORKER)
    again, _ = pki.sign_hosts(ca, key, plan, [spec], NOW + 60, keys=private)
    kept = entry.renewed(again["worker0001"], block_old=False)
    assert kept.fingerprint == again["worker0001"].fingerprint != entry.fingerprint
    assert kept.previous_fingerprints == (entry.fingerprint,)
    assert kept.blocklisted == frozenset()
    rekeyed, _ = pki.sign_hosts(ca, key, plan, [spec], NOW + 120)
    blocked = kept.renewed(rekeyed["worker0001"], block_old=True)
    assert blocked.blocklisted == {entry.fingerprint, kept.fingerprint}
    assert blocked.fingerprint not in blocked.blocklisted


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is damaged"),
        ("{not json", "is damaged"),
        ("[]", "is damaged"),
        ('{"format": 2, "certificates": []}', "unsupported format 2"),
        ('{"format": 1}', "is damaged"),
        ('{"format": 1, "certificates": [{"name": "hub"}]}', "is damaged"),
        ('{"format": 1, "certificates": "hub"}', "is damaged"),
    ],
)
def test_register_damage_is_detected(text: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as caught:
        Register.from_json(text, "keys/register.json")
    assert str(caught.value).startswith("keys/register.json")


@pytest.mark.parametrize(
    ("field", "value"),
    [("role", "king"), ("ip", "10.87.999.1"), ("not_after", "soon"), ("groups", None)],
)
def test_register_entry_damage_is_detected(field: str, value: object) -> None:
    data = json.loads(_register().to_json())
    data["certificates"][1][field] = value
    with pytest.raises(StoreError, match=r"register\.json is damaged"):
        Register.from_json(json.dumps(data))


def test_register_with_a_name_twice_is_damaged() -> None:
    data = json.loads(_register().to_json())
    data["certificates"].append(data["certificates"][1])
    with pytest.raises(StoreError, match="a name appears twice"):
        Register.from_json(json.dumps(data))


# --------------------------------------------------------------------------------------------
# fs: atomic writes and transactions


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_wide() -> Iterator[None]:
    """A permissive umask, so tests see modes set explicitly rather than by the umask."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_write_new_sets_the_mode_and_never_overwrites(tmp_path: Path, umask_wide: None) -> None:
    path = tmp_path / "secret"
    fs.write_new(path, b"one", fs.SECRET_MODE)
    assert (path.read_bytes(), _mode(path)) == (b"one", 0o600)
    with pytest.raises(FileExistsError):
        fs.write_new(path, b"two", fs.SECRET_MODE)
    assert path.read_bytes() == b"one"
    old = os.umask(0o077)
    try:
        fs.write_new(tmp_path / "public", b"x", fs.PUBLIC_MODE)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "public") == 0o644


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"old")
    path.chmod(0o644)
    fs.atomic_write(path, b"new", fs.SECRET_MODE)
    assert (path.read_bytes(), _mode(path)) == (b"new", 0o600)
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_transaction_commit(tmp_path: Path) -> None:
    (tmp_path / "gone.txt").write_text("remove me")
    (tmp_path / "kept.txt").write_text("old")
    with fs.Transaction(tmp_path) as txn:
        assert _mode(txn.staging) == 0o700
        txn.stage("certs/a.crt", b"A", fs.PUBLIC_MODE, new=True)
        txn.stage("secret.age", b"S", fs.SECRET_MODE)
        txn.stage("kept.txt", b"new", fs.PUBLIC_MODE)
        txn.remove("gone.txt")
        assert _files(tmp_path)["kept.txt"] == b"old"  # nothing visible before commit
        txn.commit()
    assert _files(tmp_path) == {"certs/a.crt": b"A", "secret.age": b"S", "kept.txt": b"new"}
    assert _mode(tmp_path / "secret.age") == 0o600
    assert _mode(tmp_path / "certs" / "a.crt") == 0o644
    assert not (tmp_path / fs.STAGING).exists()


def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    (tmp_path / "a.crt").write_text("original")
    before = _files(tmp_path)

    def change() -> None:
        with fs.Transaction(tmp_path) as txn:
            txn.stage("b.crt", b"B", fs.PUBLIC_MODE, new=True)
            txn.stage("a.crt", b"A", fs.PUBLIC_MODE, new=True)  # keys are never overwritten
            txn.commit()

    with pytest.raises(StoreError, match="refusing to overwrite existing"):
        change()
    assert _files(tmp_path) == before
    assert not (tmp_path / fs.STAGING).exists()


def test_a_pending_change_blocks_a_new_transaction(tmp_path: Path) -> None:
    (tmp_path / fs.STAGING).mkdir()
    with pytest.raises(StoreError, match="an unfinished change is pending"):
        fs.Transaction(tmp_path)


def test_recover_with_nothing_pending(tmp_path: Path) -> None:
    assert fs.recover(tmp_path) is None


def test_recover_rolls_back_an_uncommitted_change(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("old")
    txn = fs.Transaction(tmp_path)
    txn.stage("a.txt", b"new", fs.PUBLIC_MODE)
    txn.stage("b.txt", b"new", fs.PUBLIC_MODE)
    # ... and the process dies here, before commit().
    assert fs.recover(tmp_path) == "rolled back an interrupted change"
    assert _files(tmp_path) == {"a.txt": b"old"}
    assert not (tmp_path / fs.STAGING).exists()


def _crash_after_commit_marker(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Commit a change whose roll-forward never runs (the process 'dies' after COMMIT)."""

    def die(_: Path) -> None:
        raise KeyboardInterrupt

    def change() -> None:
        with fs.Transaction(root) as txn:
            txn.stage("a.txt", b"new", fs.PUBLIC_MODE)
            txn.stage("sub/b.txt", b"B", fs.SECRET_MODE)
            txn.remove("gone.txt")
            txn.commit()

    (root / "a.txt").write_text("old")
    (root / "gone.txt").write_text("x")
    with monkeypatch.context() as patch:
        patch.setattr(fs, "roll_forward", die)
        with pytest.raises(KeyboardInterrupt):
            change()
    assert (root / fs.STAGING / "COMMIT").exists()  # kept: the change is durable
    assert _files(root)["a.txt"] == b"old"


def test_recover_rolls_a_committed_change_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _crash_after_commit_marker(monkeypatch, tmp_path)
    assert fs.recover(tmp_path) == "completed an interrupted change"
    assert _files(tmp_path) == {"a.txt": b"new", "sub/b.txt": b"B"}
    assert _mode(tmp_path / "sub" / "b.txt") == 0o600
    assert not (tmp_path / fs.STAGING).exists()


def test_recover_finishes_a_half_done_roll_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _crash_after_commit_marker(monkeypatch, tmp_path)
    os.replace(tmp_path / fs.STAGING / "0", tmp_path / "a.txt")  # the first rename happened
    assert fs.recover(tmp_path) == "completed an interrupted change"
    assert _files(tmp_path) == {"a.txt": b"new", "sub/b.txt": b"B"}
    assert fs.recover(tmp_path) is None


def test_the_lock_excludes_a_second_holder(tmp_path: Path) -> None:
    with (
        fs.locked(tmp_path),
        pytest.raises(StoreError, match="is in use by another farmhand run"),
        fs.locked(tmp_path),
    ):
        pass  # pragma: no cover
    with fs.locked(tmp_path):  # released
        pass


# --------------------------------------------------------------------------------------------
# the passphrase: file > environment > prompt


class Prompt:
    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.calls: list[bool] = []

    def __call__(self, new: bool) -> str:
        self.calls.append(new)
        return self.answer


def _passphrase_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "passphrase"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_the_file_wins_over_environment_and_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, "from the environment")
    prompt = Prompt("from the prompt")
    path = _passphrase_file(tmp_path, "from the file\n")
    assert resolve_passphrase(path, prompt) == "from the file"
    assert prompt.calls == []


def test_the_environment_wins_over_the_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "from the environment")
    prompt = Prompt("from the prompt")
    assert resolve_passphrase(None, prompt, new=True) == "from the environment"
    assert prompt.calls == []


@pytest.mark.parametrize("env", [None, ""])
def test_the_prompt_is_last(monkeypatch: pytest.MonkeyPatch, env: str | None) -> None:
    if env is None:
        monkeypatch.delenv(ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(ENV_VAR, env)
    prompt = Prompt("from the prompt")
    assert resolve_passphrase(None, prompt) == "from the prompt"
    assert resolve_passphrase(None, prompt, new=True) == "from the prompt"
    assert prompt.calls == [False, True]


def test_no_source_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(PassphraseError, match="a passphrase is needed: set FARMHAND_PASSPHRASE"):
        resolve_passphrase(None, None)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o601, 0o610])
def test_a_passphrase_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = _passphrase_file(tmp_path, "a good passphrase", mode)
    with pytest.raises(PassphraseError, match=r"is readable by other users: run 'chmod 600"):
        resolve_passphrase(path, None)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_private_passphrase_file_is_read(tmp_path: Path, mode: int) -> None:
    path = _passphrase_file(tmp_path, "  spaces kept  \r\n", mode)
    assert read_passphrase_file(path) == "  spaces kept  "


def test_passphrase_file_problems(tmp_path: Path) -> None:
    with pytest.raises(PassphraseError, match="does not exist"):
        resolve_passphrase(tmp_path / "missing", None)
    bad = tmp_path / "latin1"
    bad.write_bytes(b"caf\xe9 au lait")
    bad.chmod(0o600)
    with pytest.raises(PassphraseError, match="cannot read passphrase file"):
        resolve_passphrase(bad, None)
    with pytest.raises(PassphraseError, match="the passphrase is empty"):
        resolve_passphrase(_passphrase_file(tmp_path, "\n"), None)


def test_a_new_passphrase_must_be_long_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    short = "x" * (MIN_LENGTH - 1)
    monkeypatch.setenv(ENV_VAR, short)
    with pytest.raises(PassphraseError, match=f"too short: use at least {MIN_LENGTH}"):
        resolve_passphrase(None, None, new=True)
    assert resolve_passphrase(None, None) == short  # an existing store's is not judged
    monkeypatch.setenv(ENV_VAR, "x" * MIN_LENGTH)
    assert resolve_passphrase(None, None, new=True) == "x" * MIN_LENGTH


# --------------------------------------------------------------------------------------------
# planning certificates


def test_plan_workers_never_reuses_a_name_or_address() -> None:
    register = _register()  # worker0002 (10.87.99.2) is revoked
    specs = pki.plan_workers(new_plan(), register, 3)
    assert [(s.name, str(s.ip)) for s in specs] == [
        ("worker0003", "10.87.99.3"),
        ("worker0004", "10.87.99.4"),
        ("worker0005", "10.87.99.5"),
    ]
    assert pki.plan_workers(new_plan(), register, 0) == []
    with pytest.raises(UsageError, match="cannot be negative"):
        pki.plan_workers(new_plan(), register, -1)


def test_plan_workers_fills_gaps_in_addresses_but_not_in_names() -> None:
    register = Register((_entry("worker0007", Role.WORKER, "10.87.99.7", "ee" * 32),))
    specs = pki.plan_workers(new_plan(), register, 2)
    assert [(s.name, str(s.ip)) for s in specs] == [
        ("worker0008", "10.87.99.1"),
        ("worker0009", "10.87.99.2"),
    ]


def test_plan_workers_knows_when_the_pool_is_full() -> None:
    plan = new_plan(network="10.9.0.0/26")
    assert len(pki.plan_workers(plan, Register(), 51)) == 51
    with pytest.raises(UsageError, match="has room for 51 more workers, not 52"):
        pki.plan_workers(plan, Register(), 52)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["boss1"], "'boss1' is already taken"),
        (["hub"], "'hub' is already taken"),
        (["worker0042"], "'worker0042' is already taken (or reserved)"),
        (["carol", "carol"], "a boss name is given twice"),
        (["Carol"], "invalid name 'Carol'"),
        (["carol smith"], "invalid name"),
        (["-carol"], "invalid name"),
        (["carol-"], "invalid name"),
        ([""], "invalid name"),
        (["carol\n"], "invalid name 'carol\\n'"),
    ],
)
def test_plan_bosses_refuses_bad_and_taken_names(names: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        pki.plan_bosses(new_plan(), _register(), names)


def test_plan_bosses_takes_the_next_boss_addresses() -> None:
    specs = pki.plan_bosses(new_plan(), _register(), ["carol", "dave-laptop"])
    assert [(s.name, str(s.ip)) for s in specs] == [
        ("carol", "10.87.10.2"),
        ("dave-laptop", "10.87.10.3"),
    ]


def test_expiring_live_entry_and_revocability() -> None:
    register = _register()
    assert pki.expiring(register, 30, NOW) == []
    assert pki.expiring(register, 366, NOW) == ["hub", "worker0001", "boss1"]  # not revoked
    with pytest.raises(UsageError, match="no certificate named 'ghost'"):
        pki.live_entry(register, "ghost")
    with pytest.raises(UsageError, match="worker0002 is revoked"):
        pki.live_entry(register, "worker0002")
    with pytest.raises(UsageError, match="the hub cannot be revoked"):
        pki.check_revocable(pki.live_entry(register, "hub"))
    pki.check_revocable(pki.live_entry(register, "boss1"))


# --------------------------------------------------------------------------------------------
# a store written by hand (no secrets): open, recover, verify


def _write_store(root: Path, now: int = NOW, workers: int = 3) -> KeyStore:
    plan = new_plan()
    ca, key = _ca(now)
    specs = [
        pki.HostSpec("hub", Role.HUB, plan.addresses.hub),
        *pki.plan_workers(plan, Register(), workers),
        *pki.plan_bosses(plan, Register(), ["boss1"]),
    ]
    certs, _ = pki.sign_hosts(ca, key, plan, specs, now)
    register = Register(tuple(Entry.for_certificate(certs[s.name], s.role) for s in specs))
    prepare_new_store(root)
    (root / "certs").mkdir()
    (root / "farm.toml").write_text(plan.to_toml())
    (root / "register.json").write_text(register.to_json())
    (root / "ca.crt").write_bytes(ca.to_pem())
    for name, host in certs.items():
        (root / "certs" / f"{name}.crt").write_bytes(host.to_pem())
    return KeyStore.open(root)


def test_a_fresh_store_verifies(tmp_path: Path) -> None:
    store = _write_store(tmp_path / "keys")
    assert _mode(store.root) == 0o700
    findings = pki.verify_store(store, NOW)
    assert {f.level for f in findings} == {"ok"}
    assert [f.subject for f in findings] == ["ca", "hub", *pki_names(3), "boss1"]


def pki_names(count: int) -> list[str]:
    return [pki.worker_name(n) for n in range(1, count + 1)]


def test_verify_warns_before_expiry(tmp_path: Path) -> None:
    store = _write_store(tmp_path / "keys")
    not_after = store.certificate("hub").details.not_after
    findings = {f.subject: f for f in pki.verify_store(store, not_after - 10 * 86400)}
    assert findings["ca"].level == "warning"
    assert findings["ca"].message == "the CA expires in 10 days"
    assert findings["hub"].level == "warning"
    assert "expires in 10 days: run 'farmhand keys renew'" in findings["hub"].message


def test_verify_reports_expiry_as_errors(tmp_path: Path) -> None:
    store = _write_store(tmp_path / "keys")
    findings = {f.subject: f for f in pki.verify_store(store, NOW + 6 * YEAR)}
    assert findings["ca"].level == "error"
    assert "has expired" in findings["ca"].message
    assert findings["worker0001"].level == "error"


def test_verify_checks_the_register_and_the_plan(tmp_path: Path) -> None:
    store = _write_store(tmp_path / "keys")
    register = store.register

    def get(name: str) -> Entry:
        entry = register.get(name)
        assert entry is not None
        return entry

    moved = replace(get("worker0001"), ip=IPv4Address("10.87.99.9"))
    blocked = replace(get("boss1"), blocked_fingerprints=(get("worker0002").fingerprint,))
    revoked = replace(get("worker0003"), revoked_at=NOW)
    register = register.replaced(moved).replaced(blocked).replaced(revoked)
    (store.root / "register.json").write_text(register.to_json())
    (store.root / "certs" / "worker0003.crt").write_text("junk")  # revoked: not checked
    findings = {f.subject: f for f in pki.verify_store(KeyStore.open(store.root), NOW)}
    assert "differs from the plan (10.87.99.9)" in findings["worker0001"].message
    assert findings["worker0002"].message == "certificate is in the block list"
    assert "worker0003" not in findings
    assert findings["hub"].level == findings["boss1"].level == "ok"


def test_verify_catches_a_cert_from_another_ca(tmp_path: Path) -> None:
    store = _write_store(tmp_path / "keys")
    other = _write_store(tmp_path / "other")
    (store.root / "certs" / "hub.crt").write_bytes(other.cert_pem("hub"))
    findings = {f.subject: f for f in pki.verify_store(store, NOW)}
    assert findings["hub"].level == "error"
    assert "signed by another CA" in findings["hub"].message


def test_open_rolls_back_an_interrupted_change(tmp_path: Path) -> None:
    store = _write_store(tmp_path / "keys")
    before = _files(store.root)
    txn = fs.Transaction(store.root)
    txn.stage("register.json", b"{}", fs.PUBLIC_MODE)  # then the process dies
    reopened = KeyStore.open(store.root)
    assert reopened.register == store.register
    assert _files(store.root) == before | {".lock": b""}


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "no key store at"),
        ("file", "no key store at"),
        ("empty", "is not a farmhand key store (no farm.toml)"),
    ],
)
def test_open_refuses_what_is_not_a_store(tmp_path: Path, setup: str, message: str) -> None:
    root = tmp_path / "keys"
    if setup == "file":
        root.write_text("x")
    elif setup == "empty":
        root.mkdir()
    with pytest.raises(StoreError, match=re.escape(message)):
        KeyStore.open(root)


def test_check_new_store(tmp_path: Path) -> None:
    check_new_store(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".gitignore").write_text("*\n")
    (empty / ".lock").touch()
    check_new_store(empty)
    (empty / "notes.txt").touch()
    with pytest.raises(StoreError, match="is not empty and not a key store"):
        check_new_store(empty)
    (tmp_path / "file").touch()
    with pytest.raises(StoreError, match="exists and is not a folder"):
        check_new_store(tmp_path / "file")
    store = _write_store(tmp_path / "keys")
    with pytest.raises(StoreError, match="already holds a key store"):
        check_new_store(store.root)


def test_every_error_is_a_farmhand_error_with_an_exit_code() -> None:
    for error in (UsageError, StoreError, PassphraseError):
        assert issubclass(error, FarmhandError)
    assert (UsageError.exit_code, StoreError.exit_code, PassphraseError.exit_code) == (2, 1, 1)
