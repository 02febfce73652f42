"""The lab benchmark's targets (issue 3), judged from all parts' results, and the shortfall
report when our Nebula defaults miss the throughput ratio."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from bench.provisioning import Redeploy
from bench.start_to_ping import StartToPing
from bench.throughput import OOMERFARM, OURS, VariantResult

# Targets from issue 3 ("Benchmark (bench/)").
TARGET_REDEPLOY_S = 20.0
TARGET_FIRST_PING_S = 5.0
TARGET_RATIO = 1.25
NEAR_ZERO_RETRANSMITS = 100
"""Our "near-zero": at most this many retransmitted segments in any 5 s run (oomerfarm's
settings retransmit about 20,000 in the same time here)."""


@dataclass
class Target:
    """One target line: PASS or FAIL, and the figures it was judged on."""

    passed: bool
    text: str


def evaluate(
    redeploys: list[Redeploy],
    pings: list[StartToPing],
    results: list[VariantResult],
    directions: Sequence[str],
) -> list[Target]:
    """Issue 3's targets, judged on the slowest or median figures as bench/README.md says."""
    targets = []
    slowest = max(r.seconds for r in redeploys)
    changed = sum(r.changed for r in redeploys)
    targets.append(
        Target(
            slowest < TARGET_REDEPLOY_S and changed == 0,
            f"no-change hub re-deploy < {TARGET_REDEPLOY_S:.0f} s, 0 operations changed: "
            f"{slowest:.1f} s (slowest of {len(redeploys)}), {changed} changed",
        )
    )
    worst = max(p.ping_s for p in pings)
    targets.append(
        Target(
            worst < TARGET_FIRST_PING_S,
            f"worker pings the hub < {TARGET_FIRST_PING_S:.0f} s after nebula starts: "
            f"median {statistics.median(p.ping_s for p in pings):.2f} s, max {worst:.2f} s "
            f"({len(pings)} tries)",
        )
    )
    ours = next(r for r in results if r.variant == OURS)
    oomer = next(r for r in results if r.variant == OOMERFARM)
    for direction in directions:
        where = "" if len(directions) == 1 else f" [{direction}]"
        ratio = ours.median(direction) / oomer.median(direction)
        rounds = " ".join(
            f"{a.mbits / b.mbits:.2f}"
            for a, b in zip(ours.of(direction), oomer.of(direction), strict=True)
        )
        targets.append(
            Target(
                ratio >= TARGET_RATIO,
                f"ours >= {TARGET_RATIO:.2f}x oomerfarm's throughput{where}: {ratio:.2f}x "
                f"(median {ours.median(direction):.0f} vs {oomer.median(direction):.0f} Mbit/s; "
                f"round by round {rounds})",
            )
        )
        most = max(ours.retransmits(direction))
        targets.append(
            Target(
                most <= NEAR_ZERO_RETRANSMITS,
                f"near-zero retransmits with ours (<= {NEAR_ZERO_RETRANSMITS} per run)"
                f"{where}: max {most:,} (oomerfarm: median "
                f"{statistics.median(oomer.retransmits(direction)):,.0f})",
            )
        )
    return targets


def print_shortfall(results: list[VariantResult], directions: Sequence[str]) -> None:
    """When our defaults miss the ratio: by how much, and which measured variant reaches it."""
    ours = next(r for r in results if r.variant == OURS)
    oomer = next(r for r in results if r.variant == OOMERFARM)
    for direction in directions:
        need = TARGET_RATIO * oomer.median(direction)
        got = ours.median(direction)
        if got >= need:
            continue
        print(
            f"\n  Our defaults miss the throughput target [{direction}] by "
            f"{need - got:.0f} Mbit/s ({got / need - 1:+.0%}): {got:.0f} vs the "
            f"{need:.0f} Mbit/s that {TARGET_RATIO:.2f}x oomerfarm's median needs."
        )
        reach = [r for r in results if r.median(direction) >= need and r.variant != OURS]
        for r in reach:
            print(
                f"  ({r.variant.key}) {r.variant.settings()} reaches it: "
                f"{r.median(direction) / oomer.median(direction):.2f}x"
            )
        if not reach:
            print("  None of the measured variants reaches it; try others with --variant.")
        print("  --breakdown shows what each of our settings buys; more --rounds narrow the noise.")
