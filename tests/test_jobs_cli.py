"""`farmhand submit / jobs / job / cancel / collect` on bad input: one line, a non-zero exit,
and nothing sent to any hub (each is refused before a connection is made)."""

from __future__ import annotations

from pathlib import Path

import pytest

from farmhand.errors import UsageError
from farmhand.inspect.status.view import FarmView
from farmhand.jobs import access
from farmhand.keystore.plan import new_plan
from support.cli import WITH_PASSPHRASE, run_cli
from support.session import SESSION_BOSS


def _one_line(result: object, code: int, *words: str) -> None:
    stderr = result.stderr  # type: ignore[attr-defined]
    assert result.returncode == code, stderr  # type: ignore[attr-defined]
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert "Traceback" not in stderr
    for word in words:
        assert word in stderr, stderr


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    return _blend(tmp_path / "shot.blend")


def _blend(path: Path) -> Path:
    path.write_bytes(b"BLENDER-v304REND" + bytes(64))
    return path


def test_a_missing_scene(tmp_path: Path) -> None:
    result = run_cli("submit", tmp_path / "gone.blend", "--frames", "1-5")
    _one_line(result, 2, "no such scene")


def test_a_file_that_is_not_a_blend(tmp_path: Path) -> None:
    text = tmp_path / "notes.blend"
    text.write_text("a shopping list")
    _one_line(run_cli("submit", text, "--frames", "1-5"), 2, "does not start with BLENDER")


@pytest.mark.parametrize(
    ("frames", "why"),
    [("5-1", "ends before it starts"), ("a-b", "bad frame range 'a-b'"), ("0-0", "start at 1")],
)
def test_bad_frame_ranges(farm_store: Path, scene: Path, frames: str, why: str) -> None:
    bundle = farm_store / f"boss-{SESSION_BOSS}.keybundle.age"
    result = run_cli("submit", scene, "--frames", frames, "--bundle", bundle, env=WITH_PASSPHRASE)
    _one_line(result, 2, why)


def test_an_unknown_job_id_is_refused_before_asking(farm_store: Path) -> None:
    bundle = farm_store / f"boss-{SESSION_BOSS}.keybundle.age"
    result = run_cli("job", "abc", "--bundle", bundle, env=WITH_PASSPHRASE)
    _one_line(result, 2, "'abc' is not a job id")


def test_a_machine_that_has_not_joined(tmp_path: Path, scene: Path) -> None:
    env = {"FARMHAND_CONFIG_DIR": str(tmp_path / "config")}
    _one_line(run_cli("jobs", env=env), 2, "has not joined a farm")
    _one_line(run_cli("submit", scene, "--frames", "1", env=env), 2, "has not joined a farm")


def test_a_workers_bundle_cannot_submit(farm_store: Path, scene: Path) -> None:
    bundle = farm_store / "workers.keybundle.age"
    result = run_cli("jobs", "--bundle", bundle, env=WITH_PASSPHRASE)
    _one_line(result, 2, "a worker bundle cannot submit jobs")


@pytest.mark.parametrize(
    ("settings", "kind", "url"),
    [
        ({}, None, ""),
        ({"render_manager": "flamenco"}, "FlamencoFarm", "http://10.87.0.1:8080"),
        ({"render_manager": "deadline"}, "DeadlineFarm", "http://127.0.0.1:8081"),
        (
            {"render_manager": "deadline", "deadline_web_service": "http://10.87.0.9:8082"},
            "DeadlineFarm",
            "http://10.87.0.9:8082",
        ),
    ],
)
def test_the_job_commands_go_where_the_farms_render_manager_is(
    tmp_path: Path, settings: dict[str, str], kind: str | None, url: str
) -> None:
    """A boss's way to the farm follows farm.toml: the hub's job service (Slurm), Flamenco
    Manager on the hub, or the Deadline Web Service the settings name."""
    plan = new_plan(name="t", hub_address="192.0.2.1").with_settings(**settings)
    view = FarmView(plan, (), frozenset(), b"", "boss1", "10.87.10.1", 0, "farmhand", "pw")
    farm = access._farm(view, tmp_path / "key", tmp_path / "known")
    assert farm.hub.hub == farm.share.hub == "10.87.0.1"
    assert type(farm.manager).__name__ == (kind or "NoneType")
    if farm.manager is not None:
        assert farm.manager.url == url
        assert farm.manager.worker_mount == "/mnt/farmhand/farm"


def test_a_bad_deadline_web_service_is_refused_in_one_line() -> None:
    with pytest.raises(UsageError, match="deadline_web_service"):
        new_plan(name="t", hub_address="192.0.2.1").with_settings(
            render_manager="deadline", deadline_web_service="ftp://x"
        )
