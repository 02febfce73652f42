"""`farmhand status`: the farm at a glance, from this machine over the overlay."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from farmhand.cli.common import PassphraseFile, console, passphrase
from farmhand.inspect.status import gather, view_from
from farmhand.join.paths import JoinPaths
from farmhand.keystore.bundle import open_bundle
from farmhand.keystore.plan import FarmPlan


def _out(line: str) -> None:
    """One line of output, never wrapped (paths and commands must stay copyable)."""
    console.print(line, soft_wrap=True)


def _day(stamp: Any) -> str:
    if not isinstance(stamp, int | float):
        return "-"
    return datetime.fromtimestamp(stamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def _yes(flag: bool) -> str:
    return "up" if flag else "DOWN"


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle",
            help="Read the farm from this keybundle instead of the join.",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for each host.", min=0.1)
    ] = 2.0,
    store: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            "-d",
            envvar="FARMHAND_KEYS",
            help="A key store whose farm.toml sets worker_hourly_price (else the bundle's plan).",
            show_default=False,
        ),
    ] = None,
    passphrase_file: PassphraseFile = None,
) -> None:
    """The farm at a glance: hub, shares, queue, workers and who holds them, expiry, cost.

    Run from any overlay member (after farmhand join). Exits 1 when the hub does not answer.
    """
    opened = open_bundle(bundle, passphrase(passphrase_file)) if bundle is not None else None
    price_plan = None
    if store is not None and (store / "farm.toml").is_file():
        toml = store / "farm.toml"
        price_plan = FarmPlan.from_toml(toml.read_text(encoding="utf-8"), str(toml))
    report = gather(view_from(JoinPaths.default(), opened), timeout=timeout, price_plan=price_plan)
    if as_json:
        typer.echo(json.dumps(report, indent=1))
    else:
        _print(report)
    if not report["ok"]:
        raise typer.Exit(1)


def _print(report: dict[str, Any]) -> None:
    hub = report["hub"]
    member = report["member"]
    nebula = report["nebula"]
    _out(
        f"farm {report['farm']!r} from {member['name'] or 'this machine'} "
        f"({member['ip'] or '?'}); nebula {nebula['version'] or 'version unknown'}"
    )
    table = Table(title="the hub", title_justify="left")
    for column in ("what", "address", "state", "detail"):
        table.add_column(column)
    rtt = f"round trip {hub['rtt_ms']} ms" if hub["reachable"] else "no answer"
    table.add_row("hub (SMB)", f"{hub['ip']}:{hub['port']}", _yes(hub["reachable"]), rtt)
    for share in report["shares"]:
        table.add_row(
            f"share {share['name']}", hub["ip"], _yes(share["reachable"]), share["error"] or ""
        )
    queue = report["queue"]
    table.add_row(
        queue["label"], f"{hub['ip']}:{queue['port']}", _yes(queue["reachable"]), queue["probe"]
    )
    leases = report["leases"]
    table.add_row(
        "lease table",
        "farm/.farmhand/leases.json",
        "read" if leases["available"] else "n/a",
        f"updated {_day(leases.get('updated'))}" if leases["available"] else leases["reason"],
    )
    console.print(table)
    if leases.get("condition"):
        _out(leases["condition"].replace("lease table: ", "LEASE TABLE: ", 1))

    workers = Table(title=f"{len(report['workers'])} worker certificate(s)", title_justify="left")
    for column in ("name", "address", "state", "ssh", "machine", "since"):
        workers.add_column(column)
    for w in report["workers"]:
        lease = w["lease"] or {}
        machine = lease.get("hostname") or lease.get("machine") or ""
        if lease.get("expired"):
            machine += " (lease expired)"
        workers.add_row(
            w["name"], w["ip"], _yes(w["reachable"]), w["probe"], machine, _day(lease.get("since"))
        )
    console.print(workers)

    certs = report["certificates"]
    for ca in certs["ca"]:
        warn = "  <- renew the CA soon" if ca["warn"] else ""
        _out(
            f"CA {ca['name']!r} expires {_day(ca['not_after'])} ({ca['days_left']:.0f} days){warn}"
        )
    if certs["expiring"]:
        for item in certs["expiring"]:
            _out(
                f"EXPIRING: {item['kind']} {item['name']} on {_day(item['not_after'])} "
                f"({item['days_left']:.0f} days)"
            )
    else:
        _out(f"no certificate expires within {certs['expiring_within_days']} days")
    revoked = report["revoked"]
    seen = ", ".join(x["name"] for x in revoked["seen_online"]) or "none"
    _out(
        f"revoked: {revoked['blocklisted']} blocklisted; leased but not live: {seen} "
        f"({revoked['how']})"
    )
    cost = report["cost"]
    if cost is None:
        _out("cost: set worker_hourly_price (and currency) in farm.toml to see it")
    else:
        since = (
            f"{cost['since_boot']:.2f} {cost['currency']} since boot"
            if cost["since_boot"] is not None
            else "since boot unknown (no lease table)"
        )
        _out(
            f"cost: {cost['running_workers']} running worker(s) x "
            f"{cost['worker_hourly_price']} = {cost['per_hour']:.2f} "
            f"{cost['currency']}/hour; {since}"
        )
    if not report["ok"]:
        _out(
            f"the hub {hub['ip']} does not answer over the overlay: is nebula "
            "running ('farmhand join')?"
        )
