"""nebula in the foreground with a live status line; SIGINT/SIGTERM stop it cleanly.

nebula runs as a child in its own session (so one Ctrl-C reaches it once, through us), its
output goes to nebula.log, and whatever ends the wait -- a signal, nebula dying, an error --
the child is stopped and reaped before we return: no stray nebula.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TextIO

from farmhand.join import JoinError
from farmhand.join.hub import hub_hints
from farmhand.join.probe import Probe, tcp_probe
from farmhand.join.state import Joined
from farmhand.model.host import SMB_PORT

STOP_SIGNALS = tuple(
    s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None
)
STOP_GRACE = 10.0


@contextlib.contextmanager
def _stop_requested() -> Iterator[list[int]]:
    """Turn SIGINT/SIGTERM/SIGHUP into a flag for the loop (restored afterwards)."""
    received: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _last_log_line(joined: Joined) -> str:
    try:
        lines = joined.paths.log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.terminate()  # SIGTERM; sudo passes it on to nebula
        try:
            child.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run_foreground(
    joined: Joined,
    out: TextIO = sys.stdout,
    *,
    interval: float = 1.0,
    on_hub: Callable[[Joined], None] = lambda _j: None,
) -> int:
    """Run nebula until a stop signal; returns the signal number that stopped it."""
    state = joined.state
    argv = joined.elevation.argv([state.nebula, "-config", str(joined.paths.config)])
    tty = out.isatty()
    started = time.monotonic()
    last_line = ""
    pid_file = joined.paths.foreground_pid
    with _stop_requested() as received, joined.paths.log.open("ab") as log:
        pid_file.write_text(f"{os.getpid()}\n", encoding="utf-8")
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            print(f"nebula started (pid {child.pid}); Ctrl-C stops it", file=out, flush=True)
            connected: Probe | None = None
            next_probe = 0.0
            while not received:
                code = child.poll()
                if code is not None:
                    reason = _last_log_line(joined) or f"exit {code}"
                    raise JoinError(f"nebula stopped on its own: {reason}")
                now = time.monotonic()
                if now >= next_probe:
                    probe = tcp_probe(state.hub_overlay_ip, SMB_PORT, timeout=min(2.0, interval))
                    next_probe = time.monotonic() + interval
                    up = int(now - started)
                    if probe.reachable:
                        line = (
                            f"connected: hub {state.hub_overlay_ip} answers in {probe.rtt_ms} ms, "
                            f"{state.boss} is {state.overlay_ip}, up {up // 60}:{up % 60:02d}"
                        )
                        if connected is None:
                            connected = probe
                            hinted = hub_hints(joined, probe)
                            if tty:
                                out.write("\r\x1b[K")
                            for hint in hinted.hints:
                                print(hint, file=out)
                            on_hub(hinted)
                    else:
                        line = f"waiting for the hub {state.hub_overlay_ip} ({up} s)"
                        connected = None
                    if tty:
                        out.write(f"\r\x1b[K{line}")
                        out.flush()
                    elif _state_of(line) != _state_of(last_line):
                        print(line, file=out, flush=True)
                    last_line = line
                time.sleep(0.1)
        finally:
            _stop(child)
            with contextlib.suppress(OSError):
                pid_file.unlink()
    if tty:
        out.write("\r\x1b[K")
    print(f"nebula stopped (signal {received[0]}); left the farm overlay", file=out, flush=True)
    return received[0]


def _state_of(line: str) -> str:
    return line.split(":", 1)[0].split(" (", 1)[0]


def stop_running(pid_file: Path, timeout: float = 20.0) -> bool:
    """Stop a foreground join recorded in ``pid_file`` (SIGTERM, as Ctrl-C would); True when
    one was running. The pid must still be a farmhand process: a reused pid is left alone.
    Not on Windows, where os.kill terminates outright (and would orphan nebula)."""
    if sys.platform == "win32":
        return False
    try:
        pid = int(pid_file.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return False
    if not _is_farmhand(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _is_farmhand(pid):
        if time.monotonic() > deadline:
            raise JoinError(f"the foreground 'farmhand join' (pid {pid}) did not stop")
        time.sleep(0.1)
    return True


def _is_farmhand(pid: int) -> bool:
    if pid <= 0 or pid == os.getpid():
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.parent.parent.is_dir() and Path("/proc/self").exists():
        try:
            return b"farmhand" in cmdline.read_bytes()
        except OSError:
            return False
    try:  # no /proc (macOS): the pid exists; the pid file is removed on exit
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True
