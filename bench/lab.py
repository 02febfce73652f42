"""Benchmark: the lab farm for real, from `lab up` to overlay throughput vs. oomerfarm's settings.

Run from the project root, as root, on Linux::

    .venv/bin/python -m bench.lab                 # 1 hub, 3 workers, 1 boss (about 4 minutes)
    .venv/bin/python -m bench.lab --breakdown     # also: which of our settings buys what
    .venv/bin/python -m bench.lab --down          # remove a bench lab left by --keep or a crash

What is measured (see bench/README.md), on a lab of its own (prefix ``fhbench``, state in
``$FARMHAND_LAB_DIR/fhbench``), so the other labs of this machine are never touched:

1. **lab up** with the base image already cached, split into boot (namespaces, containers, ssh),
   keygen and the hub, workers and boss deploys: the steps of ``farmhand lab up``, timed one by
   one. Its proof checks run afterwards and are timed apart.
2. **no-change re-deploy of the hub**: the real hub deploy again; it must change 0 operations.
3. **nebula start -> first overlay ping of the hub** on a worker: ``systemctl start
   farmhand-nebula``, then ``ping -c1 -W1 HUB`` in a loop, timed on the worker itself. Nebula's
   own log (journald) gives the moment the tunnel interface came up and the hub handshake ended.
4. **overlay TCP throughput** worker0001 -> hub with iperf3: our rendered Nebula settings as
   deployed against oomerfarm's (MTU 1300, tx_queue 500, kernel-default socket buffers) and MTU
   1440 for reference. Variants are applied by editing the deployed config.yml on both hosts and
   restarting farmhand-nebula; runs are interleaved round by round so that load from anything
   else on the machine spreads over all variants alike. The deployed files are restored after
   and proven restored by re-deploys that must change nothing.

The iperf3 server listens on the hub's overlay address, port 445, while smbd is stopped: that
port is the one the Nebula firewall lets workers reach on the hub, so the benchmark needs no
firewall change and measures the path that scenes and renders really take.

Exit status: 0 when every target passes, 1 when one fails, 2 when the benchmark could not run
(not root, a lab step failed, a check of the setup failed).

This module only parses the arguments and runs the parts in order; each part lives apart:
bench/provisioning.py (1, 2), bench/start_to_ping.py (3), bench/throughput.py (4),
bench/targets.py (the targets) and bench/measure.py (what they share).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.harness import BenchError, LabBench, add_lab_options
from bench.harness import main as harness_main
from bench.measure import pass_fail, remote, say, wait_for_overlay
from bench.provisioning import lab_up, print_redeploys, print_up, redeploy
from bench.start_to_ping import print_start_to_ping, start_to_ping
from bench.targets import evaluate, print_shortfall
from bench.throughput import (
    BREAKDOWN,
    DEFAULT_MAX_OTHERS,
    IPERF_PORT,
    MTU_1440,
    OOMERFARM,
    OURS,
    Throughput,
    Variant,
    measure_throughput,
    print_throughput,
)
from farmhand.keystore.plan import DEFAULT_MTU, Role
from farmhand.lab import provision
from farmhand.lab.farm import LabFarm, worker_name
from farmhand.lab.image import ImageSpec, ensure_base_image, image_is_complete, image_path

PREFIX = "fhbench"
"""This benchmark's lab: its own namespaces, containers and cgroups, apart from other labs."""

NEBULA_OVERHEAD_V4 = 60
"""Bytes Nebula adds per packet on an IPv4 underlay: IP 20 + UDP 8 + header 16 + AEAD tag 16."""


def _variant(text: str) -> Variant:
    """``mtu=1420,tx_queue=1000,buffer=0`` (buffer in bytes; 0 = kernel default)."""
    fields: dict[str, int] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if key.strip() not in ("mtu", "tx_queue", "buffer") or not value.strip().isdigit():
            raise argparse.ArgumentTypeError(
                f"not a variant: {text!r} (want e.g. mtu=1420,tx_queue=1000,buffer=0)"
            )
        fields[key.strip()] = int(value)
    if "mtu" in fields and not 1280 <= fields["mtu"] <= 1440:
        raise argparse.ArgumentTypeError("mtu must be 1280-1440 on the lab's 1500-byte underlay")
    return Variant("", text, fields.get("mtu"), fields.get("tx_queue"), fields.get("buffer"))


def _positive(text: str) -> int:
    """An argparse type: counts of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line of ``python -m bench.lab``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.lab",
        description="The lab farm for real: lab up, re-deploy, Nebula start to ping, and overlay "
        "throughput with our Nebula settings against oomerfarm's.",
    )
    parser.add_argument(
        "--workers", type=_positive, default=3, help="workers in the lab (default 3)"
    )
    parser.add_argument(
        "--redeploys", type=_positive, default=2, help="no-change hub re-deploys (default 2)"
    )
    parser.add_argument(
        "--pings", type=_positive, default=5, help="nebula start -> ping tries (default 5)"
    )
    parser.add_argument(
        "--rounds", type=_positive, default=3, help="iperf3 runs per variant (default 3)"
    )
    parser.add_argument(
        "--seconds", type=_positive, default=5, help="length of one iperf3 run (default 5)"
    )
    parser.add_argument(
        "--max-others",
        type=float,
        default=DEFAULT_MAX_OTHERS,
        metavar="CPUS",
        help="run an iperf3 run again when processes outside the bench lab kept more than this "
        f"many CPUs busy during it (default {DEFAULT_MAX_OTHERS})",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        help="how many times one iperf3 run may be run again for that (default 2)",
    )
    parser.add_argument(
        "--both-directions",
        action="store_true",
        help="also measure hub -> worker (iperf3 -R), as when workers fetch scenes",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also ours with each setting set back to oomerfarm's, one at a time",
    )
    parser.add_argument(
        "--variant",
        type=_variant,
        action="append",
        default=[],
        metavar="mtu=N,tx_queue=N,buffer=BYTES",
        help="another Nebula setting to measure (repeatable; buffer=0: kernel default)",
    )
    add_lab_options(parser, PREFIX)
    return parser.parse_args(argv)


def run(args: argparse.Namespace, farm: LabFarm) -> int:
    """The four parts in order on ``farm``, then the report and the targets (exit 0/1)."""
    workers: int = args.workers
    if workers < 2:
        raise BenchError("the benchmark needs at least 2 workers (one pings, one runs iperf3)")
    spec = ImageSpec()
    cached = image_is_complete(image_path(spec))
    load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"farmhand lab benchmark: {os.cpu_count()} CPU(s), load {load}, "
        f"Python {platform.python_version()}, {platform.platform()}"
    )
    print(f"  lab prefix {PREFIX}, state {farm.state_dir}")
    if not cached:
        say("building the base image first (not timed)...")
    image: Path = ensure_base_image(say, spec=spec)
    say(f"base image {image} ({'cached' if cached else 'built now'})")
    if farm.exists() or farm.underlay.namespaces():
        say("an earlier bench lab is still here: removing it first")
        farm.down()

    say(f"lab up with {workers} workers...")
    up = lab_up(farm, workers)
    if up.checks_failed:
        print_up(up, workers)
        raise BenchError(f"{len(up.checks_failed)} of lab up's proof checks failed")
    hub = provision.overlay_ip(farm, "hub")
    versions = remote(farm, "hub", "nebula -version | head -1; uname -r").split("\n")

    say(f"{args.redeploys} no-change re-deploy(s) of the hub...")
    redeploys = []
    for _ in range(args.redeploys):
        redeploys.append(redeploy(farm, Role.HUB, "hub"))
        say(f"{redeploys[-1].seconds:.1f} s, {redeploys[-1].changed} changed")

    pinger = worker_name(workers)
    say(f"{pinger}: nebula start -> first ping of the hub, {args.pings} tries...")
    pings = start_to_ping(farm, pinger, hub, args.pings)

    variants = [OURS, OOMERFARM, MTU_1440, *(BREAKDOWN if args.breakdown else ())]
    variants += args.variant
    variants = [
        v if v.key else Variant(chr(ord("a") + i), v.name, v.mtu, v.tx_queue, v.buffer)
        for i, v in enumerate(variants)
    ]
    directions = ["up", "down"] if args.both_directions else ["up"]
    tp = Throughput(
        farm,
        "hub",
        worker_name(1),
        args.seconds,
        max_others=args.max_others,
        retries=args.retries,
    )
    say(f"throughput {tp.client} -> {tp.server}: iperf3 on the hub's overlay port {IPERF_PORT}")
    tp.prepare()
    try:
        results = measure_throughput(tp, variants, args.rounds, directions)
    except BaseException:
        with contextlib.suppress(Exception):  # best effort: the lab goes down next anyway
            tp.restore()
        raise
    tp.restore()
    wait_for_overlay(farm, tp.client, hub)
    say("proving the deployed settings are back: re-deploys must change nothing...")
    restored = tp.check_restored()
    after = [redeploy(farm, Role.HUB, "hub"), redeploy(farm, Role.WORKER, tp.client)]
    for r in after:
        if r.changed:
            restored.append(f"re-deploy of {r.host} changed {r.changed}: {r.changed_ops}")
    if restored:
        raise BenchError(
            "the lab is not as deployed after the throughput runs: " + "; ".join(restored)
        )

    load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"\nResults (lab: Nebula {versions[0].removeprefix('Version: ')}, kernel {versions[1]}, "
        f"{len(farm.records())} containers on {os.cpu_count()} CPU(s) shared with whatever else "
        f"runs here; load now {load})"
    )
    print_up(up, workers)
    print_redeploys(redeploys)
    print_start_to_ping(pings, pinger, hub)
    baseline = next(r for r in results if r.variant == OOMERFARM)
    for direction in directions:
        print_throughput(results, direction, tp, baseline)
    print(
        f"   MTU: Nebula adds {NEBULA_OVERHEAD_V4} bytes on an IPv4 underlay (80 on IPv6). "
        f"mtu 1440 fills a 1500-byte path exactly;\n"
        f"   the default {DEFAULT_MTU} also fits GCP's 1460 over IPv6 and PPPoE's 1492."
    )
    print(
        f"   After the runs: configs byte-identical to the deployed ones, smbd back; "
        f"re-deploys changed {after[0].changed} (hub) and {after[1].changed} ({tp.client})."
    )

    targets = evaluate(redeploys, pings, results, directions)
    print("\nTargets (issue 3, on this machine):")
    for target in targets:
        print(f"  {pass_fail(target.passed)}  {target.text}")
    print(f"  info  lab up, 1 hub + {workers} workers + 1 boss, image cached: {up.total:.1f} s")
    print_shortfall(results, directions)
    return 0 if all(t.passed for t in targets) else 1


BENCH = LabBench(
    prefix=PREFIX,
    parse_args=parse_args,
    run=run,
    say=say,
    needs_root="bench.lab runs the lab: it needs root on Linux (try: sudo -E ...)",
    signals=(signal.SIGTERM, signal.SIGHUP),
    module="bench.lab",
)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.lab``: the shared main loop (bench/harness.py) on this benchmark."""
    return harness_main(BENCH, argv)


if __name__ == "__main__":
    sys.exit(main())
