"""Signal handling the lab benchmarks share: SIGTERM/SIGHUP end a run like Ctrl-C does, and
teardown of the lab is never cut short by a second signal."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def interrupt_on_signals(*signals: signal.Signals) -> None:
    """Turn these signals into KeyboardInterrupt, so ``finally`` blocks tear the lab down."""
    for sig in signals:
        signal.signal(sig, _interrupt)


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Let teardown finish even if SIGINT/SIGTERM arrive again."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
