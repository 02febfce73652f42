"""Running nebula as a service of the OS: systemd, launchd or nebula's own Windows service.

Each backend is a plan of plain actions, so what runs on Linux here is exactly what the tests
check for macOS and Windows, command by command. Every file the service runs or reads is in
its root-owned place (``system``), and so are the unit and plist it is installed from; the
removal steps follow from the OS alone, so ``--leave`` needs nothing but the fact that a
service was installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from farmhand.hostfiles.base import expand_template
from farmhand.join.commands import Action, Step
from farmhand.join.platforms import OS
from farmhand.join.system import (
    LAUNCHD_LABEL,
    SYSTEMD_UNIT,
    ServiceBinary,
    StagedFile,
    SystemPaths,
    place_steps,
    remove_steps,
)

WINDOWS_SERVICE = "Nebula"
"""The name nebula's ``-service install`` registers (fixed by nebula itself)."""


@dataclass(frozen=True)
class ServicePlan:
    """``place`` puts the service's files in root's place, ``check`` runs ``nebula -test`` on
    them as root, ``start`` installs and starts the service; ``remove`` takes it all away."""

    description: str
    place: tuple[Action, ...] = ()
    check: Step | None = None
    start: tuple[Step, ...] = ()
    remove: tuple[Step, ...] = ()

    @property
    def install(self) -> tuple[Action, ...]:
        return (*self.place, *((self.check,) if self.check else ()), *self.start)


def service_description(os_: OS) -> str:
    if os_ is OS.LINUX:
        return f"systemd unit {SYSTEMD_UNIT}"
    if os_ is OS.MACOS:
        return f"launchd daemon {LAUNCHD_LABEL}"
    return f"Windows service {WINDOWS_SERVICE!r} (nebula -service)"


def _install_unit(system: SystemPaths, staged: str, *, group: str) -> Step:
    """Put the service definition where the init system reads it, root's and read-only."""
    return Step(
        f"installing {system.unit}",
        ("install", "-m", "0644", "-o", "root", "-g", group, staged, system.unit),
    )


def service_plan(
    os_: OS,
    system: SystemPaths,
    *,
    files: Sequence[StagedFile],
    binary: ServiceBinary,
    farm: str,
    boss: str,
) -> ServicePlan:
    """How to run ``nebula -config CONFIG`` as a service on ``os_``, with ``files`` (config,
    CA, certificate, key) and ``binary`` placed in ``system`` first."""
    nebula, config = binary.runs(system), system.config
    unit: list[StagedFile] = []
    start: tuple[Step, ...] = ()
    if os_ is OS.LINUX:
        text = expand_template(
            "join/farmhand-join.service.j2",
            farm=farm,
            boss=boss,
            nebula=nebula.replace("%", "%%"),
            config=config.replace("%", "%%"),
        )
        unit = [(SYSTEMD_UNIT, text, 0o644)]
        start = (
            _install_unit(system, system.file(SYSTEMD_UNIT), group="root"),
            Step("reloading systemd", ("systemctl", "daemon-reload")),
            Step(f"starting {SYSTEMD_UNIT}", ("systemctl", "enable", "--now", SYSTEMD_UNIT)),
        )
    elif os_ is OS.MACOS:
        name = f"{LAUNCHD_LABEL}.plist"
        text = expand_template(
            "join/farmhand-join.plist.j2",
            farm=farm,
            boss=boss,
            label=LAUNCHD_LABEL,
            nebula=nebula,
            config=config,
            log=system.log,
        )
        unit = [(name, text, 0o644)]
        start = (
            _install_unit(system, system.file(name), group="wheel"),
            Step(f"starting {LAUNCHD_LABEL}", ("launchctl", "bootstrap", "system", system.unit)),
        )
    else:
        start = (
            Step(
                f"installing the {WINDOWS_SERVICE} service",
                (nebula, "-service", "install", "-config", config),
            ),
            Step(f"starting the {WINDOWS_SERVICE} service", (nebula, "-service", "start")),
        )
    return ServicePlan(
        service_description(os_),
        place=place_steps(system, [*files, *unit], binary),
        check=Step("checking the config (nebula -test)", (nebula, "-test", "-config", config)),
        start=start,
        remove=service_removal(os_, system),
    )


def service_removal(os_: OS, system: SystemPaths) -> tuple[Step, ...]:
    """Stop and remove the service, then its files: from the OS and farmhand's fixed places
    alone (nothing recorded in join.json, which the user can change, is run as root)."""
    stop: tuple[Step, ...]
    if os_ is OS.LINUX:
        stop = (
            Step(
                f"stopping {SYSTEMD_UNIT}",
                ("systemctl", "disable", "--now", SYSTEMD_UNIT),
                check=False,
            ),
            Step(f"removing {system.unit}", ("rm", "-f", system.unit)),
            Step("reloading systemd", ("systemctl", "daemon-reload"), check=False),
            Step(
                f"forgetting {SYSTEMD_UNIT}",
                ("systemctl", "reset-failed", SYSTEMD_UNIT),
                check=False,
            ),
        )
    elif os_ is OS.MACOS:
        stop = (
            Step(
                f"stopping {LAUNCHD_LABEL}",
                ("launchctl", "bootout", f"system/{LAUNCHD_LABEL}"),
                check=False,
            ),
            Step(f"removing {system.unit}", ("rm", "-f", system.unit, system.log)),
        )
    else:
        stop = (
            Step(
                f"stopping the {WINDOWS_SERVICE} service",
                (system.nebula, "-service", "stop"),
                check=False,
            ),
            Step(
                f"removing the {WINDOWS_SERVICE} service", (system.nebula, "-service", "uninstall")
            ),
        )
    return (*stop, *remove_steps(system))
