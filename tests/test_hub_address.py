"""The hub's public address: an IPv4 address or a DNS name, checked everywhere it comes in.

It ends up in the rendered Nebula config (``static_host_map``), so a value holding a quote, a
bracket and a newline could add keys to it; and Nebula here listens on 0.0.0.0 only, so an
IPv6 address could never be reached. Every way in refuses both with one line and a non-zero
exit, before anything is written, any passphrase is used or any host is contacted.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from farmhand.deploy.runner import run_deploy
from farmhand.deploy.targets import parse_target
from farmhand.errors import UsageError
from farmhand.join.flow import JoinOptions
from farmhand.keystore.bundle import open_bundle
from farmhand.keystore.plan import Role, validate_hub_address
from farmhand.model.host import host_model
from farmhand.provision.bootstrap import BootstrapOptions
from farmhand.provision.cloudinit import CloudInitRequest, user_data
from support.cli import PASSPHRASE, WITH_PASSPHRASE, assert_cli_error, run_cli, snapshot
from support.session import SESSION_BOSS, Farm

INJECTION = 'hub.example.net"]\nlighthouse:\n  am_lighthouse: true\n#'
IPV6 = ("::1", "2001:db8::1")
BAD = {"injection": INJECTION, "loopback-v6": IPV6[0], "v6": IPV6[1]}
VALID = ("hub.example.net", "203.0.113.7")
IPV6_REASON = "Nebula here listens on IPv4 only: give the hub's IPv4 address or a DNS name"
BOSS_BUNDLE = f"boss-{SESSION_BOSS}.keybundle.age"
BUNDLE_URL = "https://example.net/workers.keybundle.age"


def _reason(value: str) -> str:
    return IPV6_REASON if value in IPV6 else "whitespace or a control character"


bad_values = pytest.mark.parametrize("value", list(BAD.values()), ids=list(BAD))


# --- the check itself -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("hub.example.net", "hub.example.net"),
        ("203.0.113.7", "203.0.113.7"),
        (" hub.example.net ", "hub.example.net"),
        ("a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61, None),  # 253 characters
        ("", ""),
    ],
)
def test_ipv4_and_dns_names_are_accepted(value: str, stored: str | None) -> None:
    assert validate_hub_address(value) == (value if stored is None else stored)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (INJECTION, "whitespace or a control character"),
        ("hub.example.net\n", "whitespace or a control character"),
        ("hub.example.net\x00", "whitespace or a control character"),
        ("hub\texample.net", "whitespace or a control character"),
        ("::1", IPV6_REASON),
        ("2001:db8::1", IPV6_REASON),
        ("[2001:db8::1]", IPV6_REASON),
        ("::ffff:203.0.113.7", IPV6_REASON),
        ("hub.example.net:4242", "the port is --port"),
        ('hub.example.net"]', "not a host name or IP address"),
        ("256.1.1.1", "not an IPv4 address"),
        ("1.2.3", "not a host name or IP address"),
        ("a" * 64 + ".example.net", "not a host name or IP address"),
        (("a" * 63 + ".") * 4 + "net", "not a host name or IP address"),  # over 253
        ("hub_1.example.net", "not a host name or IP address"),
    ],
)
def test_anything_else_is_refused_in_one_line(value: str, message: str) -> None:
    with pytest.raises(UsageError, match="invalid hub address") as caught:
        validate_hub_address(value)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


# --- every way in, through the real CLI --------------------------------------------------------


@bad_values
def test_keygen_refuses_it_and_writes_nothing(value: str, tmp_path: Path) -> None:
    store = tmp_path / "keys"
    result = run_cli("keygen", "--dir", store, "--hub-address", value, env=WITH_PASSPHRASE)
    assert_cli_error(result, "invalid hub address", _reason(value), code=2)
    assert not store.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", VALID)
def test_keygen_takes_a_valid_one(value: str, tmp_path: Path) -> None:
    store = tmp_path / "keys"
    argv = ("keygen", "--dir", store, "--workers", "1", "--hub-address", value)
    result = run_cli(*argv, env=WITH_PASSPHRASE)
    assert result.returncode == 0, result.stderr
    assert f'hub_address = "{value}"' in (store / "farm.toml").read_text()


@bad_values
def test_farm_toml_refuses_it(value: str, store: Path) -> None:
    path = store / "farm.toml"
    text = path.read_text()
    assert 'hub_address = ""' in text
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    path.write_text(text.replace('hub_address = ""', f'hub_address = "{escaped}"'))
    before = snapshot(store)
    result = run_cli("keys", "list", "--dir", store)
    assert_cli_error(result, "hub_address", _reason(value))
    assert snapshot(store) == before


@pytest.mark.parametrize("command", ["files", "render"])
@bad_values
def test_files_refuses_it_and_writes_nothing(
    command: str, value: str, farm: Farm, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    argv = (command, "worker", "--bundle", farm.root / "workers.keybundle.age", "--out", out)
    result = run_cli(*argv, "--hub-address", value, env=WITH_PASSPHRASE)
    assert_cli_error(result, "invalid hub address", _reason(value))
    assert not out.exists()


@pytest.mark.parametrize("value", VALID)
def test_files_renders_a_valid_one(value: str, farm: Farm, tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ("files", "worker", "--bundle", farm.root / "workers.keybundle.age", "--out", out)
    result = run_cli(*argv, "--hub-address", value, env=WITH_PASSPHRASE)
    assert result.returncode == 0, result.stderr
    config = (out / "etc/nebula/farmhand/config.yml").read_text()
    assert f"{value}:42042" in config
    assert "am_lighthouse: false" in config


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """An SSH 'host' on loopback that would see any connection attempt."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock


def _contacted(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


@bad_values
def test_deploy_refuses_it_before_contacting_any_host(
    value: str, farm: Farm, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    result = run_cli(
        "deploy", "worker", f"127.0.0.1:{port}",
        "--bundle", farm.root / "workers.keybundle.age",
        "--known-hosts", "/dev/null",
        "--hub-address", value,
        env=WITH_PASSPHRASE,
    )  # fmt: skip
    assert_cli_error(result, "invalid hub address", _reason(value))
    assert "connecting" not in result.stdout
    assert not _contacted(listener), "a host was contacted"


@pytest.mark.parametrize("value", VALID)
def test_deploy_gets_past_a_valid_one(value: str, farm: Farm) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: the deploy cannot connect
    result = run_cli(
        "deploy", "worker", f"127.0.0.1:{port}",
        "--bundle", farm.root / "workers.keybundle.age",
        "--known-hosts", "/dev/null",
        "--hub-address", value,
        env=WITH_PASSPHRASE,
    )  # fmt: skip
    assert_cli_error(result, f"127.0.0.1:{port}: could not connect", code=1)


@bad_values
def test_bootstrap_refuses_it(value: str, farm: Farm) -> None:
    argv = ("bootstrap", "worker", "--bundle", farm.root / "workers.keybundle.age")
    result = run_cli(*argv, "--hub-address", value, env=WITH_PASSPHRASE)
    assert_cli_error(result, "invalid hub address", _reason(value))


@pytest.mark.parametrize("value", VALID)
def test_bootstrap_gets_past_a_valid_one(value: str, farm: Farm) -> None:
    # The hub's bundle for a worker: refused before the deploy (or the root check refuses).
    argv = ("bootstrap", "worker", "--bundle", farm.root / "hub.keybundle.age")
    result = run_cli(*argv, "--hub-address", value, env=WITH_PASSPHRASE)
    line = assert_cli_error(result)
    assert "hub address" not in line
    assert "is a hub bundle" in line or "must run as root" in line


@bad_values
def test_cloud_init_refuses_it(value: str) -> None:
    result = run_cli("cloud-init", "worker", "--bundle", BUNDLE_URL, "--hub-address", value)
    assert_cli_error(result, "invalid hub address", _reason(value))
    assert result.stdout == ""


@pytest.mark.parametrize("value", VALID)
def test_cloud_init_passes_a_valid_one_on(value: str) -> None:
    result = run_cli("cloud-init", "worker", "--bundle", BUNDLE_URL, "--hub-address", value)
    assert result.returncode == 0, result.stderr
    assert f"--hub-address {value}" in result.stdout


@pytest.fixture
def config(tmp_path: Path) -> Path:
    root = tmp_path / "config"
    root.mkdir()
    (root / "keep.txt").write_text("the user's own file\n")
    return root


def _join_env(config: Path) -> dict[str, str]:
    return {**WITH_PASSPHRASE, "FARMHAND_CONFIG_DIR": str(config / "farmhand")}


@bad_values
def test_join_refuses_it_and_writes_nothing(value: str, farm: Farm, config: Path) -> None:
    before = snapshot(config)
    argv = ("join", "--bundle", farm.root / BOSS_BUNDLE, "--nebula", "/bin/true")
    result = run_cli(*argv, "--hub-address", value, env=_join_env(config))
    assert_cli_error(result, "invalid hub address", _reason(value))
    assert snapshot(config) == before


@pytest.mark.parametrize("value", VALID)
def test_join_gets_past_a_valid_one(value: str, farm: Farm, config: Path) -> None:
    before = snapshot(config)
    argv = ("join", "--bundle", farm.root / BOSS_BUNDLE, "--nebula", "/bin/true")
    result = run_cli(*argv, "--hub-address", value, env=_join_env(config))
    assert_cli_error(result, "does not run as nebula")
    assert snapshot(config) == before


# --- the library functions those commands call --------------------------------------------------


@bad_values
def test_the_library_functions_refuse_it(value: str, farm: Farm) -> None:
    bundle = open_bundle(farm.root / "workers.keybundle.age", PASSPHRASE)
    with pytest.raises(UsageError, match=_reason(value)):
        host_model(bundle, hub_address=value)
    with pytest.raises(UsageError, match=_reason(value)):
        BootstrapOptions(hub_address=value)
    with pytest.raises(UsageError, match=_reason(value)):
        JoinOptions(hub_address=value)
    with pytest.raises(UsageError, match=_reason(value)):
        user_data(CloudInitRequest(role=Role.WORKER, bundle_url=BUNDLE_URL, hub_address=value))
    with pytest.raises(UsageError, match=_reason(value)):
        run_deploy(
            Role.WORKER,
            farm.root / "workers.keybundle.age",
            PASSPHRASE,
            [parse_target("127.0.0.1:9")],
            data={"farmhand_hub_address": value},
        )


def test_the_library_functions_keep_a_valid_one(farm: Farm) -> None:
    bundle = open_bundle(farm.root / "workers.keybundle.age", PASSPHRASE)
    assert host_model(bundle, hub_address="203.0.113.7").hub_address == "203.0.113.7"
    assert BootstrapOptions(hub_address="hub.example.net").hub_address == "hub.example.net"
    assert JoinOptions(hub_address="hub.example.net").hub_address == "hub.example.net"
