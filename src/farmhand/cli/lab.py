"""`farmhand lab up | status | down`: the farm in containers on this Linux machine."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

import typer
from rich.table import Table

from farmhand.cli.common import console
from farmhand.errors import FarmhandError
from farmhand.lab import first_job, provision
from farmhand.lab.farm import LabFarm
from farmhand.lab.image import prune_images
from farmhand.lab.wheelhouse import build_wheelhouse

lab_app = typer.Typer(
    help="The whole farm in systemd-nspawn containers on this machine (root).", no_args_is_help=True
)


def _say(line: str) -> None:
    console.print(f"[dim]lab:[/] {line}")


@lab_app.command("up")
def up(
    workers: Annotated[int, typer.Option(help="How many workers to boot.", min=1, max=150)] = 2,
) -> None:
    """Boot hub, workers and boss1, run keygen and the real deploys, prove the farm works, and
    end with a job: boss1 submits an animation, the workers render it, boss1 collects it."""
    started = time.monotonic()
    farm = LabFarm(progress=_say)
    with ThreadPoolExecutor(max_workers=1) as pool:
        wheelhouse = pool.submit(build_wheelhouse)  # PyPI work while the containers boot
        farm.up(workers=workers)
        provision.provision(farm, _say, boss=False)
        joined = first_job.join_boss(farm, wheelhouse.result, _say)
    checks = [joined, *provision.prove(farm, _say)]
    if joined.passed and provision.slurm_farm(farm):
        checks.append(first_job.render_a_job(farm, _say))
    table = Table(
        title=f"what the lab proved ({time.monotonic() - started:.0f} s)", title_justify="left"
    )
    table.add_column("", width=4)
    table.add_column("claim")
    for check in checks:
        mark = "[green]ok[/]" if check.passed else "[red]FAIL[/]"
        table.add_row(mark, check.claim + (f" ({check.detail})" if check.detail else ""))
    console.print(table)
    console.print(
        f"keys: {provision.store_dir(farm)} (passphrase in {provision.passphrase_file(farm)}); "
        "ssh in with: farmhand lab ssh HOST; remove with: farmhand lab down"
    )
    failed = [c for c in checks if not c.passed]
    if failed:
        raise FarmhandError(f"{len(failed)} of {len(checks)} lab checks failed")


@lab_app.command("prune")
def prune() -> None:
    """Delete cached base images that the current farmhand no longer uses (~0.5 GB each)."""
    removed = prune_images()
    for path in removed:
        console.print(f"removed {path}")
    if not removed:
        console.print("no unused lab images")


@lab_app.command("status")
def status() -> None:
    """Each lab host: container running, SSH answering."""
    farm = LabFarm()
    rows = farm.status()
    if not rows:
        console.print("no lab is up (start one with: farmhand lab up)")
        return
    table = Table()
    for column in ("host", "role", "underlay", "running", "ssh"):
        table.add_column(column)
    for row in rows:
        table.add_row(row.name, row.role, str(row.address), _yes(row.running), _yes(row.ssh))
    console.print(table)


def _yes(value: bool) -> str:
    return "[green]yes[/]" if value else "[red]no[/]"


@lab_app.command("ssh", context_settings={"ignore_unknown_options": True})
def ssh(
    host: Annotated[str, typer.Argument(help="hub, worker0001, boss1 ...")],
    command: Annotated[list[str] | None, typer.Argument(help="Command to run.")] = None,
) -> None:
    """Run a command on a lab host as root (default: show its farmhand services). Its options
    go to the command: farmhand lab ssh boss1 farmhand submit scene.blend --frames 1-4."""
    farm = LabFarm()
    argv = command or ["systemctl", "--no-pager", "status", "farmhand-nebula"]
    result = farm.exec(host, argv)
    console.print(result.stdout, end="", markup=False, highlight=False)
    if result.stderr:
        console.print(result.stderr, end="", markup=False, highlight=False, style="dim")
    raise typer.Exit(result.returncode)


@lab_app.command("down")
def down() -> None:
    """Stop every lab container and remove its namespaces, overlays and state."""
    LabFarm(progress=_say).down()
    console.print("the lab is down")
