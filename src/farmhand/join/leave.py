"""Leaving: stop and remove everything a join put on this machine, from what join.json says
was done; and ``undo``, the same taken back in reverse when a join fails half way."""

from __future__ import annotations

import contextlib
import shutil

from farmhand.join import JoinError, Say
from farmhand.join.admin import Elevation, elevate
from farmhand.join.commands import Step, run_step
from farmhand.join.foreground import stop_running
from farmhand.join.mounts import unmount_shares
from farmhand.join.nebula import PackageInstall
from farmhand.join.paths import JoinPaths
from farmhand.join.platforms import OS
from farmhand.join.staging import remove_folder
from farmhand.join.state import JoinState, load_state, save_state


def undo(state: JoinState, elevation: Elevation, paths: JoinPaths, root_was_there: bool) -> None:
    """Best effort, in reverse: the service, the package join installed, the folder."""
    if state.service_installed:
        for step in state.remove:
            with contextlib.suppress(JoinError):
                run_step(Step(step.what, step.argv, step.admin, check=False), elevation)
    if state.package:
        removal = PackageInstall(state.package, ()).remove_argv
        run_step(Step("removing nebula", removal, check=False), elevation)
    remove_folder(paths, root_was_there)


def leave(*, os_: OS, paths: JoinPaths, say: Say, interactive: bool | None = None) -> list[str]:
    """Stop and remove everything join installed; returns what was removed (empty: nothing)."""
    if not paths.dir.exists() and not paths.staging.exists():
        return []
    removed: list[str] = []
    state: JoinState | None = None
    if paths.state.is_file():  # unmount while the hub may still answer
        with contextlib.suppress(JoinError):  # a damaged join.json is reported below
            removed += unmount_shares(load_state(paths), paths, say)
    if stop_running(paths.foreground_pid):
        say("stopped the running 'farmhand join --foreground'")
        removed.append("the running foreground nebula")
    if paths.state.is_file():
        state = load_state(paths)
    if state is not None and (state.service_installed or state.package):
        what = []
        if state.service_installed:
            what.append(f"removing the {state.service}")
        if state.package:
            what.append(f"removing the {state.package} package")
        elevation = elevate(os_, " and ".join(what), interactive=interactive, say=say)
        if state.service_installed:
            say(f"removing the {state.service}")
            for step in state.remove:
                run_step(step, elevation)
            removed.append(state.service)
            state.service_installed = False
            save_state(paths, state)
        if state.package:
            say(f"removing the {state.package} package")
            argv = PackageInstall(state.package, ()).remove_argv
            run_step(Step(f"removing the {state.package} package", argv), elevation)
            removed.append(f"the {state.package} package")
    shutil.rmtree(paths.staging, ignore_errors=True)
    shutil.rmtree(paths.dir)
    removed.append(str(paths.dir))
    with contextlib.suppress(OSError):
        paths.root.rmdir()  # only when join's folder was all farmhand kept there
    return removed
