"""No dead code: vulture finds nothing unused in the library, the deploys or the benchmarks
(tests/vulture_whitelist.py holds the few names only pyinfra or Python call)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_vulture_finds_no_dead_code() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vulture",
            "src",
            "deploys",
            "bench",
            "tests/vulture_whitelist.py",
            "--min-confidence",
            "80",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout == "", result.stdout
    assert result.returncode == 0, result.stderr
