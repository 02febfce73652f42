"""`farmhand files` and `farmhand deploy`: parse, call hostfiles/deploy, print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text

from farmhand.cli.common import DEFAULT_STORE, PassphraseFile, console, passphrase
from farmhand.deploy.runner import DeployError, DeployReport, run_deploy
from farmhand.deploy.targets import parse_target
from farmhand.errors import UsageError
from farmhand.hostfiles import host_files
from farmhand.hostfiles.base import write_tree
from farmhand.keystore.bundle import open_bundle
from farmhand.keystore.plan import Role, validate_hub_address
from farmhand.model.distro import Distro, distro_from_os_release
from farmhand.model.host import host_model

RoleArg = Annotated[Role, typer.Argument(help="hub, worker or boss.", case_sensitive=False)]
BundleOpt = Annotated[
    Path | None,
    typer.Option(help="The role's keybundle (default: the one in ./keys for hub and workers)."),
]
HubAddress = Annotated[
    str,
    typer.Option(help="The hub's public DNS name or IPv4 address, if the bundle does not have it."),
]


def _default_bundle(role: Role, bundle: Path | None) -> Path:
    if bundle is not None:
        return bundle
    if role is Role.BOSS:
        raise UsageError("give the boss's bundle with --bundle keys/boss-NAME.keybundle.age")
    name = "hub" if role is Role.HUB else "workers"
    return DEFAULT_STORE / f"{name}.keybundle.age"


def _distro(text: str) -> Distro:
    distro_id, _, version = text.partition("-")
    return distro_from_os_release({"ID": distro_id, "VERSION_ID": version or "0"})


def write_host_files(
    role: RoleArg,
    out: Annotated[Path, typer.Option(help="Folder to lay the files out in (as on the host).")],
    bundle: BundleOpt = None,
    host: Annotated[
        str, typer.Option(help="For a worker: the certificate it has chosen (e.g. worker0007).")
    ] = "",
    hub_address: HubAddress = "",
    distro: Annotated[
        str, typer.Option(help="Target: debian-12, ubuntu-24.04, almalinux-9, rocky-9 ...")
    ] = "debian-12",
    key_logins: Annotated[
        bool, typer.Option(help="Include the key-only sshd drop-in (as when a key login works).")
    ] = True,
    with_secrets: Annotated[
        bool,
        typer.Option(
            "--with-secrets",
            help="Also write keys and passwords (OUT is then made your own 0700 folder).",
        ),
    ] = False,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Write every file a host would get, for review, under OUT/etc/... (secrets only when
    asked: --with-secrets)."""
    path = _default_bundle(role, bundle)
    opened = open_bundle(path, passphrase(passphrase_file))
    if opened.role is not role:
        raise UsageError(f"{path} is a {opened.role.value} bundle, not a {role.value} one")
    model = host_model(
        opened,
        host=host,
        hub_address=hub_address,
        distro=_distro(distro),
        key_logins_work=key_logins,
    )
    files = host_files(model)
    write_tree(files, out, with_secrets=with_secrets)
    table = Table(
        title=f"{role.value} {model.name}: {len(files)} files under {out}", title_justify="left"
    )
    table.add_column("path", no_wrap=True)
    table.add_column("mode")
    table.add_column("note")
    for item in files:
        note = ""
        if item.secret:
            note = "secret" if with_secrets else "secret, not written (--with-secrets)"
        if item.at_boot:
            note = (note + ", " if note else "") + "chosen at boot"
        table.add_row(item.path, f"{item.mode:04o}", note)
    console.print(table)


def _progress_table(report_rows: dict[str, dict[str, Any]]) -> Table:
    table = Table(title_justify="left")
    for column in ("host", "done", "changed", "status"):
        table.add_column(column)
    for name, row in report_rows.items():
        total = row.get("operations") or "?"
        table.add_row(name, f"{row['done']}/{total}", str(row["changed"]), row["status"])
    return table


def deploy(
    role: RoleArg,
    targets: Annotated[
        list[str], typer.Argument(help="HOST, USER@HOST[:PORT] or @local, one or more.")
    ],
    bundle: BundleOpt = None,
    hub_address: HubAddress = "",
    ssh_key: Annotated[Path | None, typer.Option(help="SSH private key to log in with.")] = None,
    ssh_user: Annotated[str, typer.Option(help="SSH user when a target names none.")] = "root",
    known_hosts: Annotated[
        Path | None, typer.Option(help="known_hosts file (default: ~/.ssh/known_hosts).")
    ] = None,
    apt_update: Annotated[
        bool, typer.Option(help="Refresh apt indexes (off for offline sites with a seeded cache).")
    ] = True,
    artifacts: Annotated[
        str | None,
        typer.Option(
            help="Folder (or URL) with the pinned release archives (nebula, the queue's)."
        ),
    ] = None,
    mounts: Annotated[
        bool, typer.Option(help="Start the workers' share automounts (off where no CIFS).")
    ] = True,
    queue: Annotated[
        bool, typer.Option(help="Install the render queue and renderer (pinned artifacts).")
    ] = True,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Push a role's deploy to hosts over SSH: the bundle is decrypted here, in memory."""
    hub_address = validate_hub_address(hub_address)  # before the passphrase and any host
    path = _default_bundle(role, bundle)
    parsed = [
        parse_target(
            t,
            user=ssh_user,
            key=str(ssh_key) if ssh_key else "",
            known_hosts=str(known_hosts) if known_hosts else "",
        )
        for t in targets
    ]
    secret = passphrase(passphrase_file)
    opened = open_bundle(path, secret)  # fail fast on a wrong passphrase or role
    if opened.role is not role:
        raise UsageError(f"{path} is a {opened.role.value} bundle, not a {role.value} one")
    data: dict[str, Any] = {
        "farmhand_apt_update": apt_update,
        "farmhand_mounts": mounts,
        "farmhand_queue": queue,
    }
    if hub_address:
        data["farmhand_hub_address"] = hub_address
    if artifacts is not None:
        is_url = artifacts.startswith(("https://", "http://"))
        data["farmhand_artifacts"] = artifacts if is_url else str(Path(artifacts).resolve())
    rows: dict[str, dict[str, Any]] = {
        t.label: {"done": 0, "changed": 0, "status": "connecting", "operations": 0} for t in parsed
    }

    with Live(_progress_table(rows), console=console, transient=False, auto_refresh=False) as live:

        def on_event(event: dict[str, Any]) -> None:
            row = rows.get(str(event.get("host", "")))
            if row is None:
                return
            kind = event.get("event")
            if kind == "connected":
                row["status"] = "connected" if event.get("ok") else "unreachable"
            elif kind == "planned":
                row["operations"] = event.get("operations", 0)
                row["status"] = "deploying"
            elif kind == "op":
                row["done"] += 1
                if event.get("status") == "error":
                    row["status"] = f"failed: {event.get('op')}"
            live.update(_progress_table(rows), refresh=True)

        report = run_deploy(role, path, secret, parsed, data=data, on_event=on_event)
        for name, result in report.hosts.items():
            if name in rows:
                rows[name]["changed"] = result.changed
                if not rows[name]["status"].startswith(("failed", "unreachable")):
                    rows[name]["status"] = "failed" if result.failed else "ok"
        live.update(_progress_table(rows), refresh=True)
    console.print()
    _summary(report)


def _summary(report: DeployReport) -> None:
    for name, result in report.hosts.items():
        if not result.connected:
            console.print(f"{name}: not reached, nothing changed")
            continue
        console.print(
            f"{name}: {result.changed} changed, {result.unchanged} unchanged"
            f"{', ' + str(result.errors) + ' failed' if result.errors else ''}"
        )
    if not report.ok:
        for result in report.hosts.values():
            for line in result.output[-6:]:
                console.print(Text(f"  {line}", style="dim"))
        raise DeployError(report.failure_message())
