"""`farmhand verify ROLE TARGET...`: parse, run the checks, print a table per host."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from farmhand.cli.common import console
from farmhand.cli.deploy import RoleArg
from farmhand.deploy.target import Target
from farmhand.deploy.targets import parse_target
from farmhand.errors import FarmhandError
from farmhand.inspect.verify import Check, verify_target


class VerifyFailed(FarmhandError):
    """At least one check failed on at least one host."""


def verify(
    role: RoleArg,
    targets: Annotated[
        list[str],
        typer.Argument(help="HOST, USER@HOST[:PORT], @local or @vagrant/NAME, one or more."),
    ],
    ssh_key: Annotated[Path | None, typer.Option(help="SSH private key to log in with.")] = None,
    ssh_user: Annotated[str, typer.Option(help="SSH user when a target names none.")] = "root",
    known_hosts: Annotated[
        Path | None, typer.Option(help="known_hosts file (default: ~/.ssh/known_hosts).")
    ] = None,
) -> None:
    """Check deployed hosts: services, firewall, listeners, Nebula and file modes."""
    parsed = [
        parse_target(
            t,
            user=ssh_user,
            key=str(ssh_key) if ssh_key else "",
            known_hosts=str(known_hosts) if known_hosts else "",
        )
        for t in targets
    ]

    def run(target: Target) -> list[Check] | FarmhandError:
        try:
            return verify_target(role, target)
        except FarmhandError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=min(8, len(parsed))) as pool:
        results = list(pool.map(run, parsed))
    failed: list[str] = []
    for target, result in zip(parsed, results, strict=True):
        table = Table(title=f"{role.value} {target.label}", title_justify="left")
        for column in ("", "check", "detail"):
            table.add_column(column)
        if isinstance(result, FarmhandError):
            table.add_row("[red]FAIL[/]", "the host can be inspected", str(result))
            failed.append(f"{target.label}: {result}")
        else:
            for check in result:
                mark = "[green]ok[/]" if check.passed else "[red]FAIL[/]"
                table.add_row(mark, check.name, check.detail)
            failed += [f"{target.label}: {c.name}" for c in result if not c.passed]
        console.print(table)
    if failed:
        raise VerifyFailed(f"{len(failed)} check(s) failed: " + "; ".join(failed))
    console.print(f"all checks passed on {len(parsed)} host(s)")
