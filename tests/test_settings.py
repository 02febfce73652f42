"""farm.toml's settings (farmhand/settings.py): declared once, typed, checked whenever read.

The bad-value cases run through the real CLI too: ``keys rebundle`` and ``keys list`` on a key
store whose farm.toml was edited, and ``render``, ``bundle show`` on a bundle made by an older
farmhand that did not check its plan. Each is one ``error:`` line and changes nothing.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pyrage
import pytest

from farmhand import settings as s
from farmhand.errors import StoreError, UsageError
from farmhand.keystore.bundle import pack
from farmhand.keystore.plan import AddressPlan, FarmPlan, new_plan
from farmhand.model.distro import DEBIAN_12, Distro, Family
from farmhand.queue import artifacts
from support.cli import PASSPHRASE, WITH_PASSPHRASE, assert_cli_error, run_cli, snapshot
from support.session import Farm

README = Path(__file__).resolve().parents[1] / "README.md"

KEYGEN_TOML = """\
# farmhand farm plan: the one hand-editable file of this key store.
# Address ranges are inclusive; issued addresses are never reused.
format = 1
name = "farm"
network = "10.87.0.0/16"
port = 42042
hub_address = ""
ca_lifetime = "5y"
cert_lifetime = "5y"
mtu = 1380
farm_user = "farmhand"
farm_uid = 2042

[addresses]
hub = "10.87.0.1"
lighthouses = "10.87.0.1-10.87.0.255"
servers = "10.87.1.1-10.87.9.255"
bosses = "10.87.10.1-10.87.98.255"
workers = "10.87.99.1-10.87.255.254"
"""
"""farm.toml as keygen has always written it."""

SHA_A = "AB" * 32
SHA_C = "c0" * 32
TOP_LEVEL = "farm_uid = 2042\n"  # farm.toml's last top-level key: settings go after it


def edited(top: str = "", tables: str = "", base: str = KEYGEN_TOML) -> str:
    """farm.toml with top-level lines after the plan's and tables at the end."""
    assert TOP_LEVEL in base
    return base.replace(TOP_LEVEL, TOP_LEVEL + top) + tables


EVERY_SETTING = edited(
    'lease_ttl = "90s"\n'
    "lease_ssh_port = 2222\n"
    "idle_after_minutes = 45\n"
    "idle_boot_grace_minutes = 0\n"
    "idle_max_uptime_minutes = 720\n"
    "idle_cap_grace_minutes = 30\n"
    "idle_cpu_percent = 25\n"
    'idle_render_processes = "blender my_renderer"\n'
    'render_manager = "flamenco"\n'
    'renderer = "bella"\n'
    f'nebula_sha256 = "{SHA_A}"\n'
    "worker_hourly_price = 0.35\n"
    'currency = "EUR"\n',
    f'\n[artifacts.flamenco]\nsha256 = "{SHA_C}"\n\n[artifacts.bella]\nsha256 = "{SHA_A}"\n',
)


# --------------------------------------------------------------------------------------------
# the declarations


def test_every_setting_is_declared_once_and_read_into_one_field() -> None:
    names = [setting.name for setting in s.SETTINGS]
    assert len(names) == len(set(names))
    ours = [x for x in s.SETTINGS if x.group not in s.PLAN_GROUPS]
    typed = {f.name for f in dataclasses.fields(s.FarmSettings)} - {"given"}
    assert typed == {x.dest for x in ours}
    plan_fields = {f.name for f in dataclasses.fields(FarmPlan)}
    plan_own = {x.dest for x in s.SETTINGS if x.group is s.Group.PLAN and x.dest}
    assert plan_own == plan_fields - {"addresses", "settings"}
    addresses = {x.dest for x in s.SETTINGS if x.group is s.Group.ADDRESSES}
    assert addresses == {f.name for f in dataclasses.fields(AddressPlan)}
    for setting in s.SETTINGS:
        assert setting.help.endswith((".", "...")), setting.name
        assert setting.shown_default, setting.name
        setting.default_value()  # every default passes its own check
        # The plan's own keys are read into FarmPlan, all others into FarmSettings.
        assert (setting.name.split(".")[0] in s.PLAN_KEYS) == (setting.group in s.PLAN_GROUPS)


def test_the_artifact_keys_are_farmhands_artifacts() -> None:
    el9 = Distro("almalinux", 9, Family.EL)
    pinned = {artifacts.DEADLINE, artifacts.FLAMENCO, artifacts.BLENDER, artifacts.BELLA}
    pinned |= {artifacts.mongodb(d) for d in (DEBIAN_12, el9)} | {
        artifacts.mongosh(d) for d in (DEBIAN_12, el9)
    }
    assert set(s.ARTIFACT_KEYS) == {artifact.key for artifact in pinned}


def test_the_defaults_are_the_declared_ones() -> None:
    defaults = s.FarmSettings()
    assert defaults == new_plan().settings
    assert (defaults.lease_ttl, defaults.lease_ssh_port) == (180, 22)
    idle = (
        defaults.idle_after_minutes,
        defaults.idle_boot_grace_minutes,
        defaults.idle_max_uptime_minutes,
        defaults.idle_cap_grace_minutes,
        defaults.idle_cpu_percent,
    )
    assert idle == (20, 15, 0, 60, 10)
    assert defaults.idle_render_processes == s.DEFAULT_RENDER_PROCESSES
    assert defaults.render_manager is s.RenderManager.SLURM  # the default since Slurm came
    assert defaults.renderer is s.Renderer.BLENDER
    assert defaults.artifact_sha256 == {}
    assert defaults.nebula_sha256 is None
    assert (defaults.worker_hourly_price, defaults.currency) == (None, "USD")
    assert defaults.given == {}


# --------------------------------------------------------------------------------------------
# reading and writing farm.toml


def test_keygen_writes_farm_toml_as_it_always_did() -> None:
    assert new_plan().to_toml() == KEYGEN_TOML
    assert FarmPlan.from_toml(KEYGEN_TOML).to_toml() == KEYGEN_TOML


def test_every_setting_is_read_typed_and_written_back_byte_for_byte() -> None:
    plan = FarmPlan.from_toml(EVERY_SETTING)
    assert plan.to_toml() == EVERY_SETTING
    got = plan.settings
    assert (got.lease_ttl, got.lease_ssh_port) == (90, 2222)
    idle = (
        got.idle_after_minutes,
        got.idle_boot_grace_minutes,
        got.idle_max_uptime_minutes,
        got.idle_cap_grace_minutes,
        got.idle_cpu_percent,
    )
    assert idle == (45, 0, 720, 30, 25)
    assert got.idle_render_processes == ("blender", "my_renderer")
    assert (got.render_manager, got.renderer) == (s.RenderManager.FLAMENCO, s.Renderer.BELLA)
    assert got.artifact_sha256 == {"flamenco": SHA_C, "bella": SHA_A.lower()}
    assert got.nebula_sha256 == SHA_A.lower()
    assert (got.worker_hourly_price, got.currency) == (0.35, "EUR")
    # A bundle carries the plan as JSON: the same settings, spelt the same, come back.
    carried = FarmPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert carried == plan
    assert carried.to_toml() == EVERY_SETTING


def test_with_settings_is_checked_like_farm_toml() -> None:
    plan = new_plan().with_settings(lease_ttl="90s").with_settings(lease_ssh_port=2222)
    assert (plan.settings.lease_ttl, plan.settings.lease_ssh_port) == (90, 2222)
    assert plan.settings.given == {"lease_ttl": "90s", "lease_ssh_port": 2222}
    with pytest.raises(UsageError, match=r"^lease_ssh_port = 0: expected a port number"):
        plan.with_settings(lease_ssh_port=0)
    with pytest.raises(UsageError, match=r"^port is a key of the farm plan, not a farm setting"):
        plan.with_settings(port=4242)


# (top-level lines, tables, the one-line error after "keys/farm.toml: ")
BAD: dict[str, tuple[str, str, str]] = {
    "port-not-a-number": (
        'lease_ssh_port = "x"\n',
        "",
        'lease_ssh_port = "x": expected a port number from 1 to 65535',
    ),
    "port-zero": (
        "lease_ssh_port = 0\n",
        "",
        "lease_ssh_port = 0: expected a port number from 1 to 65535",
    ),
    "port-too-big": (
        "lease_ssh_port = 65536\n",
        "",
        "lease_ssh_port = 65536: expected a port number from 1 to 65535",
    ),
    "port-a-string": (
        'lease_ssh_port = "22"\n',
        "",
        'lease_ssh_port = "22": expected a port number from 1 to 65535',
    ),
    "port-a-bool": (
        "lease_ssh_port = true\n",
        "",
        "lease_ssh_port = true: expected a port number from 1 to 65535",
    ),
    "port-a-float": (
        "lease_ssh_port = 22.0\n",
        "",
        "lease_ssh_port = 22.0: expected a port number from 1 to 65535",
    ),
    "typo": (
        'lease_tll = "3m"\n',
        "",
        'lease_tll = "3m": unknown setting; did you mean lease_ttl?',
    ),
    "ttl-too-short": (
        'lease_ttl = "5s"\n',
        "",
        'lease_ttl = "5s": expected a duration of at least 6s such as "90s" or "3m" '
        "(units y, w, d, h, m, s)",
    ),
    "ttl-a-number": (
        "lease_ttl = 180\n",
        "",
        'lease_ttl = 180: expected a duration of at least 6s such as "90s" or "3m" '
        "(units y, w, d, h, m, s)",
    ),
    "render-manager": (
        'render_manager = "torque"\n',
        "",
        'render_manager = "torque": expected one of "slurm", "deadline", "flamenco"',
    ),
    "render-manager-near-miss": (
        'render_manager = "Flamenco"\n',
        "",
        'render_manager = "Flamenco": expected one of "slurm", "deadline", "flamenco"; '
        'did you mean "flamenco"?',
    ),
    "renderer": (
        'renderer = "cycles"\n',
        "",
        'renderer = "cycles": expected one of "blender", "bella"',
    ),
    "idle-percent": (
        "idle_cpu_percent = 101\n",
        "",
        "idle_cpu_percent = 101: expected a whole number from 0 to 100",
    ),
    "idle-minutes": (
        "idle_after_minutes = -1\n",
        "",
        "idle_after_minutes = -1: expected a whole number from 0 to 525600",
    ),
    "process-with-newline": (
        'idle_render_processes = ["blender\\n"]\n',
        "",
        'idle_render_processes = ["blender\\n"]: expected a list of process names '
        "(letters, digits, . _ + -), or one string of them",
    ),
    "currency-with-newline": (
        'currency = "EUR\\n"\n',
        "",
        'currency = "EUR\\n": expected a currency such as "EUR" (1-8 characters, no spaces)',
    ),
    "price": (
        'worker_hourly_price = "cheap"\n',
        "",
        'worker_hourly_price = "cheap": expected a number of at least 0',
    ),
    "nebula-sha256": (
        'nebula_sha256 = "abc"\n',
        "",
        'nebula_sha256 = "abc": expected a sha256: 64 hex digits',
    ),
    "artifact-sha256": (
        "",
        '\n[artifacts.deadline]\nsha256 = "abc"\n',
        'artifacts.deadline.sha256 = "abc": expected a sha256: 64 hex digits',
    ),
    "artifact-typo": (
        "",
        '\n[artifacts.deadlin]\nsha256 = "abc"\n',
        'artifacts.deadlin.sha256 = "abc": unknown setting; '
        "did you mean artifacts.deadline.sha256?",
    ),
    "unknown-table": (
        "",
        '\n[deploy]\nuser = "render"\n',
        "deploy.user = \"render\": unknown setting ('farmhand keys settings' lists every setting)",
    ),
    "not-a-table": ('artifacts = "x"\n', "", 'artifacts = "x": expected a table ([artifacts])'),
}
# (what keygen wrote, the edit, the one-line error after "keys/farm.toml: ")
BAD_PLAN_KEYS = {
    "farm-uid": (
        "farm_uid = 2042",
        "farm_uid = 999",
        "farm_uid = 999: expected a whole number from 1000 to 60000",
    ),
    "mtu": ("mtu = 1380", "mtu = 9000", "mtu = 9000: expected a whole number from 1280 to 8940"),
    "addresses-typo": (
        'hub = "10.87.0.1"',
        'hbu = "10.87.0.1"',
        'addresses.hbu = "10.87.0.1": unknown setting; did you mean addresses.hub?',
    ),
    "plan-key-typo": ("mtu = 1380", "mut = 1380", "mut = 1380: unknown setting; did you mean mtu?"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_setting_is_one_line_naming_key_value_and_what_is_allowed(case: str) -> None:
    top, tables, message = BAD[case]
    with pytest.raises(StoreError) as refused:
        FarmPlan.from_toml(edited(top, tables), "keys/farm.toml")
    assert str(refused.value) == f"keys/farm.toml: {message}"


@pytest.mark.parametrize("case", list(BAD_PLAN_KEYS))
def test_a_bad_plan_key_is_one_line_too(case: str) -> None:
    old, new, message = BAD_PLAN_KEYS[case]
    assert old in KEYGEN_TOML
    with pytest.raises(StoreError) as refused:
        FarmPlan.from_toml(KEYGEN_TOML.replace(old, new), "keys/farm.toml")
    assert str(refused.value) == f"keys/farm.toml: {message}"


def test_values_in_messages_are_spelt_as_toml_on_one_line() -> None:
    assert s.toml_value("a\nb\x00\x7f\u2028") == '"a\\nb\\u0000\\u007f\\u2028"'
    assert s.toml_value(["x", 1, 2.5, True]) == '["x", 1, 2.5, true]'
    assert s.toml_value({"sha256": "abc"}) == '{sha256 = "abc"}'
    long = s.toml_value("x" * 100)
    assert len(long) == 60
    assert long.endswith("…")


# --------------------------------------------------------------------------------------------
# `farmhand keys settings` and README.md


def test_the_readme_table_is_the_generated_one() -> None:
    text = README.read_text(encoding="utf-8")
    assert text.count(s.README_BEGIN) == 1, "README.md lost its settings markers"
    assert text.count(s.README_END) == 1, "README.md lost its settings markers"
    assert "## Settings (farm.toml)\n" in text.split(s.README_BEGIN)[0]
    table = text.split(s.README_BEGIN + "\n", 1)[1].split(s.README_END, 1)[0]
    assert table == s.markdown(), (
        "README.md's settings tables differ from the declarations: replace them with the "
        "output of 'farmhand keys settings --markdown'"
    )
    for setting in s.SETTINGS:
        assert f"| `{setting.name}` |" in table


def test_keys_settings_lists_every_setting() -> None:
    text = run_cli("keys", "settings")
    assert text.returncode == 0, text.stderr
    for setting in s.SETTINGS:
        assert setting.name in text.stdout
    for group in s.Group:
        assert group.heading.replace("`", "") in text.stdout
    as_json = run_cli("keys", "settings", "--json")
    assert as_json.returncode == 0, as_json.stderr
    listed = json.loads(as_json.stdout)["settings"]
    assert listed == s.describe()
    assert [item["name"] for item in listed] == [x.name for x in s.SETTINGS]
    port = next(item for item in listed if item["name"] == "lease_ssh_port")
    assert port == {
        "name": "lease_ssh_port",
        "group": "leases",
        "type": "port",
        "allowed": "a port number from 1 to 65535",
        "default": 22,
        "default_text": "22",
        "required": False,
        "help": "The hub's SSH port that workers claim their certificates on.",
    }
    markdown = run_cli("keys", "settings", "--markdown")
    assert markdown.returncode == 0, markdown.stderr
    assert markdown.stdout == s.markdown()


# --------------------------------------------------------------------------------------------
# the real CLI: a bad farm.toml, and a bad plan inside a bundle

CLI_CASES = {
    "port-not-a-number": BAD["port-not-a-number"],
    "port-zero": BAD["port-zero"],
    "typo": BAD["typo"],
    "render-manager": BAD["render-manager"],
    # Brackets in the message are printed as they are (not read as Rich markup).
    "brackets": (
        "idle_render_processes = [true]\n",
        "",
        "idle_render_processes = [true]: expected a list of process names "
        "(letters, digits, . _ + -), or one string of them",
    ),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_the_cli_refuses_a_bad_farm_toml_and_changes_nothing(store: Path, case: str) -> None:
    top, tables, message = CLI_CASES[case]
    path = store / "farm.toml"
    path.write_text(edited(top, tables, base=path.read_text(encoding="utf-8")), encoding="utf-8")
    before = snapshot(store)
    for args in (["keys", "rebundle"], ["keys", "list"]):
        result = run_cli(*args, "--dir", store, env=WITH_PASSPHRASE)
        line = assert_cli_error(result, message, code=1)
        assert line == f"error: {path}: {message}"
        assert snapshot(store) == before


# What an older farmhand put into bundles unchecked: (settings in the plan, CLI_CASES' case).
BUNDLE_CASES = {
    "port-not-a-number": {"lease_ssh_port": "x"},
    "port-zero": {"lease_ssh_port": 0},
    "typo": {"lease_tll": "3m"},
    "render-manager": {"render_manager": "torque"},
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BUNDLE_CASES))
def test_render_refuses_a_bundle_with_a_bad_plan_in_one_line(
    farm: Farm, tmp_path: Path, case: str
) -> None:
    members = farm.tar("workers.keybundle.age")
    meta: dict[str, Any] = json.loads(members["farm.json"][0])
    meta["plan"].update(BUNDLE_CASES[case])
    edited_meta = json.dumps(meta, indent=1).encode() + b"\n"
    files = [
        (name, edited_meta if name == "farm.json" else content, mode)
        for name, (content, mode) in members.items()
    ]
    bundle = tmp_path / "workers.keybundle.age"
    bundle.write_bytes(pyrage.passphrase.encrypt(pack(files, meta["created"]), PASSPHRASE))
    bundle.chmod(0o600)
    out = tmp_path / "out"
    message = f"error: {bundle}: its farm plan is refused: {CLI_CASES[case][2]} " + (
        "(fix farm.toml, then run 'farmhand keys rebundle')"
    )
    runs = [
        ("render", "worker", "--bundle", bundle, "--out", out, "--hub-address", "198.51.100.7"),
        ("bundle", "show", bundle),
    ]
    for args in runs if case == "port-not-a-number" else runs[:1]:
        result = run_cli(*args, env=WITH_PASSPHRASE)
        assert assert_cli_error(result, code=1) == message
    assert not out.exists()
