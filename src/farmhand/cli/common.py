"""What every command shares: the consoles, the store option and passphrase prompting."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from farmhand.passphrase import resolve_passphrase

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


def _prompt(new: bool) -> str:
    value: str = typer.prompt(
        "New farm passphrase" if new else "Farm passphrase",
        hide_input=True,
        confirmation_prompt="Repeat the passphrase" if new else False,
        err=True,
    )
    return value


def passphrase(passphrase_file: Path | None, *, new: bool = False) -> str:
    """Resolve the passphrase; prompt only when a person is there to answer."""
    prompt = _prompt if sys.stdin.isatty() else None
    return resolve_passphrase(passphrase_file, prompt, new=new)
