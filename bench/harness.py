"""The main loop the lab benchmarks share: refuse to run without root, boot nothing until
asked, and always tear the bench lab down (unless --keep), also on errors, Ctrl-C or a
signal, so a failed run never leaves a lab behind."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.signals import interrupt_on_signals, uninterrupted
from farmhand.errors import FarmhandError
from farmhand.lab.farm import LabFarm
from farmhand.lab.system import lab_root


class BenchError(Exception):
    """The benchmark could not run or a setup check failed: nothing may be reported (exit 2)."""


@dataclass(frozen=True)
class LabBench:
    """One lab benchmark: its lab prefix, its arguments (``--state-dir``, ``--keep`` and
    ``--down`` among them) and its run, which returns the exit code."""

    prefix: str
    parse_args: Callable[[Sequence[str] | None], argparse.Namespace]
    run: Callable[[argparse.Namespace, LabFarm], int]
    say: Callable[[str], None]
    needs_root: str
    """What to print when not root on Linux."""
    signals: tuple[signal.Signals, ...] = (signal.SIGTERM,)
    """Signals that end a run like Ctrl-C does."""
    module: str = ""
    """``bench.lab``: set to print what happens at the end (down, kept, teardown time)."""


def add_lab_options(parser: argparse.ArgumentParser, prefix: str) -> None:
    """The options :func:`main` reads (``--state-dir``, ``--keep``, ``--down``), the same for
    every lab benchmark."""
    parser.add_argument(
        "--state-dir", type=Path, help=f"the bench lab's state (default: lab root/{prefix})"
    )
    parser.add_argument(
        "--keep", action="store_true", help="leave the lab up at the end (remove with --down)"
    )
    parser.add_argument("--down", action="store_true", help="only remove a bench lab and exit")


def main(bench: LabBench, argv: Sequence[str] | None = None) -> int:
    """Run ``bench`` on a lab of its own; 2 when it could not measure, 130 when interrupted."""
    args = bench.parse_args(argv)
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        print(bench.needs_root, file=sys.stderr)
        return 2
    interrupt_on_signals(*bench.signals)
    state_dir: Path = args.state_dir or lab_root() / bench.prefix
    farm = LabFarm(state_dir, prefix=bench.prefix, progress=lambda line: bench.say(f"lab: {line}"))
    if args.down:
        farm.down()
        if bench.module:
            print("the bench lab is down")
        return 0
    code = 2
    try:
        code = bench.run(args, farm)
    except (BenchError, FarmhandError) as exc:
        print(f"\nBENCHMARK ABORTED: {exc}", file=sys.stderr)
    except KeyboardInterrupt as exc:
        print(f"\nBENCHMARK INTERRUPTED {exc}".rstrip(), file=sys.stderr)
        code = 130
    finally:
        with uninterrupted():
            _teardown(bench, args, farm)
    return code


def _teardown(bench: LabBench, args: argparse.Namespace, farm: LabFarm) -> None:
    if not bench.module:
        if not args.keep:
            farm.down()
    elif args.keep:
        print(f"\nThe lab stays up (--keep): remove it with `python -m {bench.module} --down`")
    else:
        print("\nTearing the bench lab down...", flush=True)
        started = time.monotonic()
        farm.down()
        print(f"  done in {time.monotonic() - started:.1f} s")
