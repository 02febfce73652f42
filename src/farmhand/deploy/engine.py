"""The deploy engine: a child process that runs pyinfra's API and reports JSON lines.

It runs apart from the CLI because pyinfra needs gevent's monkey-patching, which would change
threads and subprocesses under the rest of farmhand. The request (with the passphrase) comes on
stdin, never in argv; events go to stdout, one JSON object per line.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import contextlib
import json
import logging
import os
import re
import sys
from collections import deque
from pathlib import Path
from typing import IO, Any

from pyinfra.api.config import Config
from pyinfra.api.connect import connect_all
from pyinfra.api.deploy import add_deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.host import Host
from pyinfra.api.inventory import Inventory
from pyinfra.api.operations import run_ops
from pyinfra.api.state import (
    BaseStateCallback,
    State,
)

from farmhand.deploy.tasks import context, roles
from farmhand.errors import FarmhandError
from farmhand.keystore.bundle import open_bundle
from farmhand.keystore.plan import Role


class _Events:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def emit(self, **event: Any) -> None:
        self.stream.write(json.dumps(event) + "\n")
        self.stream.flush()


class _RecentLogs(logging.Handler):
    """The last warnings and errors pyinfra logged, to explain a failed operation."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: deque[str] = deque(maxlen=12)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _op_name(state: State, op_hash: str) -> str:
    names = state.op_meta[op_hash].names
    return sorted(names)[0] if names else op_hash


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _callbacks(
    events: _Events, logs: _RecentLogs, connect_errors: dict[str, str]
) -> type[BaseStateCallback]:
    class Callbacks(BaseStateCallback):
        @staticmethod
        def host_connect_error(state: State, host: Host, error: Exception) -> None:
            # pyinfra's own wording, e.g. "Could not connect ([Errno 111] Connection refused)".
            reason = _ANSI.sub("", str(error.args[0] if error.args else error)).strip()
            connect_errors[host.name] = reason[:1].lower() + reason[1:]

        @staticmethod
        def operation_host_success(
            state: State, host: Host, op_hash: str, retry_count: int = 0
        ) -> None:
            # Whether it changed anything is only final after the run: see the "done" event.
            events.emit(event="op", host=host.name, op=_op_name(state, op_hash), status="ok")

        @staticmethod
        def operation_host_error(
            state: State, host: Host, op_hash: str, retry_count: int = 0, max_retries: int = 0
        ) -> None:
            events.emit(
                event="op",
                host=host.name,
                op=_op_name(state, op_hash),
                status="error",
                output=list(logs.lines),
            )

    return Callbacks


def run(request: dict[str, Any], events: _Events) -> int:
    role = Role(request["role"])
    bundle_path = Path(request["bundle"])
    context.preload(bundle_path, open_bundle(bundle_path, request["passphrase"]))

    logs = _RecentLogs()
    logging.getLogger("pyinfra").addHandler(logs)
    logging.getLogger("pyinfra").setLevel(logging.INFO)
    hosts = [(t["name"], {**request["data"], **t["data"]}) for t in request["targets"]]
    inventory = Inventory((hosts, {}))
    config = Config()
    config.FAIL_PERCENT = 100
    state = State(inventory, config)
    connect_errors: dict[str, str] = {}
    state.add_callback_handler(_callbacks(events, logs, connect_errors)())
    state.should_raise_failed_hosts = lambda _state: False

    # Every host failing to connect raises; each is reported just below.
    with contextlib.suppress(PyinfraError):
        connect_all(state)
    for host in inventory:
        connected = host in state.activated_hosts
        events.emit(
            event="connected",
            host=host.name,
            ok=connected,
            error="" if connected else connect_errors.get(host.name, "could not connect"),
        )
    if not state.activated_hosts:
        events.emit(event="fatal", message="no target could be reached over SSH")
        return 1
    try:
        add_deploy(state, roles.ROLE_DEPLOYS[role])
    except FarmhandError as exc:
        events.emit(event="fatal", message=str(exc))
        return 1
    for host in state.activated_hosts:
        events.emit(event="planned", host=host.name, operations=len(state.ops[host]))
    try:
        run_ops(state)
    except PyinfraError as exc:
        events.emit(event="fatal", message=str(exc))
    summary = {}
    for host in inventory:
        ops = state.ops.get(host, {})
        metas = [o.operation_meta for o in ops.values()]
        done = [m for m in metas if m.is_complete()]
        changed_ops = [
            _op_name(state, op_hash)
            for op_hash, op in ops.items()
            if op.operation_meta.is_complete() and op.operation_meta.did_change()
        ]
        summary[host.name] = {
            "connected": host in state.activated_hosts,
            "failed": host in state.failed_hosts or host not in state.activated_hosts,
            "changed": sum(1 for m in done if m.did_succeed(False) and m.did_change()),
            "unchanged": sum(1 for m in done if m.did_succeed(False) and not m.did_change()),
            "errors": sum(1 for m in done if not m.did_succeed(False)),
            "operations": len(metas),
            "changed_ops": changed_ops,
        }
    events.emit(event="done", hosts=summary)
    return 1 if any(h["failed"] for h in summary.values()) else 0


def main() -> None:
    events = _Events(os.fdopen(os.dup(1), "w"))
    os.dup2(2, 1)  # anything else that prints goes to stderr, not into the event stream
    request = json.loads(sys.stdin.read())
    try:
        code = run(request, events)
    except FarmhandError as exc:
        events.emit(event="fatal", message=str(exc))
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
