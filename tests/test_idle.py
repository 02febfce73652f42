"""Idle shutdown: the worker's decision script, run for real by ``sh`` on fake /proc files.

The script is taken from a real worker render (the session farm's workers bundle), so what is
tested is exactly what lands on workers. /proc/uptime, /proc/stat and /proc/PID/comm are plain
files under a temporary root; "power off" is a stub that records that it ran.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from farmhand.errors import UsageError
from farmhand.hostfiles import host_files
from farmhand.hostfiles.base import HostFile
from farmhand.keystore.bundle import Bundle, open_bundle
from farmhand.model.host import host_model
from farmhand.model.idle import DEFAULT_RENDER_PROCESSES, IDLE_SERVICE, IDLE_TIMER
from farmhand.model.paths import IDLE_ENV, IDLE_LOCAL_ENV, IDLE_SCRIPT
from farmhand.settings import FarmSettings
from support.cli import PASSPHRASE
from support.session import Farm

MIN = 60


@pytest.fixture(scope="module")
def workers_bundle(farm: Farm) -> Bundle:
    return open_bundle(farm.root / "workers.keybundle.age", PASSPHRASE)


def worker_files(bundle: Bundle, **settings: object) -> dict[str, HostFile]:
    plan = bundle.plan.with_settings(**settings)
    model = host_model(dataclasses.replace(bundle, plan=plan), hub_address="hub.example.net")
    return {f.path: f for f in host_files(model)}


def env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them (comments, double quotes)."""
    env = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


class Rig:
    """A fake /proc and state folder, and the script that reads them."""

    def __init__(self, files: dict[str, HostFile], root: Path) -> None:
        self.script = root / "farmhand-idle"
        self.script.write_bytes(files[IDLE_SCRIPT].content)
        self.settings = env_file(files[IDLE_ENV].text)
        self.proc = root / "proc"
        self.proc.mkdir()
        self.state = root / "state"
        self.marker = root / "powered-off"
        self.poweroff = root / "poweroff"
        self.poweroff.write_text(f'#!/bin/sh\necho "$@" > {self.marker}\n')
        self.poweroff.chmod(0o755)
        self.total = 100_000
        self.resting = 90_000
        self.uptime = 0
        self.squeue = root / "squeue"
        """Absent unless a test writes it: the worker has no Slurm client."""

    def process(self, pid: int, comm: str) -> None:
        (self.proc / str(pid)).mkdir(exist_ok=True)
        (self.proc / str(pid) / "comm").write_text(comm + "\n")

    def stop(self, pid: int) -> None:
        (self.proc / str(pid) / "comm").unlink()
        (self.proc / str(pid)).rmdir()

    def run(
        self, uptime: int, cpu: int = 2, *args: str, **settings: str
    ) -> tuple[str, subprocess.CompletedProcess[str]]:
        """One timer tick at ``uptime`` seconds, ``cpu`` % busy since the previous tick.

        Returns the decision (``keep``/``poweroff``) and the run itself.
        """
        self.uptime = uptime
        self.total += 6000
        self.resting += 6000 - 60 * cpu
        (self.proc / "uptime").write_text(f"{uptime}.42 {uptime * 2}.17\n")
        # user nice system idle iowait irq softirq steal guest guest_nice
        busy = self.total - self.resting
        (self.proc / "stat").write_text(
            f"cpu  {busy - 300} 0 300 {self.resting - 500} 500 0 0 0 0 0\n"
            "cpu0 1 2 3 4 5 6 7 8 9 10\nintr 12345\n"
        )
        self.marker.unlink(missing_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LC_ALL": "C",
            "FARMHAND_IDLE_PROC": str(self.proc),
            "FARMHAND_IDLE_STATE": str(self.state),
            "FARMHAND_IDLE_POWEROFF": f"{self.poweroff} --now",
            "FARMHAND_IDLE_SQUEUE": str(self.squeue),
            **self.settings,
            **settings,
        }
        result = subprocess.run(
            ["sh", str(self.script), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        decision = "poweroff" if self.marker.exists() else "keep"
        if result.returncode == 0:
            logged = result.stdout.strip()
            assert len(logged.splitlines()) == 1, result.stdout  # one line in the journal
            assert logged.startswith(("keep: ", "poweroff: ")), logged
            assert logged.startswith(decision) or "--dry-run" in args, (logged, decision)
        return decision, result


@pytest.fixture
def rig(workers_bundle: Bundle, tmp_path: Path) -> Rig:
    return Rig(worker_files(workers_bundle), tmp_path)


def said(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout.strip()


# --- the farm's settings reach the worker ---------------------------------------------------


def test_the_defaults_and_the_units(workers_bundle: Bundle) -> None:
    files = worker_files(workers_bundle)
    settings = env_file(files[IDLE_ENV].text)
    assert settings == {
        "IDLE_AFTER": "20m",
        "IDLE_BOOT_GRACE": "15m",
        "IDLE_MAX_UPTIME": "0m",
        "IDLE_CAP_GRACE": "60m",
        "IDLE_CPU_PERCENT": "10",
        "IDLE_RENDER_PROCESSES": " ".join(DEFAULT_RENDER_PROCESSES),
    }
    assert files[IDLE_SCRIPT].mode == 0o755
    service = files[f"/etc/systemd/system/{IDLE_SERVICE}"].text
    # The farm's file first, then the worker's own (optional, "-") overrides.
    assert service.index(f"EnvironmentFile={IDLE_ENV}") < service.index(
        f"EnvironmentFile=-{IDLE_LOCAL_ENV}"
    )
    assert f"ExecStart={IDLE_SCRIPT}\n" in service
    timer = files[f"/etc/systemd/system/{IDLE_TIMER}"].text
    assert "OnUnitActiveSec=1min" in timer
    assert "WantedBy=timers.target" in timer
    assert not any(f.path.startswith(IDLE_LOCAL_ENV) for f in files.values())


def test_farm_toml_settings_are_rendered(workers_bundle: Bundle) -> None:
    files = worker_files(
        workers_bundle,
        idle_after_minutes=45,
        idle_boot_grace_minutes=0,
        idle_max_uptime_minutes=720,
        idle_cap_grace_minutes=30,
        idle_cpu_percent=25,
        idle_render_processes=["blender", "my_renderer"],
    )
    assert env_file(files[IDLE_ENV].text) == {
        "IDLE_AFTER": "45m",
        "IDLE_BOOT_GRACE": "0m",
        "IDLE_MAX_UPTIME": "720m",
        "IDLE_CAP_GRACE": "30m",
        "IDLE_CPU_PERCENT": "25",
        "IDLE_RENDER_PROCESSES": "blender my_renderer",
    }


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("idle_after_minutes", -1),
        ("idle_after_minutes", "20"),
        ("idle_after_minutes", 2.5),
        ("idle_max_uptime_minutes", True),
        ("idle_cpu_percent", 101),
        ("idle_render_processes", ["blender; reboot"]),
        ("idle_render_processes", 7),
    ],
)
def test_bad_farm_toml_settings_are_one_line_errors(key: str, value: object) -> None:
    with pytest.raises(UsageError, match=f"^{key} = .*: expected a "):
        FarmSettings({key: value})


# --- the decision table --------------------------------------------------------------------


def test_an_idle_worker_powers_off_after_the_idle_period(rig: Rig) -> None:
    decision, result = rig.run(16 * MIN)
    assert decision == "keep"
    assert said(result) == "keep: busy: no CPU sample yet"
    decision, result = rig.run(17 * MIN, cpu=3)
    assert said(result) == "keep: idle for 0s of 20m (CPU 3% < 10%, no render process)"
    decision, result = rig.run(30 * MIN, cpu=3)
    assert said(result) == "keep: idle for 13m of 20m (CPU 3% < 10%, no render process)"
    decision, result = rig.run(37 * MIN, cpu=9)
    assert decision == "poweroff", said(result)
    assert said(result) == "poweroff: idle for 20m (CPU 9% < 10%, no render process)"
    assert rig.marker.read_text().strip() == "--now"


def test_pending_slurm_jobs_keep_it_up_and_a_silent_controller_does_not(rig: Rig) -> None:
    """squeue stands in for the farm's controller here; tests/test_slurm.py asks a real one."""
    rig.squeue.write_text('#!/bin/sh\n[ "$*" = "-h -t PD -o %i" ] && echo 17_3 && echo 17_4\n')
    rig.squeue.chmod(0o755)
    rig.run(16 * MIN)
    for minute in (17, 40):
        _decision, result = rig.run(minute * MIN, cpu=0)
        assert said(result) == "keep: busy: Slurm jobs are waiting (job 17_3 pending)"
    rig.squeue.write_text(
        "#!/bin/sh\necho 'slurm_load_jobs error: Unable to contact' >&2\nexit 1\n"
    )
    assert said(rig.run(41 * MIN, cpu=0)[1]).startswith("keep: idle for 0s of 20m")
    assert rig.run(61 * MIN, cpu=0)[0] == "poweroff"


def test_a_render_process_keeps_it_up_however_long_and_quiet(rig: Rig) -> None:
    rig.run(16 * MIN)
    rig.process(4242, "blender")
    for minute in (17, 40, 300):
        decision, result = rig.run(minute * MIN, cpu=0)
        assert decision == "keep"
        assert said(result) == "keep: busy: render blender (pid 4242) running"
    # The render ends: the idle period starts from then, not from the boot.
    rig.stop(4242)
    assert said(rig.run(301 * MIN, cpu=1)[1]).startswith("keep: idle for 0s of 20m")
    assert rig.run(320 * MIN, cpu=1)[0] == "keep"
    assert rig.run(321 * MIN, cpu=1)[0] == "poweroff"


def test_busy_cpu_keeps_it_up_and_restarts_the_idle_period(rig: Rig) -> None:
    rig.run(16 * MIN)
    rig.run(17 * MIN, cpu=1)
    decision, result = rig.run(36 * MIN, cpu=10)
    assert decision == "keep"
    assert said(result) == "keep: busy: CPU 10% >= 10%"
    assert rig.run(40 * MIN, cpu=0)[0] == "keep"  # idle again from here
    assert rig.run(59 * MIN, cpu=0)[0] == "keep"
    assert rig.run(60 * MIN, cpu=0)[0] == "poweroff"


def test_never_in_the_first_minutes_after_boot(rig: Rig) -> None:
    for minute in (1, 5, 14):
        decision, result = rig.run(minute * MIN, cpu=0, IDLE_AFTER="1s")
        assert decision == "keep"
        assert said(result) == f"keep: booted {minute}m ago, within the first 15m"
    assert rig.run(15 * MIN, cpu=0, IDLE_AFTER="1s")[0] == "keep"  # idle period starts now
    assert rig.run(15 * MIN + 1, cpu=0, IDLE_AFTER="1s")[0] == "poweroff"


def test_short_thresholds_in_seconds_and_no_boot_grace(rig: Rig) -> None:
    settings = {"IDLE_AFTER": "30s", "IDLE_BOOT_GRACE": "0", "IDLE_CPU_PERCENT": "0"}
    _, result = rig.run(5, 99, **settings)
    assert said(result) == "keep: idle for 0s of 30s (no render process, CPU not checked)"
    assert rig.run(34, 99, **settings)[0] == "keep"
    assert rig.run(35, 99, **settings)[0] == "poweroff"


def test_zero_turns_idle_shutdown_off_but_not_the_cap(rig: Rig) -> None:
    rig.run(16 * MIN)
    decision, result = rig.run(10_000 * MIN, cpu=0, IDLE_AFTER="0")
    assert decision == "keep"
    assert said(result) == "keep: idle shutdown is off (IDLE_AFTER=0)"
    decision, result = rig.run(10_001 * MIN, cpu=0, IDLE_AFTER="0", IDLE_MAX_UPTIME="8h")
    assert decision == "poweroff"
    assert said(result) == "poweroff: up 166h41m, past the 8h maximum uptime, no render running"


def test_the_cost_cap_waits_for_a_running_render_up_to_its_grace(rig: Rig) -> None:
    cap = {"IDLE_MAX_UPTIME": "12h", "IDLE_CAP_GRACE": "60"}
    rig.process(77, "deadlinesandbox")
    assert rig.run(12 * 60 * MIN - 60, cpu=90, **cap)[0] == "keep"
    decision, result = rig.run(12 * 60 * MIN + 15 * MIN, cpu=90, **cap)
    assert decision == "keep"
    assert said(result) == (
        "keep: up 12h15m, past the 12h maximum uptime; waiting up to 45m more for render "
        "deadlinesandbox (pid 77) to finish"
    )
    # The frame finishes inside the grace: off at once, though the CPU is still busy.
    rig.stop(77)
    decision, result = rig.run(12 * 60 * MIN + 20 * MIN, cpu=90, **cap)
    assert decision == "poweroff"
    assert said(result) == "poweroff: up 12h20m, past the 12h maximum uptime, no render running"


def test_a_render_outliving_the_cap_grace_is_stopped(rig: Rig) -> None:
    rig.process(77, "blender")
    decision, result = rig.run(13 * 60 * MIN, cpu=90, IDLE_MAX_UPTIME="12h", IDLE_CAP_GRACE="1h")
    assert decision == "poweroff"
    assert said(result) == (
        "poweroff: up 13h, past the 12h maximum uptime and its 1h grace, "
        "render blender (pid 77) still running"
    )
    decision, result = rig.run(12 * 60 * MIN, cpu=90, IDLE_MAX_UPTIME="12h", IDLE_CAP_GRACE="0")
    assert decision == "poweroff"
    assert "a hard cap" in said(result)


def test_long_process_names_match_the_kernels_15_character_comm(rig: Rig) -> None:
    rig.process(5, "flamenco-worker")  # the agent itself is not a render
    rig.process(6, "my_long_renderer_cli"[:15])  # the kernel keeps 15 characters
    settings = {"IDLE_BOOT_GRACE": "0", "IDLE_CPU_PERCENT": "0"}
    settings["IDLE_RENDER_PROCESSES"] = "blender my_long_renderer_cli"
    _, result = rig.run(100, **settings)
    assert said(result) == "keep: busy: render my_long_renderer_cli (pid 6) running"
    rig.stop(6)
    assert said(rig.run(101, **settings)[1]).startswith("keep: idle for 0s")


def test_dry_run_says_what_it_would_do_and_changes_nothing(rig: Rig) -> None:
    settings = {"IDLE_AFTER": "10s", "IDLE_BOOT_GRACE": "0", "IDLE_CPU_PERCENT": "0"}
    rig.run(5, **settings)
    decision, result = rig.run(100, 0, "--dry-run", **settings)
    assert said(result) == "poweroff: idle for 1m (no render process, CPU not checked)"
    assert decision == "keep"  # nothing ran
    assert (rig.state / "idle-since").read_text().strip() == "5"


@pytest.mark.parametrize(
    ("name", "value"),
    [("IDLE_AFTER", "soon"), ("IDLE_MAX_UPTIME", "-5"), ("IDLE_CPU_PERCENT", "ten")],
)
def test_a_bad_setting_is_an_error_and_never_a_power_off(rig: Rig, name: str, value: str) -> None:
    decision, result = rig.run(10_000 * MIN, 0, **{"IDLE_MAX_UPTIME": "1m", name: value})
    assert decision == "keep"
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"farmhand-idle: {name}={value} is not")
    assert len(result.stderr.strip().splitlines()) == 1
