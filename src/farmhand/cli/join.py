"""`farmhand join`: this machine joins the farm's overlay as a boss (or leaves it)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from farmhand.cli.common import PassphraseFile, console, err_console, passphrase
from farmhand.join.flow import JoinOptions
from farmhand.join.flow import join as do_join
from farmhand.join.foreground import run_foreground
from farmhand.join.leave import leave as do_leave
from farmhand.join.mounts import mount_report, mount_share, should_mount
from farmhand.join.paths import JoinPaths
from farmhand.join.platforms import current_os
from farmhand.join.state import Joined
from farmhand.join.system import SystemPaths


def _out(line: str) -> None:
    """One line of output, never wrapped (paths and commands must stay copyable)."""
    console.print(line, soft_wrap=True)


def _say(line: str) -> None:
    err_console.print(line, highlight=False, soft_wrap=True)


def _ask(question: str) -> bool:
    return typer.confirm(question, default=False, err=True)


def _offer_mount(joined: Joined, choice: bool | None) -> None:
    """Mount the farm share when asked to (``--mount``, or yes at the terminal)."""
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if not should_mount(choice, interactive=interactive, ask=_ask):
        return
    plan, result = mount_share(joined)
    password_file = str(joined.paths.smb_password)
    for line in mount_report(joined.state.os, plan, result, password_file):
        _out(line)


def join(
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle", help="Your boss keybundle (boss-NAME.keybundle.age).", show_default=False
        ),
    ] = None,
    hub_address: Annotated[
        str,
        typer.Option(
            "--hub-address",
            help="The hub's public DNS name or IPv4 address, if not in the bundle.",
            show_default=False,
        ),
    ] = "",
    service: Annotated[
        bool, typer.Option("--service", help="Install nebula as a service of this OS.")
    ] = False,
    foreground: Annotated[
        bool,
        typer.Option("--foreground", help="Run nebula here until Ctrl-C (the default)."),
    ] = False,
    nebula: Annotated[
        Path | None,
        typer.Option(
            "--nebula",
            help="The nebula binary, or the upstream release archive, to use.",
            show_default=False,
        ),
    ] = None,
    leave: Annotated[
        bool, typer.Option("--leave", help="Stop and remove everything join installed.")
    ] = False,
    wait: Annotated[
        float, typer.Option("--wait", help="Seconds to wait for the hub to answer.", min=1)
    ] = 60.0,
    mount: Annotated[
        bool | None,
        typer.Option(
            "--mount/--no-mount",
            help="Mount the farm share once the hub answers (default: ask at a terminal, else no).",
            show_default=False,
        ),
    ] = None,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Join the farm from this machine (a boss): Nebula in the foreground or as a service.

    Config and keys go to your config folder (with --service: to a folder only root can
    change); once the hub answers, it prints how to reach the shares and offers to mount
    them. --leave removes everything join installed.
    """
    os_ = current_os()
    paths = JoinPaths.default()
    if leave:
        if service or foreground or bundle or nebula or hub_address or mount is not None:
            raise typer.BadParameter("--leave takes no other option", param_hint="--leave")
        removed = do_leave(os_=os_, paths=paths, say=_say)
        if not removed:
            _out(f"nothing to leave: this machine has not joined a farm ({paths.dir})")
            return
        for item in removed:
            _out(f"removed {item}")
        _out("left the farm")
        return
    if service and foreground:
        raise typer.BadParameter("choose one of --service and --foreground", param_hint="--service")
    options = JoinOptions(
        bundle=bundle,
        hub_address=hub_address,
        mode="service" if service else "foreground",
        nebula=nebula,
        wait=wait,
    )
    joined = do_join(options, lambda: passphrase(passphrase_file), os_=os_, paths=paths, say=_say)
    state = joined.state
    if state.mode == "service":
        where = f"the service's config and key in {SystemPaths.default(os_).dir} (root's alone)"
    else:
        where = f"config and keys in {paths.dir}"
    _out(
        f"joined farm {state.farm!r} as {state.boss} ({state.overlay_ip}); "
        f"nebula {state.nebula_version or '(version unknown)'} at {state.nebula}; {where}"
    )
    if options.mode == "foreground":
        offered: list[bool] = []

        def on_hub(hinted: Joined) -> None:
            if not offered:  # once per run, not on every reconnect
                offered.append(True)
                _offer_mount(hinted, mount)

        run_foreground(joined, sys.stdout, on_hub=on_hub)
        return
    hub = joined.hub
    rtt = f" in {hub.rtt_ms} ms" if hub is not None else ""
    _out(f"nebula runs as the {state.service}; the hub {state.hub_overlay_ip} answers{rtt}")
    for hint in joined.hints:
        _out(hint)
    _offer_mount(joined, mount)
