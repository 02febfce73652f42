"""`farmhand bundle show`: what a keybundle holds, without ever printing a private key."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from farmhand.cli.common import PassphraseFile, console, passphrase
from farmhand.keystore.bundle import open_bundle
from farmhand.nebula.cert import certificates_from_pem

bundle_app = typer.Typer(help="Inspect encrypted keybundles.", no_args_is_help=True)


@bundle_app.command("show")
def show(
    file: Annotated[Path, typer.Argument(help="A .keybundle.age file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Decrypt a keybundle in memory and list its certificates and farm settings."""
    if not file.is_file():
        raise typer.BadParameter(f"no such file: {file}", param_hint="FILE")
    bundle = open_bundle(file, passphrase(passphrase_file))
    cas = certificates_from_pem(bundle.ca_pem)
    hosts = []
    for host in bundle.hosts:
        cert = host.certificate
        hosts.append(
            {
                "name": host.name,
                "ip": str(host.ip),
                "groups": list(host.groups),
                "not_after": cert.details.not_after,
                "fingerprint": cert.fingerprint,
            }
        )
    plan = bundle.plan
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "role": bundle.role.value,
                    "farm": plan.name,
                    "network": str(plan.network),
                    "port": plan.port,
                    "hub_address": plan.hub_address,
                    "hub_overlay_ip": str(plan.addresses.hub),
                    "ca": [{"name": c.name, "fingerprint": c.fingerprint} for c in cas],
                    "blocklist": sorted(bundle.blocklist),
                    "hosts": hosts,
                },
                indent=1,
            )
        )
        return
    hub = plan.hub_address or "(not set: give --hub-address at deploy time)"
    console.print(f"{bundle.role.value} keybundle of farm {plan.name!r}")
    console.print(f"  network {plan.network}, hub {plan.addresses.hub} at {hub} port {plan.port}")
    console.print(
        f"  CA {cas[-1].name!r} ({cas[-1].fingerprint[:16]}), "
        f"{len(bundle.blocklist)} blocklisted fingerprint(s)"
    )
    table = Table(
        title=f"{len(hosts)} certificate(s), each with its private key", title_justify="left"
    )
    for column in ("name", "address", "groups", "expires", "fingerprint"):
        table.add_column(column)
    for item in hosts:
        expires = datetime.fromtimestamp(int(str(item["not_after"])), tz=timezone.utc)
        groups = item["groups"]
        assert isinstance(groups, list)
        table.add_row(
            str(item["name"]),
            str(item["ip"]),
            ",".join(groups),
            expires.strftime("%Y-%m-%d"),
            str(item["fingerprint"])[:16],
        )
    console.print(table)
