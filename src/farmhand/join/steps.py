"""The steps a join runs, one function each, in the order ``flow`` runs them.

Each step records in join.json what it did before the next one starts (as facts: "the
service is installed", "the package is"), so whatever fails later, ``leave.undo`` knows what
to take back.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from farmhand.hostfiles import join_files
from farmhand.jobs.client import known_hosts_line
from farmhand.join import JoinError, Say
from farmhand.join.admin import Elevation
from farmhand.join.bundle import check_boss_bundle, find_bundle
from farmhand.join.commands import Step, run, run_step
from farmhand.join.nebula import (
    NebulaBinary,
    PackageInstall,
    ReleaseDownload,
    fetch_release,
    installed_path,
    nebula_version,
    release_files,
)
from farmhand.join.paths import JoinPaths
from farmhand.join.platforms import OS
from farmhand.join.services import service_description, service_plan
from farmhand.join.state import JoinState, Mode, save_state
from farmhand.join.system import ServiceBinary, StagedFile, SystemPaths, first_changeable
from farmhand.keystore.bundle import Bundle, open_bundle
from farmhand.keystore.job_keys import JOB_KEY
from farmhand.model.host import MOUNTED_SHARES, HostModel, host_model
from farmhand.nebula.release import NEBULA_VERSION

Choice = NebulaBinary | PackageInstall | ReleaseDownload
"""The nebula to run, or how join gets it (``nebula.locate``)."""
SERVICE_LEAVES_OUT = ("config.yml", "host.key")
"""What the user's folder does not keep once the service runs: it has its own, root's."""


def open_boss_bundle(
    explicit: Path | None, passphrase: Callable[[], str], hub_address: str
) -> tuple[Bundle, HostModel]:
    """The boss bundle, opened and checked, and the boss's host model; nothing written yet."""
    bundle_path = find_bundle(explicit)
    bundle = open_bundle(bundle_path, passphrase())
    check_boss_bundle(bundle, bundle_path)
    return bundle, host_model(bundle, hub_address=hub_address)


def admin_reason(os_: OS, choice: Choice, mode: Mode) -> str:
    """What the administrator rights are for, in the words sudo's question uses."""
    steps_needing_admin = []
    if isinstance(choice, PackageInstall):
        steps_needing_admin.append(f"installing the {choice.package} package")
    if mode == "service":
        steps_needing_admin.append(f"installing nebula as the {service_description(os_)}")
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
        shares=[s.name for s in MOUNTED_SHARES],
        nebula=choice.path if isinstance(choice, NebulaBinary) else "",
        nebula_version=choice.version if isinstance(choice, NebulaBinary) else "",
        mode=mode,
        service=service_description(os_),
    )


def user_files(
    model: HostModel, bundle: Bundle, paths: JoinPaths, os_: OS, mode: Mode
) -> list[StagedFile]:
    """The files of the user's join folder: Nebula's config, CA, certificate and key (for a
    service only the CA and certificate: its config and key are root's), the SMB password
    and the bundle's metadata, as (name, content, mode)."""
    rendered = join_files(model, str(paths.dir), sep=os_.sep, tun_dev=os_.tun_dev)
    files = [(f.path.rsplit(os_.sep, 1)[-1], f.content, f.mode) for f in rendered]
    if mode == "service":
        files = [f for f in files if f[0] not in SERVICE_LEAVES_OUT]
    files += [
        (paths.smb_password.name, bundle.smb_password.encode() + b"\n", 0o600),
        (paths.farm.name, json.dumps(bundle.metadata(), indent=1).encode() + b"\n", 0o644),
    ]
    files += job_access_files(bundle, paths)
    return files


def job_access_files(bundle: Bundle, paths: JoinPaths) -> list[StagedFile]:
    """The boss's job key and the hub's pinned host key, when the bundle has them (an older
    bundle has not: ``farmhand keys rebundle``)."""
    key = bundle.extras.get(JOB_KEY)
    host = bundle.extras.get("lease-host-key.pub")
    if key is None or host is None:
        return []
    return [
        (paths.jobs_key.name, key, 0o600),
        (paths.hub_known_hosts.name, known_hosts_line(host), 0o644),
    ]


def system_files(model: HostModel, system: SystemPaths) -> list[StagedFile]:
    """Nebula's config, CA, certificate and key for the service, naming root's place."""
    os_ = system.os
    rendered = join_files(model, system.dir, sep=os_.sep, tun_dev=os_.tun_dev)
    return [(f.path.rsplit(os_.sep, 1)[-1], f.content, f.mode) for f in rendered]


def relocated_files(paths: JoinPaths, system: SystemPaths) -> list[StagedFile]:
    """A foreground join's config, CA, certificate and key for the service (no bundle at
    hand): read here, by the user, with the config's three paths moved to root's place."""
    config = paths.config.read_text(encoding="utf-8")
    for key, (mine, roots) in {
        "ca": (paths.ca, system.file("ca.crt")),
        "cert": (paths.cert, system.file("host.crt")),
        "key": (paths.key, system.file("host.key")),
    }.items():
        line = f"  {key}: {mine}\n"
        if line not in config:
            raise JoinError(
                f"{paths.config} has no '{key}: {mine}' line (changed by hand?): run "
                "'farmhand join --leave', then join again with --service and the bundle"
            )
        config = config.replace(line, f"  {key}: {roots}\n")
    return [
        ("config.yml", config.encode(), 0o600),
        ("ca.crt", paths.ca.read_bytes(), 0o644),
        ("host.crt", paths.cert.read_bytes(), 0o644),
        ("host.key", paths.key.read_bytes(), 0o600),
    ]


def get_nebula(
    choice: Choice,
    state: JoinState,
    paths: JoinPaths,
    elevation: Elevation,
    say: Say,
) -> None:
    """Install the package, or (foreground) unpack the pinned release into join's folder; a
    found binary needs neither, nor does a service's release (``service_binary`` has it)."""
    if isinstance(choice, PackageInstall):
        say(f"installing the {choice.package} package")
        run_step(Step(f"installing the {choice.package} package", choice.argv), elevation)
        state.package = choice.package
        state.nebula = installed_path(state.os)
        state.nebula_version = nebula_version(state.nebula)
    if isinstance(choice, ReleaseDownload) and state.mode == "foreground":
        if "://" in choice.source:  # a download takes a while: say so
            say(f"fetching {choice.archive.filename} (nebula, sha256-checked)")
        binary = fetch_release(choice, paths.dir / "bin", state.os)
        state.nebula, state.nebula_version = binary.path, binary.version


def service_binary(choice: Choice, state: JoinState, say: Say) -> ServiceBinary:
    """The nebula the service runs: the pinned release from memory, else ``binary_for`` the
    one found (or installed by the package)."""
    if isinstance(choice, ReleaseDownload):
        if "://" in choice.source:
            say(f"fetching {choice.archive.filename} (nebula, sha256-checked)")
        state.nebula_version = NEBULA_VERSION
        return ServiceBinary(files=tuple(sorted(release_files(choice, state.os).items())))
    return binary_for(state.nebula, state.os)


def binary_for(path: str, os_: OS) -> ServiceBinary:
    """A nebula only root can change runs as it is (e.g. the distribution's /usr/bin/nebula);
    any other (Homebrew's, one in the user's folder, every one on Windows) gets root's own
    copy, read here from the file the person chose."""
    real = os.path.realpath(path)
    if os_ is not OS.WINDOWS and first_changeable(real) is None:
        return ServiceBinary(path=real)
    names = [os_.nebula_exe, "wintun.dll"] if os_ is OS.WINDOWS else [os_.nebula_exe]
    folder = Path(real).parent
    try:
        files = [(names[0], Path(real).read_bytes())]
        files += [(name, (folder / name).read_bytes()) for name in names[1:]]
    except OSError as exc:
        raise JoinError(f"cannot read {exc.filename} to copy it for the service") from None
    return ServiceBinary(files=tuple(files))


def check_config(step: Step, elevation: Elevation) -> None:
    """``nebula -test``: the config parses, the key matches the certificate, the hub's address
    resolves (nebula 1.6 resolves it once, at start)."""
    argv = elevation.argv(step.argv) if step.admin else list(step.argv)
    result = subprocess.run(
        argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )
    if result.returncode != 0:
        raise JoinError(
            f"nebula rejects the config: {nebula_complaint(result.stdout + result.stderr)}"
        )


def foreground_check(state: JoinState, paths: JoinPaths) -> Step:
    """``nebula -test`` on the user's config, as the user (the foreground's own check)."""
    argv = (state.nebula, "-test", "-config", str(paths.config))
    return Step("checking the config (nebula -test)", argv, admin=False)


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


def install_service(
    state: JoinState,
    system: SystemPaths,
    files: list[StagedFile],
    binary: ServiceBinary,
    elevation: Elevation,
    paths: JoinPaths,
    say: Say,
) -> None:
    """Put the service's files (and nebula, unless root's own) in root's place, check them as
    root, start the service. join.json says the service is installed before the first step,
    so leave removes even half of it."""
    plan = service_plan(
        system.os, system, files=files, binary=binary, farm=state.farm, boss=state.boss
    )
    state.nebula = binary.runs(system)
    state.service_installed = True
    save_state(paths, state)
    say(f"installing nebula as the {state.service}")
    for action in plan.place:
        run(action, elevation)
    if plan.check is not None:
        check_config(plan.check, elevation)
    for step in plan.start:
        run_step(step, elevation)
    state.mode = "service"
    save_state(paths, state)


def drop_user_copies(paths: JoinPaths) -> None:
    """Once the service runs from root's place, the user's folder keeps no config, key or
    binary of a foreground join: only the record and what the user reads (CA, certificate,
    farm.json, the SMB password)."""
    for name in SERVICE_LEAVES_OUT:
        (paths.dir / name).unlink(missing_ok=True)
    shutil.rmtree(paths.dir / "bin", ignore_errors=True)
