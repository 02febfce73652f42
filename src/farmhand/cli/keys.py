"""`farmhand keygen` and `farmhand keys …`: parse, call keystore.pki, print."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from farmhand import settings
from farmhand.cli.common import (
    BUNDLE_PASSPHRASE,
    DEFAULT_STORE,
    VAULT_HINT,
    VAULT_PASSPHRASE,
    StoreDir,
    console,
    err_console,
    new_passphrase,
    optional_new_passphrase,
    passphrase,
)
from farmhand.cli.common import VaultPassphraseFile as PassphraseFile
from farmhand.durations import parse_duration
from farmhand.errors import UsageError
from farmhand.keystore import lifecycle, pki, rollover
from farmhand.keystore.plan import (
    DEFAULT_BOSSES,
    DEFAULT_NAME,
    DEFAULT_NETWORK,
    DEFAULT_PORT,
    DEFAULT_WORKERS,
    Role,
    new_plan,
)
from farmhand.keystore.register import Entry, Register
from farmhand.keystore.store import KeyStore, check_new_store

keys_app = typer.Typer(
    help="List, extend, renew, revoke and verify the farm's certificates; rotate its secrets "
    "and passphrases.",
    no_args_is_help=True,
)
BUNDLE_HINT = " (hosts and bosses open their keybundles with it; Enter: the vault's)"
SHARED_NOTE = (
    "note: the vault's passphrase also opens {what}: whoever is given one can open the CA key. "
    "Give the bundles their own with 'farmhand keys passphrase bundles'"
)


def _vault_passphrase(passphrase_file: Path | None) -> str:
    return passphrase(passphrase_file, label=VAULT_PASSPHRASE)


def _open(store_dir: Path) -> KeyStore:
    """Open the store; a change an earlier, killed run left is finished or undone, said on
    stderr in one line (stdout stays what the command prints, e.g. JSON)."""
    return KeyStore.open(store_dir, report=lambda done: err_console.print(f"note: {done}"))


def _date(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d")


@contextmanager
def _signing(total: int) -> Iterator[pki.Progress]:
    """A progress bar for batch signing, then a line while scrypt encrypts the bundles."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    task = bar.add_task("signing", total=total)
    signed = False

    def advance(count: int) -> None:
        nonlocal signed
        bar.advance(task, count)
        if not signed and bar.tasks[task].completed >= total:
            # Signing is done; say so now, while scrypt runs, not after the whole command.
            signed = True
            bar.update(task, description="signed")
            bar.stop()
            console.print("encrypting the secrets and keybundles (age, scrypt)...")

    bar.start()
    try:
        yield advance
    finally:
        if not signed:
            bar.stop()


def _summary(result: pki.Result, store_dir: Path, title: str) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("role", no_wrap=True)
    table.add_column("count", justify="right")
    table.add_column("names", no_wrap=True)
    table.add_column("addresses", no_wrap=True)
    table.add_column("expires", no_wrap=True)
    for role in Role:
        issued = [e for e in result.issued if e.role is role]
        if not issued:
            continue
        first, last = issued[0], issued[-1]
        names = first.name if len(issued) == 1 else f"{first.name}..{last.name}"
        addresses = str(first.ip) if len(issued) == 1 else f"{first.ip}..{last.ip}"
        table.add_row(
            role.value, str(len(issued)), names, addresses, _date(max(e.not_after for e in issued))
        )
    console.print(table)
    for path in result.bundles:
        console.print(f"wrote {path}")


def keygen(
    store_dir: StoreDir = DEFAULT_STORE,
    name: Annotated[str, typer.Option(help="Farm name (used in the CA's name).")] = DEFAULT_NAME,
    network: Annotated[str, typer.Option(help="Overlay network (IPv4 CIDR).")] = DEFAULT_NETWORK,
    port: Annotated[int, typer.Option(help="The hub's public Nebula UDP port.")] = DEFAULT_PORT,
    hub_address: Annotated[
        str,
        typer.Option(
            help="The hub's public DNS name or IPv4 address (may be given at deploy time)."
        ),
    ] = "",
    workers: Annotated[int, typer.Option(help="Worker certificates to sign.", min=0)] = (
        DEFAULT_WORKERS
    ),
    boss: Annotated[
        list[str] | None, typer.Option(help="A boss (person's machine); repeat for several.")
    ] = None,
    ca_lifetime: Annotated[str, typer.Option(help="CA lifetime, e.g. 5y.")] = "5y",
    cert_lifetime: Annotated[
        str | None, typer.Option(help="Host certificate lifetime (default: the CA's).")
    ] = None,
    passphrase_file: PassphraseFile = None,
    bundle_passphrase_file: Annotated[
        Path | None,
        typer.Option(
            help="Read the keybundles' passphrase from this file (mode 0600); without it a "
            "terminal is asked, and otherwise the bundles use the vault's.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Create the farm: its CA, hub, worker pool and bosses, and one keybundle per role."""
    ca_seconds = parse_duration(ca_lifetime)
    cert_seconds = parse_duration(cert_lifetime) if cert_lifetime else None
    if cert_seconds is not None and cert_seconds > ca_seconds:
        raise UsageError("--cert-lifetime cannot be longer than --ca-lifetime")
    plan = new_plan(name, network, port, hub_address, ca_seconds, cert_seconds)
    bosses = list(boss) if boss else list(DEFAULT_BOSSES)
    # Check names and room before asking for a passphrase: bad input fails fast.
    pki.plan_bosses(plan, Register(), bosses)
    pki.plan_workers(plan, Register(), workers)
    check_new_store(store_dir)
    secret = passphrase(passphrase_file, new=True, label=VAULT_PASSPHRASE, hint=VAULT_HINT)
    bundle_secret = optional_new_passphrase(bundle_passphrase_file, BUNDLE_PASSPHRASE, BUNDLE_HINT)
    started = time.monotonic()
    with _signing(1 + workers + len(bosses)) as progress:
        result = pki.create_farm(
            store_dir, plan, workers, bosses, secret, progress, bundle_passphrase=bundle_secret
        )
    _summary(result, store_dir, f"farm {plan.name!r} on {plan.network}, port {plan.port}")
    if bundle_secret is None or bundle_secret == secret:
        console.print(SHARED_NOTE.format(what="every keybundle"))
    console.print(
        f"done in {time.monotonic() - started:.1f} s. Next: farmhand keys list --dir {store_dir}"
    )


@keys_app.command("list")
def list_keys(
    store_dir: StoreDir = DEFAULT_STORE,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Every certificate in the register: name, role, address, expiry and status."""
    store = _open(store_dir)
    now = int(time.time())
    rows = [(e, _status(e, now)) for e in store.register.entries]
    if as_json:
        ca = store.ca
        data = {
            "farm": store.plan.name,
            "network": str(store.plan.network),
            "port": store.plan.port,
            "hub_address": store.plan.hub_address,
            "ca": {
                "name": ca.name,
                "fingerprint": ca.fingerprint,
                "not_after": ca.details.not_after,
            },
            "certificates": [{**e.to_dict(), "status": status} for e, status in rows],
        }
        typer.echo(json.dumps(data, indent=1))
        return
    table = Table(title=f"farm {store.plan.name!r}: {len(rows)} certificates", title_justify="left")
    for column in ("name", "role", "address", "expires", "status", "fingerprint"):
        table.add_column(column, no_wrap=True)
    for entry, status in rows:
        style = {"revoked": "dim", "expired": "red", "expiring": "yellow"}.get(status, "")
        table.add_row(
            entry.name,
            entry.role.value,
            str(entry.ip),
            _date(entry.not_after),
            status,
            entry.fingerprint[:12],
            style=style,
        )
    console.print(table)


def _status(entry: Entry, now: int) -> str:
    if entry.revoked:
        return "revoked"
    if entry.not_after < now:
        return "expired"
    if entry.not_after - now < pki.EXPIRY_WARNING_DAYS * 86400:
        return "expiring"
    return "valid"


@keys_app.command("add-workers")
def add_workers(
    count: Annotated[int, typer.Argument(help="How many worker certificates to add.", min=1)],
    store_dir: StoreDir = DEFAULT_STORE,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Sign more worker certificates and rebuild the workers keybundle."""
    store = _open(store_dir)
    pki.plan_workers(store.plan, store.register, count)
    secret = _vault_passphrase(passphrase_file)
    with _signing(count) as progress:
        result = pki.add_workers(store, count, secret, progress)
    _summary(result, store_dir, f"added {count} worker{'s' if count != 1 else ''}")


@keys_app.command("add-boss")
def add_boss(
    name: Annotated[str, typer.Argument(help="The boss's name, e.g. alice-laptop.")],
    store_dir: StoreDir = DEFAULT_STORE,
    passphrase_file: PassphraseFile = None,
    own_passphrase: Annotated[
        bool,
        typer.Option(
            "--own-passphrase",
            help="Give this boss's bundle a passphrase of its own, asked on the terminal.",
        ),
    ] = False,
    own_passphrase_file: Annotated[
        Path | None,
        typer.Option(
            help="Read the bundle's own passphrase from this file (mode 0600).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Sign a certificate for another person's machine and write its own keybundle."""
    store = _open(store_dir)
    pki.plan_bosses(store.plan, store.register, [name])
    secret = _vault_passphrase(passphrase_file)
    own = None
    if own_passphrase or own_passphrase_file is not None:
        own = new_passphrase(own_passphrase_file, f"passphrase for {name}'s keybundle")
    result = pki.add_boss(store, name, secret, own_passphrase=own)
    _summary(result, store_dir, f"added boss {name}")
    if own is not None and own == secret:
        console.print(SHARED_NOTE.format(what=f"{name}'s keybundle"))


@keys_app.command("renew")
def renew(
    names: Annotated[list[str] | None, typer.Argument(help="Certificates to renew.")] = None,
    expiring_within: Annotated[
        int | None,
        typer.Option(help="Renew every certificate expiring within this many days.", min=0),
    ] = None,
    new_key: Annotated[
        bool, typer.Option("--new-key", help="Also replace the key pair and blocklist the old.")
    ] = False,
    store_dir: StoreDir = DEFAULT_STORE,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Re-sign certificates and rebuild the affected keybundles (redeploy them afterwards)."""
    store = _open(store_dir)
    if bool(names) == (expiring_within is not None):
        raise UsageError("name the certificates to renew, or give --expiring-within DAYS")
    wanted = list(names or pki.expiring(store.register, expiring_within or 0, int(time.time())))
    if not wanted:
        console.print(f"no certificate expires within {expiring_within} days; nothing to do")
        return
    for name in wanted:
        pki.live_entry(store.register, name)
    secret = _vault_passphrase(passphrase_file)
    result = pki.renew(store, wanted, secret, new_key=new_key)
    _summary(result, store_dir, f"renewed {len(result.issued)} certificate(s)")
    console.print("deploy the rewritten keybundles to the hosts they belong to")


@keys_app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="The certificate to revoke.")],
    store_dir: StoreDir = DEFAULT_STORE,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Blocklist a certificate for good; every keybundle is rebuilt with the new blocklist."""
    store = _open(store_dir)
    entry = pki.live_entry(store.register, name)
    pki.check_revocable(entry)
    secret = _vault_passphrase(passphrase_file)
    result = pki.revoke(store, name, secret)
    console.print(f"revoked {name} ({entry.ip}, fingerprint {entry.fingerprint[:16]})")
    for path in result.bundles:
        console.print(f"rewrote {path}")
    console.print("redeploy the hub and the other hosts so they refuse it")


@keys_app.command("rebundle")
def rebundle(
    store_dir: StoreDir = DEFAULT_STORE,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Rebuild every keybundle after editing farm.toml, so hosts get the new settings."""
    store = _open(store_dir)
    secret = _vault_passphrase(passphrase_file)
    result = pki.rebundle(store, secret)
    for path in result.bundles:
        console.print(f"rewrote {path}")
    console.print("redeploy the hosts (or re-run their bootstrap) to apply farm.toml's settings")


@keys_app.command("rotate")
def rotate(
    names: Annotated[
        list[str] | None, typer.Argument(help="The secrets to rotate (see --list).")
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Rotate every farm-wide secret.")] = False,
    show: Annotated[bool, typer.Option("--list", help="Name the secrets, change nothing.")] = False,
    store_dir: StoreDir = DEFAULT_STORE,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Give farm-wide secrets new values; every keybundle is rebuilt to carry them."""
    if show:
        for name in lifecycle.rotatable():
            console.print(name)
        return
    if every and names:
        raise UsageError("name the secrets to rotate or give --all, not both")
    wanted = lifecycle.check_rotatable(list(lifecycle.rotatable()) if every else list(names or []))
    store = _open(store_dir)
    secret = _vault_passphrase(passphrase_file)
    result = lifecycle.rotate(store, wanted, secret)
    console.print(f"rotated {', '.join(wanted)}")
    for path in result.bundles:
        console.print(f"rewrote {path}")
    console.print(
        "redeploy the hub, then the workers, and re-join every boss with its new bundle: "
        "until then the hosts keep the old values"
    )


@keys_app.command("reissue-workers")
def reissue_workers(
    store_dir: StoreDir = DEFAULT_STORE,
    passphrase_file: PassphraseFile = None,
) -> None:
    """New keys and certificates for the whole worker pool (a leaked worker image)."""
    store = _open(store_dir)
    secret = _vault_passphrase(passphrase_file)
    result = lifecycle.reissue_workers(store, secret)
    _summary(result, store_dir, f"reissued {len(result.issued)} worker certificates")
    console.print(
        "every old worker certificate is blocklisted: redeploy the hub, then the workers; "
        "an image made before now can no longer join"
    )


ROLLOVER_NEXT = {
    "begin": "deploy every host (hub first), so each trusts both CAs; then "
    "'farmhand keys ca-rollover reissue'",
    "reissue": "deploy every host again, so each runs a certificate of the new CA; then "
    "'farmhand keys ca-rollover finish'",
    "finish": "deploy every host once more: from then on only the new CA is trusted",
}


@keys_app.command("ca-rollover")
def ca_rollover(
    step: Annotated[
        str,
        typer.Argument(
            help="'begin' (trust a new CA next to the old), 'reissue' (sign every host again "
            "by the new CA) or 'finish' (drop the old CA). Deploy every host after each."
        ),
    ],
    store_dir: StoreDir = DEFAULT_STORE,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Move the farm to a new CA in three steps, without an outage."""
    steps = {"begin": rollover.begin, "reissue": rollover.reissue, "finish": rollover.finish}
    if step not in steps:
        raise UsageError(f"no CA rollover step {step!r}: use begin, reissue or finish")
    store = _open(store_dir)
    secret = _vault_passphrase(passphrase_file)
    result = steps[step](store, secret)
    if result.issued:
        _summary(result, store_dir, f"signed {len(result.issued)} certificates by the new CA")
    else:
        for path in result.bundles:
            console.print(f"rewrote {path}")
    trusted = _open(store_dir).cas
    console.print(
        "trusted CAs: " + ", ".join(f"{ca.name} ({ca.fingerprint[:12]})" for ca in trusted)
    )
    console.print(ROLLOVER_NEXT[step])


@keys_app.command("passphrase")
def change_passphrase(
    which: Annotated[
        str,
        typer.Argument(
            help="'vault' (secrets.age), 'bundles' (hub, workers and bosses without their own) "
            "or a boss's name."
        ),
    ],
    new_passphrase_file: Annotated[
        Path | None,
        typer.Option(
            help="Read the new passphrase from this file (mode 0600) instead of asking twice.",
            show_default=False,
        ),
    ] = None,
    store_dir: StoreDir = DEFAULT_STORE,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Change the passphrase of the vault, of the shared keybundles or of one boss's bundle."""
    store = _open(store_dir)
    lifecycle.check_passphrase_target(store, which)
    secret = _vault_passphrase(passphrase_file)
    store.unlock(secret)  # a wrong passphrase is told before a new one is asked for
    label = {"vault": VAULT_PASSPHRASE, "bundles": BUNDLE_PASSPHRASE}.get(
        which, f"passphrase for {which}'s keybundle"
    )
    new = new_passphrase(new_passphrase_file, label)
    changed = lifecycle.change_passphrase(store, which, secret, new)
    console.print(f"changed the {label}")
    for path in changed.result.bundles:
        console.print(f"rewrote {path}")
    if changed.opened_by_vault_passphrase:
        what = ", ".join(changed.opened_by_vault_passphrase)
        console.print(SHARED_NOTE.format(what=what))
    if which != "vault":
        console.print("hosts and bosses open the rewritten bundles with the new passphrase")


@keys_app.command("settings")
def list_settings(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    as_markdown: Annotated[
        bool, typer.Option("--markdown", help="The tables as README.md has them.")
    ] = False,
) -> None:
    """Every farm.toml setting: its name, type, default and meaning."""
    if as_json:
        typer.echo(json.dumps({"settings": settings.describe()}, indent=1))
        return
    if as_markdown:
        typer.echo(settings.markdown(), nl=False)
        return

    def plain(text: str) -> str:  # the declarations' Markdown, as terminal text
        return escape(text.replace("`", "").replace("**", ""))

    for group in settings.Group:
        console.print(f"[bold]{plain(group.heading)}[/]")
        table = Table()
        for column in ("setting", "type", "default"):
            table.add_column(column, no_wrap=True)
        table.add_column("meaning")
        for setting in settings.SETTINGS:
            if setting.group is group:
                table.add_row(
                    plain(setting.name),
                    plain(setting.kind.name),
                    plain(setting.shown_default),
                    plain(setting.help),
                )
        console.print(table)
    console.print(
        "farm.toml is checked whenever it is read; after an edit run 'farmhand keys rebundle'"
    )


@keys_app.command("verify")
def verify(store_dir: StoreDir = DEFAULT_STORE) -> None:
    """Check every certificate against the CA, the register and the plan; warn before expiry."""
    store = _open(store_dir)
    findings = pki.verify_store(store)
    problems = [f for f in findings if f.level != "ok"]
    ok = len(findings) - len(problems)
    for finding in problems:
        colour = "red" if finding.level == "error" else "yellow"
        console.print(f"[{colour}]{finding.level}[/]: {finding.subject}: {finding.message}")
    errors = sum(f.level == "error" for f in findings)
    console.print(f"{ok} certificates ok, {len(problems) - errors} warnings, {errors} errors")
    if errors:
        raise typer.Exit(1)
