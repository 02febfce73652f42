"""Mounting the farm share after join, with only what the OS already has.

Like the service plans, each OS gets a plan of plain commands (``Step``), so what runs on Linux
here is exactly what the tests check for macOS and Windows, argument by argument:

- macOS: ``open smb://USER@HUB/farm``; Finder mounts it under /Volumes and asks for the
  password itself (and offers to keep it in the Keychain). farmhand never handles it there.
- Windows: ``net use \\\\HUB\\farm * /user:USER /persistent:no``: ``*`` makes ``net use`` ask
  for the password, and farmhand answers on its stdin. No drive letter: Explorer and every
  program then open ``\\\\HUB\\farm`` without asking, and ``/delete`` removes exactly it.
- Linux: ``gio mount smb://DOMAIN;USER@HUB/farm`` when ``gio`` (GNOME/KDE's gvfs) is here. With
  the user and domain in the address gvfs asks for nothing but the password, which ``gio``
  reads as one line from stdin (and on end of input it gives up instead of waiting). Without
  gio: the packages that mount (gvfs-backends, cifs-utils) and the line to run.

The password comes from join's owner-only ``smb.password`` and only ever travels on a child's
stdin: never in argv (other users can read that), never in output (scrubbed from it anyway).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from farmhand.join import Say
from farmhand.join.admin import Elevation
from farmhand.join.commands import Step, run_step
from farmhand.join.paths import JoinPaths
from farmhand.join.platforms import OS
from farmhand.join.state import Joined, JoinState, save_state

MOUNT_SHARE = "farm"
"""The share a person works in (scenes, renders); ``queue`` is the farm's own business."""
SMB_DOMAIN = "FARMHAND"
"""The hub's Samba workgroup (templates/samba/smb.conf.j2)."""
MACOS_VOLUMES = "/Volumes"
MOUNT_TIMEOUT = 120.0
LINUX_PACKAGES = "gvfs-backends (gio mount, as GNOME/KDE do) or cifs-utils (mount -t cifs)"


@dataclass(frozen=True)
class MountPlan:
    """How to mount one share on one OS: ``mount`` runs now, ``unmount`` on ``--leave`` (made
    again from the same facts); with no ``mount`` steps, ``manual`` says what to do instead."""

    share: str
    where: str
    """The share's address as this OS's file manager shows it."""
    mount: tuple[Step, ...] = ()
    unmount: tuple[Step, ...] = ()
    password_on_stdin: bool = False
    manual: tuple[str, ...] = ()

    @property
    def automatic(self) -> bool:
        return bool(self.mount)


def mount_plan(
    os_: OS, *, hub: str, user: str, share: str = MOUNT_SHARE, gio: str | None = None
) -> MountPlan:
    """The plan for ``os_``; on Linux ``gio`` is the gio binary found here (None: not here)."""
    if os_ is OS.MACOS:
        url = f"smb://{user}@{hub}/{share}"
        return MountPlan(
            share,
            url,
            mount=(Step(f"opening {url} in Finder", ("open", url), admin=False),),
            unmount=(
                Step(
                    f"unmounting {MACOS_VOLUMES}/{share}",
                    ("diskutil", "unmount", f"{MACOS_VOLUMES}/{share}"),
                    admin=False,
                    check=False,
                ),
            ),
        )
    if os_ is OS.WINDOWS:
        unc = f"\\\\{hub}\\{share}"
        return MountPlan(
            share,
            unc,
            mount=(
                Step(
                    f"connecting {unc}",
                    ("net", "use", unc, "*", f"/user:{user}", "/persistent:no"),
                    admin=False,
                ),
            ),
            unmount=(
                Step(
                    f"disconnecting {unc}",
                    ("net", "use", unc, "/delete", "/y"),
                    admin=False,
                    check=False,
                ),
            ),
            password_on_stdin=True,
        )
    url = f"smb://{SMB_DOMAIN};{user}@{hub}/{share}"
    if gio is None:
        return MountPlan(
            share,
            f"smb://{user}@{hub}/{share}",
            manual=(
                f"no gio here to mount {share} with: install {LINUX_PACKAGES}, then run",
                f"  gio mount 'smb://{SMB_DOMAIN};{user}@{hub}/{share}'",
                f"  or: sudo mount -t cifs //{hub}/{share} /mnt/{share} "
                f"-o username={user},domain={SMB_DOMAIN},uid=$(id -u),gid=$(id -g)",
            ),
        )
    return MountPlan(
        share,
        url,
        mount=(Step(f"mounting {url}", (gio, "mount", url), admin=False),),
        unmount=(Step(f"unmounting {url}", (gio, "mount", "-u", url), admin=False, check=False),),
        password_on_stdin=True,
    )


def should_mount(choice: bool | None, *, interactive: bool, ask: Callable[[str], bool]) -> bool:
    """``--mount``/``--no-mount`` decide; else a person at a terminal is asked (default no);
    a run without one (a script, CI) never waits for an answer and does not mount."""
    if choice is not None:
        return choice
    if not interactive:
        return False
    return ask(f"Mount the {MOUNT_SHARE} share now?")


@dataclass(frozen=True)
class MountResult:
    mounted: bool
    reason: str = ""
    """Why not (one line, the password scrubbed), when not mounted."""


def read_password(path: Path) -> str:
    return path.read_text(encoding="utf-8").rstrip("\r\n")


def run_mount(plan: MountPlan, password_file: Path) -> MountResult:
    """Run the plan's mount steps; a failure is a reason, not an error (join itself worked)."""
    secret = read_password(password_file) if plan.password_on_stdin else ""
    for step in plan.mount:
        try:
            result = subprocess.run(
                list(step.argv),
                input=f"{secret}\n" if plan.password_on_stdin else "",
                capture_output=True,
                text=True,
                timeout=MOUNT_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return MountResult(False, f"{step.what} did not finish in {MOUNT_TIMEOUT:.0f} s")
        except OSError as exc:
            return MountResult(False, f"{step.what} failed: {exc.strerror}")
        if result.returncode != 0:
            lines = [ln.strip() for ln in (result.stderr + result.stdout).splitlines()]
            lines = [ln for ln in lines if ln and not ln.endswith(":")]  # prompts ("Password:")
            reason = lines[-1] if lines else f"exit {result.returncode}"
            if secret:
                reason = reason.replace(secret, "***")
            return MountResult(False, f"{step.what} failed: {reason}")
    return MountResult(True)


def mount_report(os_: OS, plan: MountPlan, result: MountResult, password_file: str) -> list[str]:
    """What to tell the person after the mount offer was taken."""
    if not plan.automatic:
        return list(plan.manual)
    if not result.mounted:
        lines = [f"could not mount {plan.share}: {result.reason}"]
        if os_ is OS.LINUX:
            lines.append(f"gio mounts smb:// in a desktop session with {LINUX_PACKAGES}")
        return [*lines, "the lines above still reach it by hand"]
    if result.reason:
        return [f"{plan.share}: {result.reason} ({plan.where})"]
    if os_ is OS.MACOS:
        return [
            f"Finder is mounting {plan.where} under {MACOS_VOLUMES}/{plan.share}: it asks for "
            f"the password (in {password_file}) and can keep it in your Keychain",
        ]
    if os_ is OS.WINDOWS:
        return [f"connected {plan.where}: Explorer and your programs open it without asking"]
    return [f"mounted {plan.where}: your file manager shows it ('gio mount -l' lists it)"]


def mount_share(joined: Joined, *, gio: str | None = None) -> tuple[MountPlan, MountResult]:
    """Mount the farm share the way this OS does, recording in join.json first that it is
    mounted, so --leave undoes even a mount that half happened. ``gio``: Linux's gio binary
    (default: the one on PATH)."""
    state = joined.state
    plan = mount_plan(state.os, hub=state.hub_overlay_ip, user=state.smb_user, gio=_gio(state, gio))
    if not plan.automatic:
        return plan, MountResult(False)
    if plan.where in state.mounted:
        return plan, MountResult(True, "already mounted by an earlier join")
    state.mounted.append(plan.where)
    save_state(joined.paths, state)
    result = run_mount(plan, joined.paths.smb_password)
    if not result.mounted:
        state.mounted.remove(plan.where)
        save_state(joined.paths, state)
    return plan, result


def _gio(state: JoinState, gio: str | None) -> str | None:
    return shutil.which("gio") if state.os is OS.LINUX and gio is None else gio


def unmount_steps(state: JoinState, *, gio: str | None = None) -> dict[str, tuple[Step, ...]]:
    """How to unmount what join.json says is mounted, by address: the unmount of this OS's
    own mount plan for each share, made again here (join.json holds no commands to run)."""
    steps = {}
    for share in state.shares:
        plan = mount_plan(
            state.os,
            hub=state.hub_overlay_ip,
            user=state.smb_user,
            share=share,
            gio=_gio(state, gio),
        )
        if plan.where in state.mounted:
            steps[plan.where] = plan.unmount
    return steps


def unmount_shares(
    state: JoinState, paths: JoinPaths, say: Say, *, gio: str | None = None
) -> list[str]:
    """Unmount what join mounted (best effort: a share the person already ejected is fine);
    returns what was unmounted."""
    if not state.mounted:
        return []
    planned = unmount_steps(state, gio=gio)
    for where in state.mounted:
        for step in planned.get(where, ()):
            say(step.what)
            run_step(step, Elevation())
        if where not in planned:
            say(f"farmhand cannot unmount {where} here: unmount it yourself")
    done = [f"the mount of {where}" for where in state.mounted if where in planned]
    state.mounted = []
    save_state(paths, state)
    return done
