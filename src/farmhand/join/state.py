"""What a join recorded in join.json, so a later run (rejoin, status, ``--leave``) knows what
this machine joined and what to undo, and what a finished join hands back (``Joined``).

join.json lives in the user's folder, so anything in it may have been changed by any program
the user runs. It therefore holds facts only (which farm, which mode, whether a service or the
package was installed, which shares were mounted) and no command lines: ``leave`` derives the
commands that undo a join from these facts and farmhand's own fixed places. A join.json of
format 1 (which also held command lines) still loads; those are never read.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from farmhand.join import JoinError
from farmhand.join.admin import Elevation
from farmhand.join.paths import JoinPaths
from farmhand.join.platforms import OS
from farmhand.join.probe import Probe

Mode = Literal["service", "foreground"]
STATE_FORMAT = 2
READABLE_FORMATS = (1, 2)
MODES = ("service", "foreground")


@dataclass
class JoinState:
    """join.json: who joined which farm, how nebula runs, and what join installed."""

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
    package: str = ""
    """The distribution package join installed (only ever ``nebula``), for --leave to remove."""
    service_installed: bool = False
    joined_at: int = field(default_factory=lambda: int(time.time()))
    mounted: list[str] = field(default_factory=list)
    """Shares join mounted (their addresses), for --leave to unmount."""

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
            "package": self.package,
            "service_installed": self.service_installed,
            "joined_at": self.joined_at,
            "mounted": self.mounted,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JoinState:
        if data.get("format") not in READABLE_FORMATS:
            raise ValueError(f"unknown format {data.get('format')!r}")
        if data["mode"] not in MODES:
            raise ValueError(f"unknown mode {data['mode']!r}")
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
            package=str(data.get("package", "")),
            service_installed=bool(data.get("service_installed", False)),
            joined_at=int(data.get("joined_at", 0)),
            mounted=[str(m) for m in data.get("mounted", [])],
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
