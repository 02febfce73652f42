"""Where the farm passphrase comes from: a file, the environment, or a hidden prompt.

Never from a command-line flag's value, where it would show in ``ps`` and shell history.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

from farmhand.errors import PassphraseError

ENV_VAR = "FARMHAND_PASSPHRASE"
MIN_LENGTH = 8

Prompt = Callable[[bool], str]
"""Asks a person for the passphrase; the flag says whether to ask twice (a new passphrase)."""


def read_passphrase_file(path: Path) -> str:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise PassphraseError(f"passphrase file {path} does not exist") from None
    if sys.platform != "win32" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PassphraseError(
            f"passphrase file {path} is readable by other users: run 'chmod 600 {path}'"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PassphraseError(f"cannot read passphrase file {path}: {exc}") from None
    return text.rstrip("\r\n")


def resolve_passphrase(
    passphrase_file: Path | None,
    prompt: Prompt | None,
    *,
    new: bool = False,
) -> str:
    """The passphrase from ``--passphrase-file``, then $FARMHAND_PASSPHRASE, then ``prompt``."""
    if passphrase_file is not None:
        value = read_passphrase_file(passphrase_file)
    elif os.environ.get(ENV_VAR):
        value = os.environ[ENV_VAR]
    elif prompt is not None:
        value = prompt(new)
    else:
        raise PassphraseError(
            f"a passphrase is needed: set {ENV_VAR}, use --passphrase-file FILE, "
            "or run in a terminal to be asked"
        )
    if not value:
        raise PassphraseError("the passphrase is empty")
    return checked_new(value) if new else value


def checked_new(value: str) -> str:
    """A passphrase being chosen, refused when it is too short to resist guessing."""
    if not value:
        raise PassphraseError("the passphrase is empty")
    if len(value) < MIN_LENGTH:
        raise PassphraseError(f"the passphrase is too short: use at least {MIN_LENGTH} characters")
    return value
