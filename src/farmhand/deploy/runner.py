"""Start the deploy engine for one role and a set of targets, follow its events, report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from farmhand.deploy.target import Target
from farmhand.errors import FarmhandError
from farmhand.keystore.plan import Role, validate_hub_address
from farmhand.passphrase import ENV_VAR as PASSPHRASE_ENV

Event = dict[str, Any]


class DeployError(FarmhandError):
    """A deploy did not complete on every host."""


@dataclass
class HostResult:
    name: str
    connected: bool = False
    connect_error: str = ""
    failed: bool = True
    changed: int = 0
    unchanged: int = 0
    errors: int = 0
    operations: int = 0
    failed_op: str = ""
    output: list[str] = field(default_factory=list)
    changed_ops: list[str] = field(default_factory=list)


@dataclass
class DeployReport:
    role: Role
    hosts: dict[str, HostResult]
    fatal: str = ""
    log_tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.fatal and all(not h.failed for h in self.hosts.values())

    @property
    def changed(self) -> int:
        return sum(h.changed for h in self.hosts.values())

    def failure_message(self) -> str:
        for result in self.hosts.values():
            if result.failed_op:
                said = [
                    line.split("] ", 1)[-1]
                    for line in result.output
                    if "Error: executed" not in line and "host key" not in line.lower()
                ]
                detail = f": {said[-1]}" if said else ""
                return f"{result.name}: operation '{result.failed_op}' failed{detail}"
        for result in self.hosts.values():
            if not result.connected:
                return f"{result.name}: {result.connect_error or 'could not connect'}"
        return self.fatal or "the deploy failed"


def engine_environment() -> dict[str, str]:
    """The engine's environment: ours without the passphrase. The engine gets the passphrase
    on stdin; everything it runs (apt's maintainer scripts, installers on @local) inherits its
    environment and must never see it."""
    return {k: v for k, v in os.environ.items() if k != PASSPHRASE_ENV}


def run_deploy(
    role: Role,
    bundle: Path,
    passphrase: str,
    targets: list[Target],
    *,
    data: dict[str, Any] | None = None,
    netns: str = "",
    on_event: Callable[[Event], None] | None = None,
) -> DeployReport:
    """Run the ``role`` deploy on ``targets``; ``netns`` runs it inside a network namespace."""
    if not targets:
        raise FarmhandError("no targets to deploy to")
    data = dict(data or {})
    if "farmhand_hub_address" in data:  # checked here, before any host is contacted
        data["farmhand_hub_address"] = validate_hub_address(str(data["farmhand_hub_address"]))
    request = {
        "role": role.value,
        "bundle": str(bundle.resolve()),
        "passphrase": passphrase,
        "data": {**data, "farmhand_bundle": str(bundle.resolve())},
        "targets": [
            {"name": name, "data": host_data}
            for name, host_data in (t.inventory_entry() for t in targets)
        ],
    }
    argv = [sys.executable, "-m", "farmhand.deploy.engine"]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    report = DeployReport(role=role, hosts={t.label: HostResult(t.label) for t in targets})
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=engine_environment(),
        )
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write(json.dumps(request))
        proc.stdin.close()
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            _apply(report, event)
            if on_event is not None:
                on_event(event)
        proc.wait()
        log.seek(0)
        report.log_tail = log.read().splitlines()[-20:]
    if proc.returncode < 0:
        report.fatal = f"the deploy engine was killed (signal {-proc.returncode})"
    elif proc.returncode != 0 and report.ok:
        last = next((line for line in reversed(report.log_tail) if line.strip()), "")
        report.fatal = f"the deploy engine exited with status {proc.returncode}" + (
            f": {last.strip()}" if last else ""
        )
    return report


def _apply(report: DeployReport, event: Event) -> None:
    kind = event.get("event")
    host = report.hosts.get(str(event.get("host", "")))
    if kind == "fatal":
        report.fatal = str(event.get("message", "deploy failed"))
    elif kind == "connected" and host is not None:
        host.connected = bool(event.get("ok"))
        host.connect_error = str(event.get("error", ""))
    elif kind == "planned" and host is not None:
        host.operations = int(event.get("operations", 0))
    elif kind == "op" and host is not None and event.get("status") == "error":
        host.failed_op = host.failed_op or str(event.get("op", ""))
        host.output = [str(line) for line in event.get("output", [])]
    elif kind == "done":
        for name, summary in dict(event.get("hosts", {})).items():
            result = report.hosts.setdefault(name, HostResult(name))
            result.connected = bool(summary.get("connected"))
            result.failed = bool(summary.get("failed"))
            result.changed = int(summary.get("changed", 0))
            result.unchanged = int(summary.get("unchanged", 0))
            result.errors = int(summary.get("errors", 0))
            result.operations = int(summary.get("operations", 0))
            result.changed_ops = [str(op) for op in summary.get("changed_ops", [])]
