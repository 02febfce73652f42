"""The farmhand command line: a thin Typer layer over the library.

Every expected failure is a FarmhandError, printed as one line with its exit code; nothing
below this package imports Typer.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from farmhand import __version__
from farmhand.cli.bootstrap import bootstrap_command, cloud_init_command
from farmhand.cli.bundle import bundle_app
from farmhand.cli.common import err_console
from farmhand.cli.deploy import deploy, write_host_files
from farmhand.cli.jobs import build_addon, cancel, collect, job, jobs, serve_api, submit
from farmhand.cli.join import join
from farmhand.cli.keys import keygen, keys_app
from farmhand.cli.lab import lab_app
from farmhand.cli.queue import queue_app
from farmhand.cli.status import status
from farmhand.cli.vagrant import vagrant_inventory
from farmhand.cli.verify import verify
from farmhand.errors import FarmhandError

app = typer.Typer(
    name="farmhand",
    help="A secure personal render farm: hub, workers and your laptop on a Nebula overlay.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("keygen")(keygen)
app.command("files")(write_host_files)
app.command("render", hidden=True)(
    write_host_files
)  # the old name of `files`: scripts keep working
app.command("deploy")(deploy)
app.command("verify")(verify)
app.command("vagrant-inventory")(vagrant_inventory)
app.command("bootstrap")(bootstrap_command)
app.command("cloud-init")(cloud_init_command)
app.command("join")(join)
app.command("status")(status)
app.command("submit")(submit)
app.command("jobs")(jobs)
app.command("job")(job)
app.command("cancel")(cancel)
app.command("collect")(collect)
app.command("api")(serve_api)
app.command("addon")(build_addon)
app.add_typer(keys_app, name="keys")
app.add_typer(bundle_app, name="bundle")
app.add_typer(lab_app, name="lab")
app.add_typer(queue_app, name="queue")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"farmhand {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """farmhand: keys, deploys and a lab for a Nebula render farm."""


def main() -> None:
    """Run the CLI, turning expected failures into one line and an exit code."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(1)
    except typer.TyperException as exc:
        # Usage errors as one line too, with where to look: not Click's multi-line box.
        if type(exc).__name__ == "NoArgsIsHelpError":
            sys.exit(0)
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "farmhand"
        err_console.print(
            f"[red]error:[/] {escape(exc.format_message())} (see '{command} --help')",
            soft_wrap=True,
            highlight=False,
        )
        sys.exit(exc.exit_code)
    except FarmhandError as exc:
        # The message is text, not markup: "[artifacts.deadline]" must print as it is.
        err_console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted; nothing was changed that a rerun cannot finish")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
