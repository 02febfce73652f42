"""Part 3 of the lab benchmark: from ``systemctl start farmhand-nebula`` on a worker to its first
overlay ping answer from the hub, timed on the worker (no ssh latency) and split by Nebula's own
journald lines into tun up and hub handshake."""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from dataclasses import dataclass

from bench.measure import NEBULA_UNIT, format_ms, remote, say
from farmhand.lab.farm import LabFarm

_START_TO_PING = """
set -u
hub=$1
systemctl stop farmhand-nebula
sleep 1
t0=$(date +%s%N)
systemctl start farmhand-nebula
tries=0
until ping -c1 -W1 -n "$hub" >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ $(( $(date +%s%N) - t0 )) -gt 30000000000 ]; then echo "no answer in 30 s" >&2; exit 1; fi
    sleep 0.02
done
t1=$(date +%s%N)
echo "$t0 $t1 $((tries + 1)) $(systemctl show -p MainPID --value farmhand-nebula)"
"""


@dataclass
class StartToPing:
    """One try: the ping time the target judges, and Nebula's log moments on the way."""

    ping_s: float
    """From `systemctl start` to the first ping answer."""
    pings: int
    interface_s: float | None
    """From `systemctl start` to Nebula's "interface is active" (journald time)."""
    handshake_s: float | None
    """From `systemctl start` to the hub handshake's last message (journald time)."""


def _journal_times(farm: LabFarm, host: str, pid: str, hub: str) -> tuple[int | None, int | None]:
    """journald times (us since the epoch) of Nebula's interface-up and hub-handshake lines."""
    interface = handshake = None
    for _ in range(10):  # journald may lag nebula's stdout by a moment
        out = remote(farm, host, 'journalctl --no-pager -o json _PID="$1"', pid, check=False)
        for line in out.splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                message = str(entry.get("MESSAGE", ""))
                stamp = int(entry["__REALTIME_TIMESTAMP"])
                if interface is None and "Nebula interface is active" in message:
                    interface = stamp
                if (
                    handshake is None
                    and "Handshake message received" in message
                    and f"vpnIp={hub}" in message
                ):
                    handshake = stamp
        if interface is not None and handshake is not None:
            break
        time.sleep(0.2)
    return interface, handshake


def start_to_ping(farm: LabFarm, worker: str, hub: str, tries: int) -> list[StartToPing]:
    """Restart Nebula on ``worker`` ``tries`` times; each time, until the hub answers a ping."""
    results = []
    for n in range(1, tries + 1):
        t0, t1, pings, pid = remote(farm, worker, _START_TO_PING, hub).split()
        interface, handshake = _journal_times(farm, worker, pid, hub)
        start_us = int(t0) // 1000
        results.append(
            StartToPing(
                ping_s=(int(t1) - int(t0)) / 1e9,
                pings=int(pings),
                interface_s=None if interface is None else (interface - start_us) / 1e6,
                handshake_s=None if handshake is None else (handshake - start_us) / 1e6,
            )
        )
        say(f"try {n}: first ping answer after {results[-1].ping_s * 1000:.0f} ms")
    return results


def print_start_to_ping(results: list[StartToPing], worker: str, hub: str) -> None:
    """Report section 3: each try, then median and max."""
    print(
        f"\n3. {worker}: `systemctl start {NEBULA_UNIT}` -> first overlay ping answer from the "
        f"hub ({hub})"
    )
    print(
        f"   {'try':>3}  {'tun up (ms)':>11}  {'hub handshake (ms)':>18}  "
        f"{'first ping answer (ms)':>22}  {'pings sent':>10}"
    )
    for n, r in enumerate(results, 1):
        print(
            f"   {n:>3}  {format_ms(r.interface_s):>11}  {format_ms(r.handshake_s):>18}  "
            f"{format_ms(r.ping_s):>22}  {r.pings:>10}"
        )
    pings = [r.ping_s for r in results]
    print(
        f"   median {statistics.median(pings) * 1000:.0f} ms, max {max(pings) * 1000:.0f} ms "
        "(tun up and handshake: journald's time of Nebula's log lines)"
    )
