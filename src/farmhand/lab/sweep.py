"""Finding and removing what a lab left behind by name (namespaces, the lab's cgroups, nspawn
processes bound to lab namespaces), so even a lost state file leaves nothing behind."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

from farmhand.lab.net import NETNS_DIR, Underlay
from farmhand.lab.nspawn import PROPAGATION_ROOT
from farmhand.lab.system import (
    all_lab_cgroups,
    cgroup_pids,
    process_argv,
    remove_lab_cgroup_group,
    send_signal,
    terminate,
    wait_gone,
)


def stray_nspawns(underlay: Underlay) -> list[int]:
    """systemd-nspawn processes attached to a lab namespace (found even without state)."""
    marker = f"--network-namespace-path={NETNS_DIR}/{underlay.prefix}-"
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            argv = process_argv(int(entry.name))
            if any(a.startswith(marker) for a in argv) and any("systemd-nspawn" in a for a in argv):
                found.append(int(entry.name))
    return found


def leftovers(underlay: Underlay, cgroup_group: str) -> bool:
    """True when an earlier lab with this prefix left anything on the machine."""
    return bool(underlay.namespaces() or all_lab_cgroups(cgroup_group) or stray_nspawns(underlay))


def sweep(underlay: Underlay, cgroup_group: str, prefix: str) -> None:
    """Remove every trace of a lab: stray containers, cgroups, namespaces, nspawn dirs."""
    terminate(stray_nspawns(underlay), 20)
    pids = cgroup_pids(all_lab_cgroups(cgroup_group))
    if pids:
        send_signal(pids, signal.SIGKILL)
        wait_gone(pids, 10)
    remove_lab_cgroup_group(cgroup_group)
    underlay.teardown()
    for folder in PROPAGATION_ROOT.glob(f"{prefix}-*"):
        with contextlib.suppress(OSError):
            folder.rmdir()
