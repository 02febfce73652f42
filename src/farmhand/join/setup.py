"""Joining and leaving: files into the config folder, nebula found, service or foreground.

Everything happens in an order that can be undone: nothing is written before the bundle opens,
is a boss bundle, nebula is found and administrator rights (when needed) are granted; files are
staged and committed as one folder; a failing step after that removes whatever was done.
``join.json`` records the exact removal commands, so ``--leave`` undoes exactly what join did.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from farmhand.errors import UsageError
from farmhand.hostfiles import render_join_files
from farmhand.join import JoinError
from farmhand.join.admin import Elevation, elevate
from farmhand.join.mounts import MountPlan, MountResult, mount_plan, run_mount
from farmhand.join.nebula import (
    NebulaBinary,
    PackageInstall,
    ReleaseDownload,
    fetch_release,
    installed_path,
    locate,
    nebula_version,
)
from farmhand.join.paths import JoinPaths
from farmhand.join.platforms import OS
from farmhand.join.probe import Probe, wait_for
from farmhand.join.services import ServicePlan, Step, service_plan, windows_owner_only
from farmhand.join.shares import share_hints
from farmhand.keystore.bundle import Bundle, open_bundle
from farmhand.keystore.plan import Role
from farmhand.model.host import SHARES, SMB_PORT, host_model

Mode = Literal["service", "foreground"]
Say = Callable[[str], None]
STATE_FORMAT = 1
BUNDLE_GLOB = "boss-*.keybundle.age"


@dataclass(frozen=True)
class JoinOptions:
    bundle: Path | None = None
    hub_address: str = ""
    mode: Mode = "foreground"
    nebula: Path | None = None
    wait: float = 60.0


@dataclass
class JoinState:
    """join.json: who joined which farm, how nebula runs, and how to undo it."""

    os: OS
    farm: str
    boss: str
    overlay_ip: str
    hub_overlay_ip: str
    smb_user: str
    shares: list[str]
    nebula: str
    nebula_version: str
    mode: Mode
    service: str
    install: list[Step]
    remove: list[Step]
    package: str = ""
    service_installed: bool = False
    joined_at: int = field(default_factory=lambda: int(time.time()))
    mounted: list[str] = field(default_factory=list)
    """Shares join mounted (their addresses); ``unmount`` undoes them on --leave."""
    unmount: list[Step] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "os": self.os.value,
            "farm": self.farm,
            "boss": self.boss,
            "overlay_ip": self.overlay_ip,
            "hub_overlay_ip": self.hub_overlay_ip,
            "smb_user": self.smb_user,
            "shares": self.shares,
            "nebula": self.nebula,
            "nebula_version": self.nebula_version,
            "mode": self.mode,
            "service": self.service,
            "install": [s.to_json() for s in self.install],
            "remove": [s.to_json() for s in self.remove],
            "package": self.package,
            "service_installed": self.service_installed,
            "joined_at": self.joined_at,
            "mounted": self.mounted,
            "unmount": [s.to_json() for s in self.unmount],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JoinState:
        if data.get("format") != STATE_FORMAT:
            raise ValueError(f"unknown format {data.get('format')!r}")
        return cls(
            os=OS(data["os"]),
            farm=str(data["farm"]),
            boss=str(data["boss"]),
            overlay_ip=str(data["overlay_ip"]),
            hub_overlay_ip=str(data["hub_overlay_ip"]),
            smb_user=str(data["smb_user"]),
            shares=[str(s) for s in data["shares"]],
            nebula=str(data["nebula"]),
            nebula_version=str(data["nebula_version"]),
            mode=data["mode"],
            service=str(data["service"]),
            install=[Step.from_json(s) for s in data["install"]],
            remove=[Step.from_json(s) for s in data["remove"]],
            package=str(data.get("package", "")),
            service_installed=bool(data.get("service_installed", False)),
            joined_at=int(data.get("joined_at", 0)),
            mounted=[str(m) for m in data.get("mounted", [])],
            unmount=[Step.from_json(s) for s in data.get("unmount", [])],
        )


@dataclass(frozen=True)
class Joined:
    """A finished join: the state, how the hub answered, how to reach the shares."""

    state: JoinState
    paths: JoinPaths
    elevation: Elevation
    hub: Probe | None = None
    hints: tuple[str, ...] = ()


def load_state(paths: JoinPaths) -> JoinState:
    try:
        return JoinState.from_json(json.loads(paths.state.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise JoinError(f"{paths.state} is damaged ({exc}): remove {paths.dir} by hand") from None


def save_state(paths: JoinPaths, state: JoinState, folder: Path | None = None) -> None:
    target = (folder or paths.dir) / paths.state.name
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, target)


def find_bundle(explicit: Path | None) -> Path:
    """``--bundle``, else the one boss bundle in ./ or the key store ($FARMHAND_KEYS, keys/)."""
    if explicit is not None:
        return explicit
    folders = [Path.cwd(), Path(os.environ.get("FARMHAND_KEYS", "keys"))]
    found = sorted({p.resolve() for d in folders if d.is_dir() for p in d.glob(BUNDLE_GLOB)})
    if len(found) == 1:
        return found[0]
    if not found:
        raise UsageError(
            "no boss keybundle found here: give --bundle FILE (boss-NAME.keybundle.age)"
        )
    names = ", ".join(p.name for p in found)
    raise UsageError(f"several boss keybundles found ({names}): pick one with --bundle FILE")


def check_boss_bundle(bundle: Bundle, path: Path) -> None:
    if bundle.role is not Role.BOSS:
        raise UsageError(
            f"{path} is the {bundle.role.value} keybundle: farmhand join needs a boss keybundle "
            "(boss-NAME.keybundle.age, made by 'farmhand keygen --boss NAME' or "
            "'farmhand keys add-boss NAME')"
        )


def run_step(step: Step, elevation: Elevation) -> bool:
    """Run one step; a checked step that fails raises one line naming it."""
    argv = elevation.argv(step.argv) if step.admin else list(step.argv)
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
        )
    except OSError as exc:
        if step.check:
            raise JoinError(f"{step.what} failed: {exc.strerror}") from None
        return False
    if result.returncode != 0 and step.check:
        lines = (result.stderr or result.stdout).strip().splitlines()
        reason = lines[-1] if lines else f"exit {result.returncode}"
        raise JoinError(f"{step.what} failed: {reason}")
    return result.returncode == 0


def _windows_user() -> str:
    user = os.environ.get("USERNAME", "")
    domain = os.environ.get("USERDOMAIN", "")
    return f"{domain}\\{user}" if domain and user else user


def _stage(paths: JoinPaths, os_: OS, files: list[tuple[str, bytes, int]]) -> None:
    """Write every file into the staging folder, secrets owner-only from the first byte."""
    shutil.rmtree(paths.staging, ignore_errors=True)
    paths.staging.mkdir(mode=0o700, parents=True)
    for name, content, mode in files:
        target = paths.staging / name
        fd = os.open(
            target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode
        )
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        if os_ is OS.WINDOWS and mode == 0o600:
            run_step(windows_owner_only(str(target), _windows_user()), Elevation())


def _remove_folder(paths: JoinPaths, root_was_there: bool) -> None:
    shutil.rmtree(paths.staging, ignore_errors=True)
    shutil.rmtree(paths.dir, ignore_errors=True)
    if not root_was_there:
        with contextlib.suppress(OSError):
            paths.root.rmdir()


def _undo(
    state: JoinState | None,
    elevation: Elevation,
    paths: JoinPaths,
    root_was_there: bool,
    package_done: PackageInstall | None,
) -> None:
    """Best effort, in reverse: the service, the package join installed, the folder."""
    if state is not None and state.service_installed:
        for step in state.remove:
            with contextlib.suppress(JoinError):
                run_step(Step(step.what, step.argv, step.admin, check=False), elevation)
    if package_done is not None:
        run_step(Step("removing nebula", package_done.remove_argv, check=False), elevation)
    _remove_folder(paths, root_was_there)


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
    bundle_path = find_bundle(options.bundle)
    bundle = open_bundle(bundle_path, passphrase())
    check_boss_bundle(bundle, bundle_path)
    model = host_model(bundle, hub_address=options.hub_address)
    choice = locate(os_, options.nebula)

    def plan_for(nebula: str) -> ServicePlan:
        return service_plan(
            os_,
            nebula=nebula,
            config=str(paths.config),
            join_dir=str(paths.dir),
            farm=bundle.plan.name,
            boss=model.name,
        )

    steps_needing_admin = []
    if isinstance(choice, PackageInstall):
        steps_needing_admin.append(f"installing the {choice.package} package")
    nebula_path = choice.path if isinstance(choice, NebulaBinary) else ""
    plan = plan_for(nebula_path or os_.nebula_exe)
    if options.mode == "service":
        steps_needing_admin.append(f"installing nebula as the {plan.description}")
    else:
        steps_needing_admin.append(f"starting nebula (it creates the network device {os_.tun_dev})")
    elevation = elevate(os_, " and ".join(steps_needing_admin), interactive=interactive, say=say)

    rendered = render_join_files(model, str(paths.dir), sep=os_.sep, tun_dev=os_.tun_dev)
    files = [(f.path.rsplit(os_.sep, 1)[-1], f.content, f.mode) for f in rendered]
    files += [
        (paths.smb_password.name, bundle.smb_password.encode() + b"\n", 0o600),
        (paths.farm.name, json.dumps(bundle.metadata(), indent=1).encode() + b"\n", 0o644),
    ]
    root_was_there = paths.root.exists()
    state: JoinState | None = None
    package_done: PackageInstall | None = None
    try:
        _stage(paths, os_, files)
        state = JoinState(
            os=os_,
            farm=bundle.plan.name,
            boss=model.name,
            overlay_ip=str(model.overlay_ip),
            hub_overlay_ip=str(model.hub_overlay_ip),
            smb_user=bundle.plan.farm_user,
            shares=[s.name for s in SHARES],
            nebula=nebula_path,
            nebula_version=choice.version if isinstance(choice, NebulaBinary) else "",
            mode=options.mode,
            service=plan.description,
            install=[],
            remove=[],
        )
        save_state(paths, state, paths.staging)
        paths.staging.rename(paths.dir)
        if isinstance(choice, PackageInstall):
            say(f"installing the {choice.package} package")
            run_step(Step(f"installing the {choice.package} package", choice.argv), elevation)
            package_done = choice
            state.package = choice.package
            state.nebula = installed_path(os_)
            state.nebula_version = nebula_version(state.nebula)
        if isinstance(choice, ReleaseDownload):
            if "://" in choice.source:  # a download takes a while: say so
                say(f"fetching {choice.archive.filename} (nebula, sha256-checked)")
            binary = fetch_release(choice, paths.dir / "bin", os_)
            state.nebula, state.nebula_version = binary.path, binary.version
        plan = plan_for(state.nebula)
        for staged in plan.files:
            target = paths.dir / staged.name
            target.write_bytes(staged.content)
            target.chmod(staged.mode)
        state.install, state.remove = list(plan.install), list(plan.remove)
        save_state(paths, state)
        _test_config(state.nebula, paths)
        if options.mode == "service":
            _install_service(state, elevation, paths, say)
    except BaseException:
        _undo(state, elevation, paths, root_was_there, package_done)
        raise
    joined = Joined(state, paths, elevation)
    if options.mode == "service":
        return _await_hub(joined, options.wait)
    return joined


def _test_config(nebula: str, paths: JoinPaths) -> None:
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


def _install_service(state: JoinState, elevation: Elevation, paths: JoinPaths, say: Say) -> None:
    state.service_installed = True  # from the first step on, leave must try to remove it
    save_state(paths, state)
    say(f"installing nebula as the {state.service}")
    for step in state.install:
        run_step(step, elevation)
    state.mode = "service"
    save_state(paths, state)


def _await_hub(joined: Joined, wait: float) -> Joined:
    state = joined.state
    probe = wait_for(state.hub_overlay_ip, SMB_PORT, wait)
    if probe is None:
        raise JoinError(
            f"nebula runs ({state.service}), but the hub {state.hub_overlay_ip} did not answer "
            f"within {wait:.0f} s; it keeps trying: 'farmhand status' shows when the hub "
            "answers, 'farmhand join --leave' removes everything"
        )
    hints = share_hints(
        state.os, state.hub_overlay_ip, state.smb_user, state.shares, str(joined.paths.smb_password)
    )
    return Joined(state, joined.paths, joined.elevation, probe, tuple(hints))


def hub_hints(joined: Joined, probe: Probe) -> Joined:
    state = joined.state
    hints = share_hints(
        state.os, state.hub_overlay_ip, state.smb_user, state.shares, str(joined.paths.smb_password)
    )
    return Joined(state, joined.paths, joined.elevation, probe, tuple(hints))


def mount_share(joined: Joined, *, gio: str | None = None) -> tuple[MountPlan, MountResult]:
    """Mount the farm share the way this OS does (``mounts``), recording how to unmount it in
    join.json first, so --leave undoes even a mount that half happened. ``gio``: Linux's gio
    binary (default: the one on PATH)."""
    state = joined.state
    if state.os is OS.LINUX and gio is None:
        gio = shutil.which("gio")
    plan = mount_plan(state.os, hub=state.hub_overlay_ip, user=state.smb_user, gio=gio)
    if not plan.automatic:
        return plan, MountResult(False)
    if plan.where in state.mounted:
        return plan, MountResult(True, "already mounted by an earlier join")
    state.mounted.append(plan.where)
    state.unmount.extend(plan.unmount)
    save_state(joined.paths, state)
    result = run_mount(plan, joined.paths.smb_password)
    if not result.mounted:
        state.mounted.remove(plan.where)
        state.unmount = [s for s in state.unmount if s not in plan.unmount]
        save_state(joined.paths, state)
    return plan, result


def unmount_shares(state: JoinState, paths: JoinPaths, say: Say) -> list[str]:
    """Run the unmount steps join recorded (best effort: a share the person already ejected
    is fine); returns what was unmounted."""
    if not state.mounted:
        return []
    for step in state.unmount:
        say(step.what)
        run_step(step, Elevation())
    done = [f"the mount of {where}" for where in state.mounted]
    state.mounted, state.unmount = [], []
    save_state(paths, state)
    return done


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
        return _await_hub(Joined(state, paths, Elevation()), options.wait)
    if options.mode == "service":
        why = f"installing nebula as the {state.service}"
        elevation = elevate(os_, why, interactive=interactive, say=say)
        try:
            _install_service(state, elevation, paths, say)
        except BaseException:
            for step in state.remove:
                run_step(Step(step.what, step.argv, step.admin, check=False), elevation)
            state.service_installed = False
            state.mode = "foreground"
            save_state(paths, state)
            raise
        return _await_hub(Joined(state, paths, elevation), options.wait)
    why = f"starting nebula (it creates the network device {os_.tun_dev})"
    return Joined(state, paths, elevate(os_, why, interactive=interactive, say=say))


def leave(*, os_: OS, paths: JoinPaths, say: Say, interactive: bool | None = None) -> list[str]:
    """Stop and remove everything join installed; returns what was removed (empty: nothing)."""
    if not paths.dir.exists() and not paths.staging.exists():
        return []
    removed: list[str] = []
    state: JoinState | None = None
    from farmhand.join.foreground import stop_running  # foreground imports this module

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
