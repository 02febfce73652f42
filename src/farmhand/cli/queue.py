"""`farmhand queue`: what a boss needs to join the render queue by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from farmhand.cli.common import PassphraseFile, console, passphrase
from farmhand.errors import UsageError
from farmhand.hostfiles.queue import tls
from farmhand.keystore.bundle import open_bundle
from farmhand.keystore.fs import write_new
from farmhand.keystore.plan import Role
from farmhand.model.host import host_model
from farmhand.queue import manager_for
from farmhand.queue.deadline import BOSS_PLATFORMS, client_command

queue_app = typer.Typer(help="The render queue: the boss's client install.", no_args_is_help=True)
BossBundle = Annotated[Path, typer.Option(help="The boss's keybundle.")]


def _boss(bundle: Path, passphrase_file: Path | None):  # type: ignore[no-untyped-def]
    opened = open_bundle(bundle, passphrase(passphrase_file))
    if opened.role is not Role.BOSS:
        raise UsageError(f"{bundle} is a {opened.role.value} bundle: give a boss's bundle")
    hint = manager_for(opened.plan).boss_hint
    if hint:  # its bosses do not install a client with these commands
        raise UsageError(hint)
    return opened


@queue_app.command("client-command")
def client_command_cmd(
    bundle: BossBundle,
    platform: Annotated[str, typer.Option(help=f"One of {', '.join(BOSS_PLATFORMS)}.")],
    passphrase_file: PassphraseFile = None,
) -> None:
    """Print the exact Deadline Client install command for this boss's machine."""
    opened = _boss(bundle, passphrase_file)
    typer.echo(client_command(opened.plan.addresses.hub, platform))


@queue_app.command("client-cert")
def client_cert(
    bundle: BossBundle,
    out: Annotated[Path, typer.Option(help="Where to write the PKCS#12 file (mode 0600).")],
    passphrase_file: PassphraseFile = None,
) -> None:
    """Write the queue's client certificate (from the boss's bundle) for the Deadline Client."""
    if out.exists():
        raise UsageError(f"{out} exists: farmhand never overwrites a key file")
    opened = _boss(bundle, passphrase_file)
    model = host_model(opened, hub_address=opened.plan.hub_address or "hub")
    write_new(out, tls(model).client_pfx, 0o600)
    console.print(f"wrote {out} (0600)")
