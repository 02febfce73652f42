"""Running the real CLI in the tests and judging what it printed.

``run_cli`` runs ``python -m farmhand`` as a real subprocess with stdin that is not a terminal;
``run_in_pty`` runs a program on a pseudo-terminal and answers its prompts. Every run checks that
no test passphrase shows in a command line or any output. Also: snapshots of a folder to compare
later, decrypting an age tar with pyrage (not farmhand), and ``wait_until``.
"""

from __future__ import annotations

import io
import os
import pty
import select
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pyrage
import pytest

PASSPHRASE = "correct horse battery staple"
WRONG_PASSPHRASE = "not the farm passphrase"
OTHER_PASSPHRASE = "a second passphrase of its own"
NEW_PASSPHRASE = "the vault's next passphrase"
SECRETS = (PASSPHRASE, WRONG_PASSPHRASE, OTHER_PASSPHRASE, NEW_PASSPHRASE)
"""Passphrases the tests use: none of them may ever show in a command line or any output."""

WITH_PASSPHRASE: dict[str, str] = {"FARMHAND_PASSPHRASE": PASSPHRASE}
WITH_WRONG_PASSPHRASE: dict[str, str] = {"FARMHAND_PASSPHRASE": WRONG_PASSPHRASE}

Snapshot = dict[str, tuple[bytes | None, int]]
"""Relative path -> (content, permission bits); content is None for a folder."""

Members = dict[str, tuple[bytes, int]]
"""A decrypted tar: member name -> (content, permission bits)."""


def clean_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARMHAND_")}
    # Wide, colourless, unbuffered output: tables are not elided and lines arrive as printed.
    env.update(COLUMNS="200", NO_COLOR="1", TERM="dumb", PYTHONUNBUFFERED="1")
    env.update(extra or {})
    return env


def assert_no_secret(*texts: str) -> None:
    for secret in SECRETS:
        for text in texts:
            assert secret not in text, "a passphrase showed up in a command line or its output"


def run_cli(
    *args: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """``python -m farmhand ARGS`` in a subprocess; ``env`` is added to a FARMHAND_-free env.

    stdin is /dev/null (or ``input``): never a terminal, so farmhand cannot prompt. Every run
    also checks that no test passphrase appears in the arguments or the output.
    """
    argv = [sys.executable, "-m", "farmhand", *(os.fspath(a) for a in args)]
    assert_no_secret(*argv)
    result = subprocess.run(
        argv,
        env=clean_env(env),
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )
    assert_no_secret(result.stdout, result.stderr)
    return result


def popen_cli(
    *args: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """Like ``run_cli`` but started in the background (stdout piped, line by line)."""
    argv = [sys.executable, "-m", "farmhand", *(os.fspath(a) for a in args)]
    assert_no_secret(*argv)
    return subprocess.Popen(
        argv,
        env=clean_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(what: str, check: Callable[[], bool], within: float, every: float = 0.5) -> float:
    """Poll ``check`` until it holds; fail after ``within`` seconds. Returns the time taken."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > within:
            pytest.fail(f"{what}: still not true after {within:.0f} s")
        time.sleep(every)
    return time.monotonic() - started


def assert_cli_error(
    result: subprocess.CompletedProcess[str], *fragments: str, code: int | None = None
) -> str:
    """A failed run that printed exactly one ``error: …`` line holding every fragment."""
    output = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode != 0, output
    if code is not None:
        assert result.returncode == code, output
    assert "Traceback" not in result.stderr + result.stdout, output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, output
    line = lines[0]
    assert line.startswith("error: "), output
    for fragment in fragments:
        assert fragment in line, output
    return line


def snapshot(root: Path) -> Snapshot:
    """Every file and folder under ``root`` with its content and mode, to compare later."""
    out: Snapshot = {".": (None, stat.S_IMODE(root.stat().st_mode))}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        mode = stat.S_IMODE(path.lstat().st_mode)
        out[rel] = (None, mode) if path.is_dir() else (path.read_bytes(), mode)
    return out


def changed(before: Snapshot, after: Snapshot) -> set[str]:
    """Paths added, removed or modified between two snapshots."""
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def untar(data: bytes) -> Members:
    """The regular files of a gzip tar, by name."""
    out: Members = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar:
            assert member.isfile(), member.name
            handle = tar.extractfile(member)
            assert handle is not None
            out[member.name] = (handle.read(), member.mode)
    return out


def decrypt_tar(path: Path, passphrase: str = PASSPHRASE) -> Members:
    """Decrypt an age file with pyrage (not farmhand) and read the tar inside."""
    return untar(bytes(pyrage.passphrase.decrypt(path.read_bytes(), passphrase)))


def decrypt_tars(paths: Sequence[Path], passphrase: str = PASSPHRASE) -> list[Members]:
    """``decrypt_tar`` for several files at once, in processes (pyrage holds the GIL)."""
    with ProcessPoolExecutor(max_workers=min(len(paths), os.cpu_count() or 1)) as pool:
        return list(pool.map(decrypt_tar, paths, [passphrase] * len(paths)))


def run_in_pty(
    argv: Sequence[str],
    answers: Sequence[tuple[bytes, bytes]] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> tuple[int, bytes]:
    """Run ``argv`` with a pseudo-terminal as its controlling terminal (stdin, stdout, stderr).

    Each (prompt, reply) of ``answers`` is answered in order once ``prompt`` appears after the
    previous one. Returns the exit code and everything the program wrote to the terminal.
    """
    child_env = clean_env(env)
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child only execs
        try:
            os.execvpe(argv[0], list(argv), child_env)  # noqa: S606
        finally:
            os._exit(127)
    transcript = b""
    position = 0
    pending = list(answers)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            transcript += chunk
            if pending:
                prompt, reply = pending[0]
                found = transcript.find(prompt, position)
                if found >= 0:
                    # Let the program finish switching the terminal to no-echo (getpass
                    # flushes input typed before that), then type the reply.
                    time.sleep(0.2)
                    os.write(fd, reply)
                    position = found + len(prompt)
                    pending.pop(0)
        else:
            os.kill(pid, 9)
            pytest.fail(f"{argv} did not finish in {timeout} s: {transcript!r}")
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return os.waitstatus_to_exitcode(status), transcript
