"""`farmhand bootstrap` and `farmhand cloud-init`: a host sets itself up; user-data that does."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from farmhand.cli.common import PassphraseFile, console, passphrase
from farmhand.deploy.runner import DeployError
from farmhand.keystore.plan import Role
from farmhand.passphrase import read_passphrase_file
from farmhand.provision.bootstrap import BootstrapOptions, bootstrap, require_root
from farmhand.provision.cloudinit import CloudInitRequest, user_data

RoleArg = Annotated[Role, typer.Argument(help="hub or worker.", case_sensitive=False)]
HubAddress = Annotated[
    str,
    typer.Option(help="The hub's public DNS name or IPv4 address, if the bundle does not have it."),
]


def bootstrap_command(
    role: RoleArg,
    bundle: Annotated[
        str,
        typer.Option(help="The role's keybundle: a path, an https URL, or a Drive/Dropbox link."),
    ],
    hub_address: HubAddress = "",
    artifacts: Annotated[
        str, typer.Option(help="Folder or https URL with the pinned release archives.")
    ] = "",
    apt_update: Annotated[
        bool, typer.Option(help="Refresh apt indexes (off for offline sites with a seeded cache).")
    ] = True,
    mounts: Annotated[
        bool, typer.Option(help="Start a worker's share automounts (off where no CIFS).")
    ] = True,
    queue: Annotated[
        bool, typer.Option(help="Install the render queue (--no-queue: overlay and shares only).")
    ] = True,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Set up THIS machine as the farm's hub or a worker (runs the deploy on @local, as root)."""
    options = BootstrapOptions(
        hub_address=hub_address,
        artifacts=artifacts,
        apt_update=apt_update,
        mounts=mounts,
        queue=queue,
    )
    require_root()  # before asking for a passphrase that could not be used
    secret = passphrase(passphrase_file)
    done = {"ops": 0, "total": 0}

    with console.status(f"bootstrapping this {role.value}") as status:

        def on_event(event: dict[str, Any]) -> None:
            kind = event.get("event")
            if kind == "planned":
                done["total"] = int(event.get("operations", 0))
            elif kind == "op":
                done["ops"] += 1
                status.update(
                    f"bootstrapping this {role.value}: {done['ops']}/{done['total'] or '?'} "
                    f"{event.get('op', '')}"
                )

        report = bootstrap(role, bundle, secret, options, on_event=on_event)
    for result in report.hosts.values():
        console.print(
            f"this {role.value}: {result.changed} changed, {result.unchanged} unchanged"
            f"{', ' + str(result.errors) + ' failed' if result.errors else ''}"
        )
        if not report.ok:
            for line in result.output[-6:]:
                console.print(Text(f"  {line}", style="dim"))
    if not report.ok:
        raise DeployError(report.failure_message())


def cloud_init_command(
    role: RoleArg,
    bundle: Annotated[
        str, typer.Option(help="https URL of the role's keybundle (a Drive/Dropbox link works).")
    ],
    hub_address: HubAddress = "",
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            help="Put this passphrase file's content INTO the user-data (see the README for the "
            "risk); without it the machine waits for the file to be placed on it.",
            show_default=False,
        ),
    ] = None,
    source: Annotated[
        str,
        typer.Option(help="What to pip install instead of PyPI's farmhand (FARMHAND_SOURCE)."),
    ] = "",
    script_url: Annotated[
        str, typer.Option(help="Where the machine downloads bootstrap.sh from.")
    ] = "",
) -> None:
    """Print cloud-init user-data that bootstraps a new machine unattended."""
    request = CloudInitRequest(
        role=role,
        bundle_url=bundle,
        hub_address=hub_address,
        passphrase=read_passphrase_file(passphrase_file) if passphrase_file else None,
        source=source,
        **({"script_url": script_url} if script_url else {}),
    )
    typer.echo(user_data(request), nl=False)
