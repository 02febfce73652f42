"""Running nebula as a service of the OS: systemd, launchd or nebula's own Windows service.

Each backend is a plan of plain commands (``Step``) plus the files they install, so what runs
on Linux here is exactly what the tests check for macOS and Windows, command by command.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from farmhand.hostfiles.base import render_template
from farmhand.join.commands import Step
from farmhand.join.platforms import OS

SYSTEMD_UNIT = "farmhand-join.service"
SYSTEMD_PATH = f"/etc/systemd/system/{SYSTEMD_UNIT}"
LAUNCHD_LABEL = "farmhand.join"
LAUNCHD_PLIST = f"/Library/LaunchDaemons/{LAUNCHD_LABEL}.plist"
LAUNCHD_LOG = "/Library/Logs/farmhand-join.log"
WINDOWS_SERVICE = "Nebula"
"""The name nebula's ``-service install`` registers (fixed by nebula itself)."""


@dataclass(frozen=True)
class StagedFile:
    """A file join writes into its own folder, for a step to install (e.g. the unit)."""

    name: str
    content: bytes
    mode: int = 0o644


@dataclass(frozen=True)
class ServicePlan:
    description: str
    files: tuple[StagedFile, ...] = ()
    install: tuple[Step, ...] = ()
    remove: tuple[Step, ...] = ()
    installs: tuple[str, ...] = field(default=())
    """Paths outside join's folder the service puts on the machine (removed on leave)."""


def service_plan(
    os_: OS, *, nebula: str, config: str, join_dir: str, farm: str, boss: str
) -> ServicePlan:
    """How to run ``nebula -config CONFIG`` as a service on ``os_``."""
    sep = os_.sep
    if os_ is OS.LINUX:
        staged = f"{join_dir}{sep}{SYSTEMD_UNIT}"
        unit = render_template(
            "systemd/farmhand-join.service.j2",
            farm=farm,
            boss=boss,
            nebula=nebula.replace("%", "%%"),
            config=config.replace("%", "%%"),
        )
        return ServicePlan(
            f"systemd unit {SYSTEMD_UNIT}",
            files=(StagedFile(SYSTEMD_UNIT, unit),),
            install=(
                Step(f"installing {SYSTEMD_PATH}", ("install", "-m", "0644", staged, SYSTEMD_PATH)),
                Step("reloading systemd", ("systemctl", "daemon-reload")),
                Step(f"starting {SYSTEMD_UNIT}", ("systemctl", "enable", "--now", SYSTEMD_UNIT)),
            ),
            remove=(
                Step(
                    f"stopping {SYSTEMD_UNIT}",
                    ("systemctl", "disable", "--now", SYSTEMD_UNIT),
                    check=False,
                ),
                Step(f"removing {SYSTEMD_PATH}", ("rm", "-f", SYSTEMD_PATH)),
                Step("reloading systemd", ("systemctl", "daemon-reload"), check=False),
                Step(
                    f"forgetting {SYSTEMD_UNIT}",
                    ("systemctl", "reset-failed", SYSTEMD_UNIT),
                    check=False,
                ),
            ),
            installs=(SYSTEMD_PATH,),
        )
    if os_ is OS.MACOS:
        staged = f"{join_dir}{sep}{LAUNCHD_LABEL}.plist"
        plist = render_template(
            "launchd/farmhand-join.plist.j2",
            farm=farm,
            boss=boss,
            label=LAUNCHD_LABEL,
            nebula=nebula,
            config=config,
            log=LAUNCHD_LOG,
        )
        return ServicePlan(
            f"launchd daemon {LAUNCHD_LABEL}",
            files=(StagedFile(f"{LAUNCHD_LABEL}.plist", plist),),
            install=(
                Step(
                    f"installing {LAUNCHD_PLIST}",
                    ("install", "-m", "0644", "-o", "root", "-g", "wheel", staged, LAUNCHD_PLIST),
                ),
                Step(
                    f"starting {LAUNCHD_LABEL}", ("launchctl", "bootstrap", "system", LAUNCHD_PLIST)
                ),
            ),
            remove=(
                Step(
                    f"stopping {LAUNCHD_LABEL}",
                    ("launchctl", "bootout", f"system/{LAUNCHD_LABEL}"),
                    check=False,
                ),
                Step(f"removing {LAUNCHD_PLIST}", ("rm", "-f", LAUNCHD_PLIST, LAUNCHD_LOG)),
            ),
            installs=(LAUNCHD_PLIST, LAUNCHD_LOG),
        )
    return ServicePlan(
        f"Windows service {WINDOWS_SERVICE!r} (nebula -service)",
        install=(
            Step(
                f"installing the {WINDOWS_SERVICE} service",
                (nebula, "-service", "install", "-config", config),
            ),
            Step(f"starting the {WINDOWS_SERVICE} service", (nebula, "-service", "start")),
        ),
        remove=(
            Step(
                f"stopping the {WINDOWS_SERVICE} service", (nebula, "-service", "stop"), check=False
            ),
            Step(f"removing the {WINDOWS_SERVICE} service", (nebula, "-service", "uninstall")),
        ),
    )
