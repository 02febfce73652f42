"""`farmhand lab ssh HOST COMMAND...` hands the command its own options: what the README's
`farmhand lab ssh boss1 farmhand submit scene.blend --frames 1-4` needs. The lab host is
recorded, not booted (what runs on it is the lab tests' business)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import ClassVar

import pytest
from typer.testing import CliRunner

import farmhand.cli.lab
from farmhand.cli import app


class RecordingFarm:
    """Stands in for the booted lab: records what `lab ssh` would run, and on which host."""

    ran: ClassVar[list[tuple[str, list[str]]]] = []

    def exec(self, name: str, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.ran.append((name, list(argv)))
        return subprocess.CompletedProcess(list(argv), 3, "out\n", "")


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str]]]:
    RecordingFarm.ran = []
    monkeypatch.setattr(farmhand.cli.lab, "LabFarm", RecordingFarm)
    return RecordingFarm.ran


def test_the_commands_options_reach_the_command(recorded: list[tuple[str, list[str]]]) -> None:
    argv = ["farmhand", "submit", "/root/a.blend", "--frames", "1-4", "--json", "-q"]
    result = CliRunner().invoke(app, ["lab", "ssh", "boss1", *argv])
    assert recorded == [("boss1", argv)], result.output
    assert result.exit_code == 3  # the command's own exit status
    assert "out" in result.output


def test_without_a_command_it_shows_the_hosts_farmhand_services(
    recorded: list[tuple[str, list[str]]],
) -> None:
    CliRunner().invoke(app, ["lab", "ssh", "hub"])
    assert recorded == [("hub", ["systemctl", "--no-pager", "status", "farmhand-nebula"])]
