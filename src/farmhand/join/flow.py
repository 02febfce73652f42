"""Joining: ``join()`` as a short sequence of ``steps``, in an order that can be undone.

Nothing is written before the bundle opens, is a boss bundle, nebula is found, the service's
root-owned place is free and safe (``system.check_place``) and administrator rights (when
needed) are granted; the user's files are staged and committed as one folder; a failing step
after that removes whatever was done (``leave.undo``). join.json records what was done as
facts, and ``--leave`` derives from them what to undo.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from farmhand.join import JoinError, Say
from farmhand.join.admin import Elevation, elevate
from farmhand.join.commands import run_step
from farmhand.join.hub import await_hub
from farmhand.join.leave import undo
from farmhand.join.nebula import locate
from farmhand.join.paths import JoinPaths
from farmhand.join.platforms import OS
from farmhand.join.services import service_removal
from farmhand.join.staging import commit, stage
from farmhand.join.state import Joined, JoinState, Mode, load_state, save_state
from farmhand.join.steps import (
    admin_reason,
    binary_for,
    check_config,
    drop_user_copies,
    foreground_check,
    get_nebula,
    install_service,
    new_state,
    open_boss_bundle,
    relocated_files,
    service_binary,
    system_files,
    user_files,
)
from farmhand.join.system import StagedFile, SystemPaths, check_place
from farmhand.keystore.plan import validate_hub_address


@dataclass(frozen=True)
class JoinOptions:
    bundle: Path | None = None
    hub_address: str = ""
    mode: Mode = "foreground"
    nebula: Path | None = None
    wait: float = 60.0

    def __post_init__(self) -> None:
        # Checked when given, before the bundle, the passphrase or any file: it reaches the
        # boss's Nebula config.
        object.__setattr__(self, "hub_address", validate_hub_address(self.hub_address))


def join(
    options: JoinOptions,
    passphrase: Callable[[], str],
    *,
    os_: OS,
    paths: JoinPaths,
    say: Say,
    interactive: bool | None = None,
    system: SystemPaths | None = None,
) -> Joined:
    """Join the farm (or start an earlier join again); see the module docstring for the order.
    ``system``: where a service keeps its files (default: this OS's root-owned place)."""
    system = system or SystemPaths.default(os_)
    if paths.joined():
        return _rejoin(
            options, os_=os_, paths=paths, system=system, say=say, interactive=interactive
        )
    if paths.dir.exists():
        raise JoinError(f"{paths.dir} exists but holds no join.json: remove it by hand first")
    bundle, model = open_boss_bundle(options.bundle, passphrase, options.hub_address)
    choice = locate(os_, options.nebula)
    if options.mode == "service":
        check_place(system)
    state = new_state(os_, bundle, model, choice, options.mode)
    why = admin_reason(os_, choice, options.mode)
    elevation = elevate(os_, why, interactive=interactive, say=say)
    root_was_there = paths.root.exists()
    try:
        stage(paths, os_, user_files(model, bundle, paths, os_, options.mode))
        save_state(paths, state, paths.staging)
        commit(paths)
        get_nebula(choice, state, paths, elevation, say)
        if options.mode == "service":
            binary = service_binary(choice, state, say)
            install_service(
                state, system, system_files(model, system), binary, elevation, paths, say
            )
        else:
            save_state(paths, state)
            check_config(foreground_check(state, paths), Elevation())
    except BaseException:
        undo(state, os_, system, elevation, paths, root_was_there)
        raise
    joined = Joined(state, paths, elevation)
    return await_hub(joined, options.wait) if options.mode == "service" else joined


def _rejoin(
    options: JoinOptions,
    *,
    os_: OS,
    paths: JoinPaths,
    system: SystemPaths,
    say: Say,
    interactive: bool | None,
) -> Joined:
    """Start an earlier join again (no bundle, no passphrase): foreground, or the service."""
    state = load_state(paths)
    if options.bundle is not None:
        raise JoinError(
            f"this machine has already joined farm {state.farm!r} as {state.boss} "
            f"({paths.dir}): run 'farmhand join --leave' first to join with another bundle"
        )
    if state.mode == "service" and state.service_installed:
        if options.mode == "foreground":
            raise JoinError(
                f"nebula already runs as the {state.service}: 'farmhand status' shows the farm, "
                "'farmhand join --leave' removes the service"
            )
        return await_hub(Joined(state, paths, Elevation()), options.wait)
    if options.mode == "service":
        return _foreground_to_service(state, options, paths, system, say, interactive)
    why = f"starting nebula (it creates the network device {os_.tun_dev})"
    return Joined(state, paths, elevate(os_, why, interactive=interactive, say=say))


def _foreground_to_service(
    state: JoinState,
    options: JoinOptions,
    paths: JoinPaths,
    system: SystemPaths,
    say: Say,
    interactive: bool | None,
) -> Joined:
    """A foreground join becomes a service: its files are copied to root's place (root's
    config naming root's paths), then the user's folder drops its config, key and binary."""
    check_place(system)
    files: list[StagedFile] = relocated_files(paths, system)
    binary = binary_for(state.nebula, system.os)
    why = f"installing nebula as the {state.service}"
    elevation = elevate(system.os, why, interactive=interactive, say=say)
    before = replace(state)
    try:
        install_service(state, system, files, binary, elevation, paths, say)
    except BaseException:
        for step in service_removal(system.os, system):
            run_step(replace(step, check=False), elevation)
        save_state(paths, before)
        raise
    drop_user_copies(paths)
    return await_hub(Joined(state, paths, elevation), options.wait)
