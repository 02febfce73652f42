"""A key store change killed (SIGKILL) at every step of its commit leaves a whole store (#15).

Each case runs the real ``farmhand keys renew`` / ``keys revoke`` in a child process
(tests/support/crash_child.py) that kills itself at step N of the commit, for every N, on a
fresh copy of the session farm. Afterwards ``keys list`` must work (finishing or undoing the
change, in one line on stderr), ``keys verify`` must find nothing wrong, and the store must be
either exactly as before or as the same command leaves it when not killed: never half.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from farmhand.keystore import fs
from support.cli import WITH_PASSPHRASE, Snapshot, changed, clean_env, snapshot
from support.session import Farm

CHILD = Path(__file__).parent / "support" / "crash_child.py"
SLOW = pytest.mark.slow


def _run(kill_at: int, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHILD), str(kill_at), *args, "--dir", str(root)],
        env=clean_env(WITH_PASSPHRASE),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _steps(result: subprocess.CompletedProcess[str]) -> list[str]:
    prefix = "crash-step "
    lines = [ln[len(prefix) :] for ln in result.stderr.splitlines() if ln.startswith(prefix)]
    return [ln.split(" ", 1)[1] for ln in lines]


def _farmhand(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "farmhand", *args, "--dir", str(root)],
        env=clean_env(None),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _judge(root: Path, before: Snapshot, after: Snapshot, step: str) -> str:
    """'old' or 'new' for a store that recovered from a kill at ``step``; fails on half."""
    listed = _farmhand(root, "keys", "list", "--json")
    assert listed.returncode == 0, f"keys list after a kill at {step}:\n{listed.stderr}"
    assert "Traceback" not in listed.stderr
    assert len(listed.stderr.strip().splitlines()) <= 1, listed.stderr  # one line, if any
    assert not (root / fs.STAGING).exists()
    assert not (root / fs.DONE).exists()
    verified = _farmhand(root, "keys", "verify")
    assert verified.returncode == 0, f"keys verify after a kill at {step}:\n{verified.stdout}"
    assert "0 warnings, 0 errors" in verified.stdout
    now = snapshot(root)
    now.pop(".lock", None)
    if now == before:
        return "old"
    # The new state: exactly the files the uninterrupted run changed (contents differ from run
    # to run: fresh nonces, times), every one of them, and nothing else.
    assert set(now) == set(after), f"kill at {step}: files {set(now) ^ set(after)}"
    assert changed(before, now) == changed(before, after), f"half a change after {step}"
    return "new"


def _every_kill(farm: Farm, tmp_path: Path, *command: str) -> dict[str, str]:
    """Run ``command`` killed at each commit step in turn; the state each kill left."""
    reference = tmp_path / "reference"
    shutil.copytree(farm.root, reference, symlinks=True)
    before = snapshot(reference)
    before.pop(".lock", None)
    whole = _run(0, reference, *command)
    assert whole.returncode == 0, whole.stderr
    steps = _steps(whole)
    assert "manifest" in steps, steps
    assert "retired" in steps, steps
    assert any(s.startswith("deleted") for s in steps), steps
    after = snapshot(reference)
    after.pop(".lock", None)
    assert changed(before, after), "the command changed nothing"

    states: dict[str, str] = {}
    for number, step in enumerate(steps, start=1):
        root = tmp_path / f"kill-{number}"
        shutil.copytree(farm.root, root, symlinks=True)
        killed = _run(number, root, *command)
        assert killed.returncode == -signal.SIGKILL, (step, killed.returncode, killed.stderr)
        assert _steps(killed)[-1] == step
        states[step] = _judge(root, before, after, step)
        shutil.rmtree(root)
    return states


def _expected(states: dict[str, str]) -> None:
    """Killed before the COMMIT marker: the old store; from the marker on: the new one."""
    steps = list(states)
    commit = steps.index("committed")
    assert all(states[s] == "old" for s in steps[:commit]), states
    assert all(states[s] == "new" for s in steps[commit:]), states


@SLOW
def test_renew_killed_at_every_commit_step(farm: Farm, tmp_path: Path) -> None:
    _expected(_every_kill(farm, tmp_path, "keys", "renew", "worker0001"))


@SLOW
def test_revoke_killed_at_every_commit_step(farm: Farm, tmp_path: Path) -> None:
    _expected(_every_kill(farm, tmp_path, "keys", "revoke", "alice"))


def test_a_marker_without_its_manifest_is_a_finished_change(store: Path) -> None:
    """What an older farmhand left when killed while deleting its staging folder."""
    before = snapshot(store)
    (store / fs.STAGING).mkdir(mode=0o700)
    (store / fs.STAGING / "COMMIT").write_bytes(b"")
    listed = _farmhand(store, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr.strip() == f"note: {store}: cleaned up after a change that had completed"
    assert snapshot(store) == before
