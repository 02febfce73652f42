"""`farmhand status` pieces that need no overlay: the worker price and its errors, and the
line on the hub's lease table when its lease service cannot save or read it.

Status against a real farm is tested in test_lab_join.py; with no hub, in test_join.py's
foreground test (inside a namespace of its own).
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import pytest

from farmhand.cli.status import _print
from farmhand.errors import UsageError
from farmhand.inspect.status import lease_condition, lease_table_info, worker_price
from farmhand.keystore.plan import new_plan
from farmhand.onhost import leases
from support.cli import WITH_PASSPHRASE, assert_cli_error, run_cli
from support.session import SESSION_BOSS, Farm


def test_the_worker_price_comes_from_the_farm_plan() -> None:
    plan = new_plan()
    assert worker_price(plan) is None
    priced = plan.with_settings(worker_hourly_price=0.35)
    assert worker_price(priced) == (0.35, "USD")
    euros = plan.with_settings(worker_hourly_price=2, currency="EUR")
    assert worker_price(euros) == (2.0, "EUR")


@pytest.mark.parametrize("bad", ["cheap", -1, True])
def test_a_bad_worker_price_is_a_usage_error(bad: object) -> None:
    with pytest.raises(UsageError, match=r"^worker_hourly_price = .*: expected a number"):
        worker_price(new_plan().with_settings(worker_hourly_price=bad))


def test_status_reads_the_price_from_the_key_store_and_refuses_a_bad_one(
    farm: Farm, store: Path, tmp_path: Path
) -> None:
    toml = store / "farm.toml"
    toml.write_text('worker_hourly_price = "cheap"\n' + toml.read_text())
    result = run_cli(
        "status",
        "--bundle",
        farm.root / f"boss-{SESSION_BOSS}.keybundle.age",
        "--dir",
        store,
        env={**WITH_PASSPHRASE, "FARMHAND_CONFIG_DIR": str(tmp_path / "config")},
    )
    # A bad farm.toml is a damaged key store (exit 1), refused as soon as it is read.
    assert_cli_error(
        result,
        'farm.toml: worker_hourly_price = "cheap": expected a number of at least 0',
        code=1,
    )


def _hub_that_cannot_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the lease service publishes when its table cannot be written (the disk is full)."""
    (tmp_path / "state").mkdir()
    pool = [{"name": "worker0001", "ip": "10.87.99.1", "not_after": 2**40}]
    (tmp_path / "pool.json").write_text(json.dumps({"ttl": 60, "pool": pool}))
    table = str(tmp_path / "state/leases.json")

    def ask(op: str, now: int) -> dict[str, Any]:
        request = {"op": op, "machine": "a" * 32, "boot": "b" * 32, "name": "worker0001"}
        return leases.handle(
            request,
            table_path=table,
            lock_path=str(tmp_path / "state/lock"),
            pool_path=str(tmp_path / "pool.json"),
            published_path=str(tmp_path / "published.json"),
            now=now,
        )

    assert ask("claim", 1_800_000_000)["ok"]
    real = leases.durable_write

    def full(path: str, data: bytes, mode: int, keep_previous: bool = False) -> None:
        if path == table:
            raise OSError(errno.ENOSPC, "No space left on device", path + ".1.tmp")
        real(path, data, mode, keep_previous)

    monkeypatch.setattr(leases, "durable_write", full)
    assert ask("renew", 1_800_000_020)["ok"]
    return dict(json.loads((tmp_path / "published.json").read_text()))


def test_status_shows_in_one_line_that_the_hub_cannot_save_its_lease_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    published = _hub_that_cannot_save(tmp_path, monkeypatch)
    assert published["disk_full"] is True
    info = lease_table_info(published, "", "")
    assert info["available"] is True
    assert info["disk_full"] is True
    assert info["write_error"].startswith("No space left on device")
    assert info["condition"] == (
        f"lease table: the hub cannot save it (its disk is full: {info['write_error']}): live "
        "leases are kept, new certificates wait until it can"
    )
    report = {
        "farm": "f",
        "member": {"name": "boss1", "ip": "10.87.0.10"},
        "nebula": {"version": "1.9.5"},
        "hub": {"ip": "10.87.0.1", "port": 445, "reachable": True, "rtt_ms": 1.0},
        "shares": [],
        "queue": {"label": "queue", "port": 1, "reachable": True, "probe": "open"},
        "leases": info,
        "workers": [],
        "certificates": {"ca": [], "expiring": [], "expiring_within_days": 30},
        "revoked": {"blocklisted": 0, "seen_online": [], "how": "-"},
        "cost": None,
        "ok": True,
    }
    _print(report)
    lines = [x for x in capsys.readouterr().out.splitlines() if "LEASE TABLE" in x]
    assert lines == [
        "LEASE TABLE: the hub cannot save it (its disk is full: "
        f"{info['write_error']}): live leases are kept, new certificates wait until it can"
    ]


@pytest.mark.parametrize(
    ("raw", "line"),
    [
        ({"updated": 1, "ttl": 60, "leases": []}, ""),
        (None, ""),
        (
            {"leases": [], "write_error": "Input/output error", "disk_full": False},
            "lease table: the hub cannot save it (writing fails: Input/output error): live "
            "leases are kept, new certificates wait until it can",
        ),
        (
            {"leases": [], "grants_paused_until": 1_800_000_000, "grants_paused_why": "why"},
            "lease table: no new certificate until 2027-01-15 08:00 UTC (why)",
        ),
        (
            {"leases": [], "table_error": "the hub cannot read it"},
            "lease table: the hub cannot read it",
        ),
    ],
)
def test_the_lease_condition_line(raw: Any, line: str) -> None:
    assert lease_condition(raw) == line
