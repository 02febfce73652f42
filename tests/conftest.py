"""Shared fixtures: the key store tests' session farm, and the lab modules' standard farm.

age's scrypt costs a couple of seconds per file on the CI machines, so the session makes ONE
farm through the real CLI (``farm``) and tests that change a store work on a copy of it
(``store``). The helpers the tests share live in tests/support/ (``support.cli``: run_cli,
run_in_pty, assert_cli_error…; ``support.session``: ``Farm`` and its host names). The fact
fixture deploy tests' fixtures (``deploy``, ``bundles``…) are support/fixtures_deploy.py's,
registered here for every test module.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

# The helpers' asserts explain their failures the way the tests' own do (as they did here).
pytest.register_assert_rewrite("support")

import support.lab  # noqa: E402
import support.standard_farm  # noqa: E402
from support.cli import WITH_PASSPHRASE, run_cli, snapshot  # noqa: E402
from support.session import SESSION_BOSS, SESSION_WORKERS, Farm  # noqa: E402

pytest_plugins = ["support.fixtures_deploy"]


@pytest.fixture(scope="session")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    """keygen --workers 5 --boss alice, once per session; checked unchanged at the end."""
    root = tmp_path_factory.mktemp("session-farm") / "keys"
    result = run_cli(
        "keygen",
        "--dir",
        root,
        "--workers",
        str(SESSION_WORKERS),
        "--boss",
        SESSION_BOSS,
        env=WITH_PASSPHRASE,
    )
    assert result.returncode == 0, result.stderr
    before = snapshot(root)
    yield Farm(root=root, keygen=result)
    assert snapshot(root) == before, "a test changed the shared session farm; use `store`"


@pytest.fixture
def farm_store(farm: Farm) -> Path:
    """The session farm's folder (read-only use)."""
    return farm.root


@pytest.fixture
def store(farm: Farm, tmp_path: Path) -> Path:
    """A private copy of the session farm (modes preserved) for tests that change it."""
    copy = tmp_path / "keys"
    shutil.copytree(farm.root, copy, symlinks=True)
    return copy


@pytest.fixture(scope="session")
def standard_farm(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[support.standard_farm.StandardFarm]:
    """The lab farm the lab modules share (tests/support/standard_farm.py): booted by the
    first test that asks, down at the end of the session."""
    support.lab.require_lab()
    shared = support.standard_farm.boot(tmp_path_factory.mktemp("standard-farm"))
    try:
        yield shared
    finally:
        shared.farm.down()
