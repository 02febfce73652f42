"""Leaving: stop and remove everything a join put on this machine; and ``undo``, the same
taken back when a join fails half way.

What runs with administrator rights follows from facts alone: which OS this is, whether
join.json says a service or the nebula package was installed, and farmhand's own fixed places
(``services.service_removal``). join.json is the user's file, so a command line in it (one
written by an older farmhand, or added by anyone since) is never run.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import replace

from farmhand.join import JoinError, Say
from farmhand.join.admin import Elevation, elevate
from farmhand.join.commands import Step, run_step
from farmhand.join.foreground import stop_running
from farmhand.join.mounts import unmount_shares
from farmhand.join.nebula import APT_PACKAGE, PackageInstall
from farmhand.join.paths import JoinPaths
from farmhand.join.platforms import OS
from farmhand.join.services import service_description, service_removal
from farmhand.join.staging import remove_folder
from farmhand.join.state import JoinState, load_state, save_state
from farmhand.join.system import SystemPaths


def _package_removal(package: str, what: str, *, check: bool) -> Step:
    return Step(what, PackageInstall(package, ()).remove_argv, check=check)


def undo(
    state: JoinState,
    os_: OS,
    system: SystemPaths,
    elevation: Elevation,
    paths: JoinPaths,
    root_was_there: bool,
) -> None:
    """Best effort, in reverse: the service and its files, the package join installed, the
    user's folder."""
    if state.service_installed:
        for step in service_removal(os_, system):
            with contextlib.suppress(JoinError):
                run_step(replace(step, check=False), elevation)
    if state.package:
        run_step(_package_removal(APT_PACKAGE, "removing nebula", check=False), elevation)
    remove_folder(paths, root_was_there)


def leave(
    *,
    os_: OS,
    paths: JoinPaths,
    say: Say,
    interactive: bool | None = None,
    system: SystemPaths | None = None,
) -> list[str]:
    """Stop and remove everything join installed; returns what was removed (empty: nothing).
    ``system``: where a service keeps its files (default: this OS's root-owned place)."""
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
    if state is not None:
        removed += _remove_installed(
            state, os_, system or SystemPaths.default(os_), paths, say, interactive
        )
    shutil.rmtree(paths.staging, ignore_errors=True)
    shutil.rmtree(paths.dir)
    removed.append(str(paths.dir))
    with contextlib.suppress(OSError):
        paths.root.rmdir()  # only when join's folder was all farmhand kept there
    return removed


def _remove_installed(
    state: JoinState,
    os_: OS,
    system: SystemPaths,
    paths: JoinPaths,
    say: Say,
    interactive: bool | None,
) -> list[str]:
    """The service (with its root-owned files) and the package, as join.json says they were
    installed: the commands are this OS's own removal steps, never ones from the file."""
    package = state.package
    if package and package != APT_PACKAGE:
        say(f"join.json names the package {package!r}, which farmhand never installs: left alone")
        package = ""
    service = service_description(os_)
    what = [f"removing the {service}"] if state.service_installed else []
    what += [f"removing the {package} package"] if package else []
    if not what:
        return []
    elevation = elevate(os_, " and ".join(what), interactive=interactive, say=say)
    removed = []
    if state.service_installed:
        say(f"removing the {service}")
        for step in service_removal(os_, system):
            run_step(step, elevation)
        removed.append(service)
        state.service_installed = False
        save_state(paths, state)
    if package:
        say(f"removing the {package} package")
        run_step(
            _package_removal(package, f"removing the {package} package", check=True), elevation
        )
        removed.append(f"the {package} package")
    return removed
