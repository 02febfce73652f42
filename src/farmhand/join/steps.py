"""The steps a join runs, one function each, in the order ``flow`` runs them.

Each step records in join.json what it did before the next one starts, so whatever fails
later, ``leave.undo`` finds on record exactly what to take back.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from farmhand.hostfiles import render_join_files
from farmhand.join import JoinError, Say
from farmhand.join.admin import Elevation
from farmhand.join.bundle import check_boss_bundle, find_bundle
from farmhand.join.commands import Step, run_step
from farmhand.join.nebula import (
    NebulaBinary,
    PackageInstall,
    ReleaseDownload,
    fetch_release,
    installed_path,
    nebula_version,
)
from farmhand.join.paths import JoinPaths
from farmhand.join.platforms import OS
from farmhand.join.services import ServicePlan, service_plan
from farmhand.join.state import JoinState, Mode, save_state
from farmhand.keystore.bundle import Bundle, open_bundle
from farmhand.model.host import SHARES, HostModel, host_model

Choice = NebulaBinary | PackageInstall | ReleaseDownload
"""The nebula to run, or how join gets it (``nebula.locate``)."""


def open_boss_bundle(
    explicit: Path | None, passphrase: Callable[[], str], hub_address: str
) -> tuple[Bundle, HostModel]:
    """The boss bundle, opened and checked, and the boss's host model; nothing written yet."""
    bundle_path = find_bundle(explicit)
    bundle = open_bundle(bundle_path, passphrase())
    check_boss_bundle(bundle, bundle_path)
    return bundle, host_model(bundle, hub_address=hub_address)


def plan_for(os_: OS, paths: JoinPaths, state: JoinState, nebula: str = "") -> ServicePlan:
    """The service plan for this join's nebula (``nebula``: before the binary is known)."""
    return service_plan(
        os_,
        nebula=nebula or state.nebula,
        config=str(paths.config),
        join_dir=str(paths.dir),
        farm=state.farm,
        boss=state.boss,
    )


def admin_reason(os_: OS, choice: Choice, mode: Mode, service: str) -> str:
    """What the administrator rights are for, in the words sudo's question uses."""
    steps_needing_admin = []
    if isinstance(choice, PackageInstall):
        steps_needing_admin.append(f"installing the {choice.package} package")
    if mode == "service":
        steps_needing_admin.append(f"installing nebula as the {service}")
    else:
        steps_needing_admin.append(f"starting nebula (it creates the network device {os_.tun_dev})")
    return " and ".join(steps_needing_admin)


def new_state(os_: OS, bundle: Bundle, model: HostModel, choice: Choice, mode: Mode) -> JoinState:
    """join.json as it is before anything is installed: who joins which farm, and how."""
    return JoinState(
        os=os_,
        farm=bundle.plan.name,
        boss=model.name,
        overlay_ip=str(model.overlay_ip),
        hub_overlay_ip=str(model.hub_overlay_ip),
        smb_user=bundle.plan.farm_user,
        shares=[s.name for s in SHARES],
        nebula=choice.path if isinstance(choice, NebulaBinary) else "",
        nebula_version=choice.version if isinstance(choice, NebulaBinary) else "",
        mode=mode,
        service="",
        install=[],
        remove=[],
    )


def join_files(
    model: HostModel, bundle: Bundle, paths: JoinPaths, os_: OS
) -> list[tuple[str, bytes, int]]:
    """Every file of join's folder: Nebula's config, CA, certificate and key, the SMB
    password and the bundle's metadata, as (name, content, mode)."""
    rendered = render_join_files(model, str(paths.dir), sep=os_.sep, tun_dev=os_.tun_dev)
    files = [(f.path.rsplit(os_.sep, 1)[-1], f.content, f.mode) for f in rendered]
    files += [
        (paths.smb_password.name, bundle.smb_password.encode() + b"\n", 0o600),
        (paths.farm.name, json.dumps(bundle.metadata(), indent=1).encode() + b"\n", 0o644),
    ]
    return files


def get_nebula(
    choice: Choice, state: JoinState, paths: JoinPaths, elevation: Elevation, say: Say
) -> None:
    """Install the package or unpack the pinned release (a found binary needs neither)."""
    os_ = state.os
    if isinstance(choice, PackageInstall):
        say(f"installing the {choice.package} package")
        run_step(Step(f"installing the {choice.package} package", choice.argv), elevation)
        state.package = choice.package
        state.nebula = installed_path(os_)
        state.nebula_version = nebula_version(state.nebula)
    if isinstance(choice, ReleaseDownload):
        if "://" in choice.source:  # a download takes a while: say so
            say(f"fetching {choice.archive.filename} (nebula, sha256-checked)")
        binary = fetch_release(choice, paths.dir / "bin", os_)
        state.nebula, state.nebula_version = binary.path, binary.version


def write_service_files(state: JoinState, paths: JoinPaths) -> None:
    """The service's files into join's folder, its install and removal steps into join.json."""
    plan = plan_for(state.os, paths, state)
    for staged in plan.files:
        target = paths.dir / staged.name
        target.write_bytes(staged.content)
        target.chmod(staged.mode)
    state.install, state.remove = list(plan.install), list(plan.remove)
    save_state(paths, state)


def check_config(nebula: str, paths: JoinPaths) -> None:
    """``nebula -test``: the config parses, the key matches the certificate, the hub's address
    resolves (nebula 1.6 resolves it once, at start)."""
    result = subprocess.run(
        [nebula, "-test", "-config", str(paths.config)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if result.returncode != 0:
        raise JoinError(
            f"nebula rejects the config: {nebula_complaint(result.stdout + result.stderr)}"
        )


def nebula_complaint(output: str) -> str:
    """The last error nebula logged, as ``msg (error)``, from its logfmt lines."""
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if "level=error" in ln or "level=fatal" in ln] or lines
    if not errors:
        return "no reason given"
    line = errors[-1]
    msg = re.search(r'msg="((?:[^"\\]|\\.)*)"', line)
    err = re.search(r'error="((?:[^"\\]|\\.)*)"', line)
    if msg is None:
        return line.strip()[:300]
    return msg.group(1) + (f" ({err.group(1)})" if err else "")


def install_service(state: JoinState, elevation: Elevation, paths: JoinPaths, say: Say) -> None:
    """Run the service's install steps; join.json says it is installed before the first one,
    so leave tries to remove even a half-installed service."""
    state.service_installed = True
    save_state(paths, state)
    say(f"installing nebula as the {state.service}")
    for step in state.install:
        run_step(step, elevation)
    state.mode = "service"
    save_state(paths, state)
