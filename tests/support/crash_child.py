"""Run the real farmhand CLI and SIGKILL it at the Nth step of a key store commit.

``python tests/support/crash_child.py N ARGS...`` runs ``farmhand ARGS`` in this process with
``farmhand.keystore.fs._step`` (a no-op named point between two commit steps) replaced: each
step is printed to stderr as ``crash-step K NAME``, and step N kills the process with SIGKILL,
as a power cut or ``kill -9`` would. N = 0 never kills (to count the steps). Only the crash
tests (tests/test_keystore_crash.py) run this; nothing a user runs can reach it.
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> None:
    kill_at = int(sys.argv[1])
    from farmhand.cli import main as farmhand_main
    from farmhand.keystore import fs

    seen = 0

    def step(name: str) -> None:
        nonlocal seen
        seen += 1
        sys.stderr.write(f"crash-step {seen} {name}\n")
        sys.stderr.flush()
        if seen == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    fs._step = step  # type: ignore[attr-defined]  # the test-only fault injection point
    sys.argv = ["farmhand", *sys.argv[2:]]
    farmhand_main()


if __name__ == "__main__":
    main()
