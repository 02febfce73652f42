"""Host plumbing the lab needs: preflight checks, subprocesses, mounts, processes and cgroups.

Everything here acts on the machine that runs the lab, so each helper is narrow and checks
before it removes: the lab must never kill, unmount or delete anything it did not create.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from farmhand.errors import LabError

LAB_ROOT_ENV = "FARMHAND_LAB_DIR"
DEFAULT_LAB_ROOT = Path("/var/lib/farmhand/lab")

TOOL_PACKAGES: Mapping[str, str] = {
    "debootstrap": "debootstrap",
    "chroot": "coreutils",
    "systemd-nspawn": "systemd-container",
    "ip": "iproute2",
    "nft": "nftables",
    "ssh": "openssh-client",
}
"""Each host tool the lab runs, and the Debian package that ships it (for the error message)."""

CGROUP_GROUP = "farmhand-fhlab"
"""Folder, in each cgroup hierarchy we manage, that holds one cgroup per lab container.

It is ``farmhand-<prefix>`` (see ``net.PREFIX``), so a test lab never touches the user's lab.
"""

# systemd sometimes ellipsizes the ESC of a colour code away, leaving "…[0m".
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\[[0-9;]*m|\r")


def lab_root() -> Path:
    """Where the lab keeps images and state: $FARMHAND_LAB_DIR or /var/lib/farmhand/lab."""
    value = os.environ.get(LAB_ROOT_ENV, "").strip()
    return Path(value) if value else DEFAULT_LAB_ROOT


def missing_tools(tools: Iterable[str]) -> list[str]:
    """The tools from ``tools`` that are not on PATH (or in the sbin folders sudo drops)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
    return [tool for tool in tools if shutil.which(tool, path=path) is None]


def why_unavailable(tools: Iterable[str] = ()) -> str | None:
    """Why this machine cannot run the lab, in one line, or None when it can."""
    if not sys.platform.startswith("linux"):
        return f"farmhand lab needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "farmhand lab needs root (network namespaces, containers): run it with sudo"
    missing = missing_tools(tools)
    if missing:
        packages = sorted({TOOL_PACKAGES.get(tool, tool) for tool in missing})
        return (
            f"farmhand lab needs {', '.join(missing)}: install the package(s) {' '.join(packages)}"
        )
    return None


def require_host(tools: Iterable[str] = ()) -> None:
    """Fail early, in one line, when this machine cannot run the lab at all."""
    reason = why_unavailable(tools)
    if reason is not None:
        raise LabError(reason)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def run(
    argv: Sequence[str],
    *,
    what: str,
    check: bool = True,
    input: str | None = None,
    timeout: float | None = 120,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    die_with_parent: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with captured text output; on failure raise a one-line LabError about ``what``.

    With ``log``, output is appended there instead (long builds), and the error names the log.
    ``die_with_parent`` kills the command if we are killed (a build must not outlive us and
    write into a folder the next build deletes); only for single-threaded callers.
    """
    full_env = None if env is None else {**os.environ, **env}
    preexec = _die_with_parent if die_with_parent else None
    try:
        if log is None:
            result = subprocess.run(
                list(argv),
                input=input,
                stdin=subprocess.DEVNULL if input is None else None,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=full_env,
                check=False,
                preexec_fn=preexec,
            )
        else:
            with log.open("a", encoding="utf-8") as handle:
                handle.write(f"$ {' '.join(argv)}\n")
                handle.flush()
                result = subprocess.run(
                    list(argv),
                    input=input,
                    stdin=subprocess.DEVNULL if input is None else None,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=timeout,
                    env=full_env,
                    check=False,
                    preexec_fn=preexec,
                )
    except FileNotFoundError as exc:
        raise LabError(f"{what} failed: {argv[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{what} timed out after {timeout:.0f} s") from exc
    if check and result.returncode != 0:
        if log is not None:
            detail = f"{log_tail(log, 1)} (see {log})"
        else:
            detail = _last_line(f"{result.stdout or ''}\n{result.stderr or ''}")
        raise LabError(f"{what} failed (exit {result.returncode}): {detail}")
    return result


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL when the parent dies (Linux prctl)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def log_tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` non-empty lines of a log, without terminal colour codes."""
    try:
        data = path.read_bytes()[-32768:].decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    kept = [_ANSI.sub("", line).rstrip() for line in data.splitlines()]
    kept = [line for line in kept if line.strip()]
    return "\n".join(kept[-lines:]) if kept else "(empty log)"


# --- mounts -------------------------------------------------------------------------------


def _unescape_mount(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mountinfo() -> list[tuple[Path, str, str]]:
    """(mount point, fs type, super options) for each mount this process sees."""
    entries: list[tuple[Path, str, str]] = []
    try:
        text = Path("/proc/self/mountinfo").read_text(encoding="utf-8")
    except OSError:
        return entries
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) >= 5 and len(tail) >= 3:
            entries.append((Path(_unescape_mount(fields[4])), tail[0], tail[2]))
    return entries


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below ``path``, deepest first (the order to unmount them in)."""
    base = path.resolve() if path.exists() else path
    found = {point for point, _, _ in _mountinfo() if point == base or base in point.parents}
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def unmount_under(path: Path) -> None:
    """Unmount everything below ``path`` (an interrupted debootstrap leaves /proc and /sys)."""
    for point in mounts_under(path):
        subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)


def remove_tree(path: Path) -> None:
    """Delete a lab-owned folder, but never through a mount point left inside it."""
    if not path.exists() and not path.is_symlink():
        return
    unmount_under(path)
    if mounts_under(path):
        raise LabError(f"cannot remove {path}: something is still mounted below it")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


# --- processes ----------------------------------------------------------------------------


def process_argv(pid: int) -> list[str]:
    """The argv of a live process, or [] when it is gone (or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def send_signal(pids: Iterable[int], sig: signal.Signals) -> None:
    """Signal each pid, ignoring the ones that already exited."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def pids_using(path: Path) -> list[int]:
    """Processes whose root, working folder or command line is inside ``path``.

    Finds what an interrupted image build left running (debootstrap, dpkg in the chroot).
    """
    base = str(path.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        places = []
        for link in ("root", "cwd"):
            with contextlib.suppress(OSError):
                places.append(os.readlink(entry / link))
        places += process_argv(int(entry.name))
        if any(p == base or p.startswith(base + "/") for p in places):
            found.append(int(entry.name))
    return found


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait up to ``timeout`` seconds for ``pids`` to exit; return those still alive."""
    pending = list(pids)
    deadline = time.monotonic() + timeout
    while pending:
        for pid in pending:  # reap our own children so they do not linger as zombies
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        pending = [pid for pid in pending if pid_alive(pid)]
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    return pending


def terminate(pids: Iterable[int], timeout: float, *, resend: float = 2.0) -> None:
    """SIGTERM ``pids``, again every ``resend`` seconds, then SIGKILL what is left at ``timeout``.

    Re-sending matters for containers: a poweroff request that reaches a container before its
    systemd has set up its signal handlers is silently dropped (PID 1 ignores it).
    """
    pending = [pid for pid in pids if pid_alive(pid)]
    deadline = time.monotonic() + timeout
    while pending:
        send_signal(pending, signal.SIGTERM)
        left = deadline - time.monotonic()
        pending = wait_gone(pending, max(0.0, min(resend, left)))
        if left <= resend:
            break
    if pending:
        send_signal(pending, signal.SIGKILL)
        wait_gone(pending, 10)


# --- cgroups ------------------------------------------------------------------------------


def systemd_is_init() -> bool:
    """True on a host booted with systemd (then nspawn gets its own scope from systemd)."""
    return Path("/run/systemd/system").is_dir()


def cgroup_roots() -> list[Path]:
    """Mount points of the hierarchies nspawn uses: cgroup2 and cgroup1's name=systemd."""
    roots: list[Path] = []
    seen: set[str] = set()
    for point, fstype, options in _mountinfo():
        if fstype == "cgroup2":
            kind = "cgroup2"
        elif fstype == "cgroup" and "name=systemd" in options.split(","):
            kind = "name=systemd"
        else:
            continue
        if kind not in seen:
            seen.add(kind)
            roots.append(point)
    return roots


def lab_cgroups(machine: str, group: str = CGROUP_GROUP) -> list[Path]:
    """The cgroup folders (one per hierarchy) that hold one lab container."""
    return [root / group / machine for root in cgroup_roots()]


def cgroup_pids(paths: Iterable[Path]) -> list[int]:
    """Every pid in the cgroup trees ``paths``."""
    pids: set[int] = set()
    for path in paths:
        if not path.is_dir():
            continue
        for procs in path.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(x) for x in procs.read_text(encoding="utf-8").split())
    return sorted(pids)


def remove_cgroup_tree(path: Path) -> None:
    """rmdir a cgroup and its children, deepest first (cgroups are removed with rmdir only)."""
    if not path.is_dir():
        return
    children = sorted(
        (p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
    )
    for child in [*children, path]:
        with contextlib.suppress(OSError):
            child.rmdir()


def all_lab_cgroups(group: str = CGROUP_GROUP) -> list[Path]:
    """The per-host cgroup folders the lab created, in every hierarchy."""
    found: list[Path] = []
    for root in cgroup_roots():
        folder = root / group
        if folder.is_dir():
            found.extend(p for p in sorted(folder.iterdir()) if p.is_dir())
    return found


def remove_lab_cgroup_group(group: str = CGROUP_GROUP) -> None:
    """Drop the now-empty cgroup folders of a lab."""
    for root in cgroup_roots():
        remove_cgroup_tree(root / group)
