"""The lab's guards around network namespaces, on this machine's real /run/netns (root only)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import uuid

import pytest

from farmhand.errors import LabError
from farmhand.lab import net

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2",
)


def test_a_namespace_file_that_is_the_hosts_own_namespace_is_never_swept() -> None:
    """A broken mount can leave /run/netns/NAME pointing at the host's namespace: listing its
    processes would then list every process on the machine, for the sweep to kill."""
    name = f"fhguard-{uuid.uuid4().hex[:6]}"
    path = net.NETNS_DIR / name
    net.NETNS_DIR.mkdir(parents=True, exist_ok=True)
    path.touch()
    try:
        subprocess.run(["mount", "--bind", "/proc/self/ns/net", str(path)], check=True)
        try:
            with pytest.raises(LabError, match="host's own network namespace"):
                net.netns_pids(name)
        finally:
            subprocess.run(["umount", str(path)], check=True)
    finally:
        path.unlink()


def test_namespaces_added_at_once_by_two_labs_all_stay_visible() -> None:
    """Adds and deletes go through one machine-wide lock; every namespace made is then found."""
    underlays = [net.Underlay(prefix=f"fhpar{i}{uuid.uuid4().hex[:3]}") for i in range(2)]
    names = [[f"{u.prefix}-h{j}" for j in range(4)] for u in underlays]

    def add_all(underlay: net.Underlay, mine: list[str]) -> None:
        for name in mine:
            underlay._add_namespace(name)

    threads = [
        threading.Thread(target=add_all, args=pair) for pair in zip(underlays, names, strict=True)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for underlay, mine in zip(underlays, names, strict=True):
            assert underlay.namespaces() == sorted(mine)
            for name in mine:
                assert net.netns_pids(name) == []
    finally:
        for underlay in underlays:
            underlay.teardown()
    assert all(u.namespaces() == [] for u in underlays)
