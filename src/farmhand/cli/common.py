"""What every command shares: the consoles, the store option and passphrase prompting."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from farmhand.errors import PassphraseError
from farmhand.passphrase import checked_new, read_passphrase_file, resolve_passphrase

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

StoreDir = Annotated[
    Path,
    typer.Option(
        "--dir",
        "-d",
        envvar="FARMHAND_KEYS",
        help="Key store folder.",
        show_default=True,
    ),
]
PassphraseFile = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        help="Read the farm passphrase from this file (mode 0600) instead of "
        "$FARMHAND_PASSPHRASE or a prompt.",
        show_default=False,
    ),
]
DEFAULT_STORE = Path("keys")


VaultPassphraseFile = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        help="Read the vault's passphrase (the one that opens secrets.age) from this file "
        "(mode 0600) instead of $FARMHAND_PASSPHRASE or a prompt.",
        show_default=False,
    ),
]
FARM_PASSPHRASE = "farm passphrase"  # noqa: S105 - prompt labels
VAULT_PASSPHRASE = "vault passphrase"  # noqa: S105
VAULT_HINT = " (it opens secrets.age and the CA key: keep it to yourself)"
BUNDLE_PASSPHRASE = "keybundle passphrase"  # noqa: S105


def _ask(label: str, new: bool, hint: str = "", optional: bool = False) -> str:
    text = f"New {label}{hint}" if new else label[0].upper() + label[1:]
    value: str = typer.prompt(
        text,
        hide_input=True,
        confirmation_prompt="Repeat the passphrase" if new else False,
        default="" if optional else None,
        show_default=False,
        err=True,
    )
    return value


def passphrase(
    passphrase_file: Path | None,
    *,
    new: bool = False,
    label: str = FARM_PASSPHRASE,
    hint: str = "",
) -> str:
    """Resolve the passphrase; prompt only when a person is there to answer."""
    prompt = (lambda again: _ask(label, again, hint)) if sys.stdin.isatty() else None
    return resolve_passphrase(passphrase_file, prompt, new=new)


def new_passphrase(passphrase_file: Path | None, label: str, hint: str = "") -> str:
    """A passphrase being chosen: from its file, else asked twice on a terminal."""
    if passphrase_file is not None:
        return checked_new(read_passphrase_file(passphrase_file))
    if not sys.stdin.isatty():
        raise PassphraseError(
            f"the new {label} is needed: give a file (mode 0600) holding it, or run in a terminal"
        )
    return checked_new(_ask(label, True, hint))


def optional_new_passphrase(passphrase_file: Path | None, label: str, hint: str) -> str | None:
    """Like :func:`new_passphrase`, but None when there is no file and no terminal, or the
    person pressed Enter."""
    if passphrase_file is not None:
        return checked_new(read_passphrase_file(passphrase_file))
    if not sys.stdin.isatty():
        return None
    value = _ask(label, True, hint, optional=True)
    return checked_new(value) if value else None
