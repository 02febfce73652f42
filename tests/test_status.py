"""`farmhand status` pieces that need no overlay: the worker price and its errors.

Status against a real farm is tested in test_lab_join.py; with no hub, in test_join.py's
foreground test (inside a namespace of its own).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import SESSION_BOSS, WITH_PASSPHRASE, Farm, assert_cli_error, run_cli
from farmhand.errors import UsageError
from farmhand.inspect.status import worker_price
from farmhand.keystore.plan import new_plan


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
