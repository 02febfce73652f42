"""What every part of the lab benchmark shares: progress and PASS/FAIL lines, MiB and ms
formatting, CPU accounting of the shared machine, and running scripts on lab hosts, so each
measurement module prints and reaches hosts the same way."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from bench.harness import BenchError
from farmhand.lab.farm import LabFarm
from farmhand.lab.system import cgroup_roots

NEBULA_UNIT = "farmhand-nebula"
"""The deployed Nebula service: restarted by the throughput runs, timed by start-to-ping."""


def say(line: str) -> None:
    """Progress, indented under the section headings so results stand out."""
    print(f"  {line}", flush=True)


def pass_fail(ok: bool) -> str:
    """The word a target line starts with."""
    return "PASS" if ok else "FAIL"


def format_mib(size: int) -> str:
    """Buffer sizes as the kernel and Nebula docs give them (MiB, or KiB below 1 MiB)."""
    return f"{size / 2**20:g} MiB" if size >= 2**20 else f"{size / 2**10:g} KiB"


def format_ms(value: float | None) -> str:
    """Seconds as whole milliseconds; ``-`` when journald had no such line."""
    return "-" if value is None else f"{value * 1000:.0f}"


class CpuMeter:
    """CPU time used on this machine, split into this lab's containers and everything else.

    The lab's share comes from its cgroup2 folder (``cpu.stat`` exists there even without the
    cpu controller); the rest of ``/proc/stat``'s busy time is "others": other labs, other
    sessions, and kernel threads such as ksoftirqd.
    """

    def __init__(self, farm: LabFarm) -> None:
        self.stat: Path | None = None
        for root in cgroup_roots():
            stat = root / farm.cgroup_group / "cpu.stat"
            if (root / "cgroup.controllers").exists() and stat.is_file():  # cgroup2
                self.stat = stat
        self.tick = os.sysconf("SC_CLK_TCK")

    @property
    def available(self) -> bool:
        """False where nspawn puts containers in systemd's machine scopes, not our cgroups."""
        return self.stat is not None

    def sample(self) -> tuple[float, float, float]:
        """(wall, busy CPU seconds of the machine, CPU seconds of the lab)."""
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        busy = (ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6] + ticks[7]) / self.tick
        ours = 0.0
        if self.stat is not None:
            with contextlib.suppress(OSError, ValueError):
                for line in self.stat.read_text().splitlines():
                    if line.startswith("usage_usec "):
                        ours = int(line.split()[1]) / 1e6
        return time.monotonic(), busy, ours

    @staticmethod
    def others(before: tuple[float, float, float], after: tuple[float, float, float]) -> float:
        """CPUs (on average) busy outside the lab between two samples."""
        wall = after[0] - before[0]
        return max(0.0, (after[1] - before[1]) - (after[2] - before[2])) / wall if wall else 0.0

    @staticmethod
    def lab(before: tuple[float, float, float], after: tuple[float, float, float]) -> float:
        """CPUs (on average) busy inside the lab between two samples."""
        wall = after[0] - before[0]
        return (after[2] - before[2]) / wall if wall else 0.0


# --------------------------------------------------------------------------------------------
# Remote helpers: everything runs on lab hosts over ssh from the lab's desk namespace


def remote(
    farm: LabFarm,
    host: str,
    script: str,
    *args: str,
    input: str | None = None,
    check: bool = True,
) -> str:
    """Run a shell ``script`` (with positional ``args``) as root on ``host``; return stdout."""
    result = farm.exec(host, ["sh", "-c", script, "sh", *args], input=input)
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise BenchError(
            f"{host}: script failed (exit {result.returncode})"
            + (f": {detail[-1]}" if detail else "")
            + f"\n{script.strip()}"
        )
    return result.stdout


def wait_for_overlay(farm: LabFarm, source: str, address: str, timeout: float = 20) -> None:
    """Until ``source`` gets a ping answer from ``address`` over the overlay."""
    script = (
        'end=$(( $(date +%s) + $2 )); until ping -c1 -W1 -n "$1" >/dev/null 2>&1; do '
        '[ "$(date +%s)" -ge "$end" ] && exit 1; sleep 0.1; done'
    )
    if farm.exec(source, ["sh", "-c", script, "sh", address, str(int(timeout))]).returncode:
        raise BenchError(f"{source} gets no overlay ping answer from {address} in {timeout:.0f} s")
