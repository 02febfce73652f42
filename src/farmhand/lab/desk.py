"""The desk: the network namespace of the user's desktop, where pyinfra and ssh run, and
what they need to log in to the lab's hosts."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from farmhand.lab.net import netns_argv


def desk_argv(namespace: str, argv: Sequence[str]) -> list[str]:
    """``argv`` wrapped to run in the desk namespace (e.g. a pyinfra command line)."""
    return netns_argv(namespace, argv)


def run_in_desk(
    namespace: str,
    argv: Sequence[str],
    *,
    timeout: float | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in the desk namespace with captured text output (never raises on exit)."""
    return subprocess.run(
        desk_argv(namespace, argv),
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ssh_data(key_path: Path) -> dict[str, Any]:
    """Host data for pyinfra's @ssh connector to log in to any lab host."""
    return {
        "ssh_user": "root",
        "ssh_key": str(key_path),
        "ssh_known_hosts_file": "/dev/null",
        "ssh_strict_host_key_checking": "off",
    }
