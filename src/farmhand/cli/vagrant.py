"""`farmhand vagrant-inventory`: how farmhand reaches the Vagrant machines of this folder."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from farmhand.cli.common import console
from farmhand.deploy.vagrant import PREFIX, ssh_configs


def vagrant_inventory(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Machine names (default: every running machine here)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="pyinfra host data per machine, as JSON.")
    ] = False,
) -> None:
    """Show the targets `@vagrant/NAME` stands for (from `vagrant ssh-config`)."""
    configs = ssh_configs(names or [])
    entries = [config.target().inventory_entry() for config in configs]
    if as_json:
        typer.echo(json.dumps(dict(entries), indent=2, sort_keys=True))
        return
    table = Table(title_justify="left")
    for column in ("target", "ssh", "key", "host keys"):
        table.add_column(column)
    for config in configs:
        target = config.target()
        table.add_row(
            f"{PREFIX}{config.name}",
            f"{target.user}@{target.host}:{target.port}",
            target.key,
            target.strict_host_keys,
        )
    console.print(table)
