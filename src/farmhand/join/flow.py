"""Joining: ``join()`` as a short sequence of ``steps``, in an order that can be undone.

Nothing is written before the bundle opens, is a boss bundle, nebula is found and
administrator rights (when needed) are granted; files are staged and committed as one folder;
a failing step after that removes whatever was done (``leave.undo``). ``join.json`` records
the exact removal commands, so ``--leave`` undoes exactly what join did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from farmhand.join import JoinError, Say
from farmhand.join.admin import Elevation, elevate
from farmhand.join.commands import Step, run_step
from farmhand.join.hub import await_hub
from farmhand.join.leave import undo
from farmhand.join.nebula import locate
from farmhand.join.paths import JoinPaths
from farmhand.join.platforms import OS
from farmhand.join.staging import commit, stage
from farmhand.join.state import Joined, Mode, load_state, save_state
from farmhand.join.steps import (
    admin_reason,
    check_config,
    get_nebula,
    install_service,
    join_files,
    new_state,
    open_boss_bundle,
    plan_for,
    write_service_files,
)


@dataclass(frozen=True)
class JoinOptions:
    bundle: Path | None = None
    hub_address: str = ""
    mode: Mode = "foreground"
    nebula: Path | None = None
    wait: float = 60.0


def join(
    options: JoinOptions,
    passphrase: Callable[[], str],
    *,
    os_: OS,
    paths: JoinPaths,
    say: Say,
    interactive: bool | None = None,
) -> Joined:
    """Join the farm (or start an earlier join again); see the module docstring for the order."""
    if paths.joined():
        return _rejoin(options, os_=os_, paths=paths, say=say, interactive=interactive)
    if paths.dir.exists():
        raise JoinError(f"{paths.dir} exists but holds no join.json: remove it by hand first")
    bundle, model = open_boss_bundle(options.bundle, passphrase, options.hub_address)
    choice = locate(os_, options.nebula)
    state = new_state(os_, bundle, model, choice, options.mode)
    state.service = plan_for(os_, paths, state, state.nebula or os_.nebula_exe).description
    why = admin_reason(os_, choice, options.mode, state.service)
    elevation = elevate(os_, why, interactive=interactive, say=say)
    files = join_files(model, bundle, paths, os_)
    root_was_there = paths.root.exists()
    try:
        stage(paths, os_, files)
        save_state(paths, state, paths.staging)
        commit(paths)
        get_nebula(choice, state, paths, elevation, say)
        write_service_files(state, paths)
        check_config(state.nebula, paths)
        if options.mode == "service":
            install_service(state, elevation, paths, say)
    except BaseException:
        undo(state, elevation, paths, root_was_there)
        raise
    joined = Joined(state, paths, elevation)
    return await_hub(joined, options.wait) if options.mode == "service" else joined


def _rejoin(
    options: JoinOptions, *, os_: OS, paths: JoinPaths, say: Say, interactive: bool | None
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
        why = f"installing nebula as the {state.service}"
        elevation = elevate(os_, why, interactive=interactive, say=say)
        try:
            install_service(state, elevation, paths, say)
        except BaseException:
            for step in state.remove:
                run_step(Step(step.what, step.argv, step.admin, check=False), elevation)
            state.service_installed = False
            state.mode = "foreground"
            save_state(paths, state)
            raise
        return await_hub(Joined(state, paths, elevation), options.wait)
    why = f"starting nebula (it creates the network device {os_.tun_dev})"
    return Joined(state, paths, elevate(os_, why, interactive=interactive, say=say))
