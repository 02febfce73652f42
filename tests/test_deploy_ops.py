"""The deploy tasks' shared sequences (deploy/tasks/ops.py) and the rendered set they install.

Through the fake pyinfra harness (tests/support/pyinfra_harness.py): facts in, commands and
``_if`` conditions out.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from typing import Any

import pytest
from pyinfra.api.config import Config
from pyinfra.api.deploy import add_deploy
from pyinfra.api.inventory import Inventory
from pyinfra.api.state import State

from farmhand.deploy.tasks import deploy as farm_deploy
from farmhand.deploy.tasks import files as farm_files
from farmhand.deploy.tasks import ops
from farmhand.hostfiles.base import HostFile, HostFiles
from support.pyinfra_harness import NEBULA_ARCHIVE, ROLES, TARGET, Facts, Plan, simulate

UNIT = HostFile("/etc/systemd/system/demo.service", b"[Service]\nExecStart=/bin/true\n")
CONFIG = HostFile("/etc/demo.conf", b"setting = 1\n")
STAMP = "/var/lib/farmhand/demo.sha256"


class HostFacts(Facts):
    """A host where ``present`` files are in place as rendered and ``running`` units run."""

    def __init__(
        self,
        present: tuple[HostFile, ...] = (),
        running: tuple[str, ...] = (),
        stamp: str | None = None,
    ) -> None:
        super().__init__("debian-12")
        self.running = running
        self.stamp = stamp
        for f in present:
            self.files[("File", f.path)] = {"mode": int(f"{f.mode:o}"), "user": "root"}
            self.files[("File", f.path)]["group"] = "root"
            self.files[("Sha1File", f.path)] = hashlib.sha1(f.content).hexdigest()  # noqa: S324
            self.files[("Directory", f.path.rsplit("/", 1)[0])] = {"mode": 755}

    def get(self, cls: type, *args: Any, **kwargs: Any) -> Any:
        if cls.__name__ in ("SystemdStatus", "SystemdEnabled"):
            self.asked.append((cls.__name__, dict(kwargs)))
            return dict.fromkeys(self.running, True)
        return super().get(cls, *args, **kwargs)

    def command(self, command: str) -> str | None:
        if command == f"cat {STAMP} 2>/dev/null || true":
            return self.stamp
        return super().command(command)


@pytest.fixture
def run_ops(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Plan]:
    """``run_ops(body, facts)``: the operations ``body`` adds, "run" against ``facts``."""
    from pyinfra.api.host import Host

    def run(body: Callable[[], None], facts: Facts) -> Plan:
        monkeypatch.setattr(Host, "get_fact", lambda self, cls, *a, **kw: facts.get(cls, *a, **kw))
        inventory = Inventory(([(TARGET, {})], {}))
        state = State(inventory, Config())
        for each in inventory:
            state.activate_host(each)
        add_deploy(state, farm_deploy("ops under test")(body))
        return Plan(simulate(state, inventory.get_host(TARGET)), facts)

    return run


def demo_service() -> None:
    config = farm_files.install([CONFIG])
    ops.managed_service("demo", "demo.service", [UNIT], depends=config)


def test_managed_service_changed_unit_reloads_and_restarts(run_ops: Callable[..., Plan]) -> None:
    plan = run_ops(demo_service, HostFacts(present=(CONFIG,), running=("demo.service",)))
    assert plan.op("Install /etc/systemd/system/demo.service").uploads
    assert plan.op("Reload systemd units (demo)").shell == ["systemctl daemon-reload"]
    assert not plan.op("demo.service running and enabled").commands, "it runs already"
    restart = plan.op("Restart demo.service after its files changed")
    assert restart.ran
    assert restart.shell == ["systemctl restart demo.service"]


def test_managed_service_changed_config_restarts_without_a_daemon_reload(
    run_ops: Callable[..., Plan],
) -> None:
    plan = run_ops(demo_service, HostFacts(present=(UNIT,), running=("demo.service",)))
    assert plan.op("Install /etc/demo.conf").uploads
    assert not plan.op("Reload systemd units (demo)").ran
    assert plan.op("Restart demo.service after").shell == ["systemctl restart demo.service"]


def test_managed_service_unchanged_does_nothing(run_ops: Callable[..., Plan]) -> None:
    plan = run_ops(demo_service, HostFacts(present=(CONFIG, UNIT), running=("demo.service",)))
    assert plan.shell == []
    assert not any(op.uploads for op in plan.ops)
    assert not plan.op("Reload systemd units (demo)").ran
    assert not plan.op("Restart demo.service after").ran


def test_managed_service_just_started_is_not_restarted(run_ops: Callable[..., Plan]) -> None:
    plan = run_ops(demo_service, HostFacts())
    assert plan.op("Reload systemd units (demo)").ran
    started = plan.op("demo.service running and enabled").shell
    assert "systemctl start demo.service" in started
    assert "systemctl enable demo.service" in started
    assert not plan.op("Restart demo.service after").ran, "a start reads everything anew"
    order = plan.shell
    assert order.index("systemctl daemon-reload") < order.index("systemctl start demo.service")


def test_managed_service_reloads_instead_of_restarting(run_ops: Callable[..., Plan]) -> None:
    def body() -> None:
        ops.managed_service("demo", "demo.service", [UNIT], on_change="reload")

    plan = run_ops(body, HostFacts(running=("demo.service",)))
    assert plan.op("Reload demo.service after its files changed").shell == [
        "systemctl reload demo.service"
    ]
    quiet = run_ops(
        lambda: ops.managed_service("demo", "demo.service", [UNIT], on_change="nothing"),
        HostFacts(running=("demo.service",)),
    )
    assert not [op for op in quiet.ops if "after its files changed" in op.name]


def stamped() -> None:
    ops.once_per_digest("Demo step", STAMP, "d1g357", ["demo-tool --apply"])


def test_once_per_digest_runs_and_remembers(run_ops: Callable[..., Plan]) -> None:
    plan = run_ops(stamped, HostFacts())
    assert plan.op("Demo step").shell == [
        "demo-tool --apply",
        f"umask 077 && echo d1g357 > {STAMP} && chmod 600 {STAMP}",
    ]
    changed = run_ops(stamped, HostFacts(stamp="0ld\n"))
    assert changed.op("Demo step").shell[0] == "demo-tool --apply"


def test_once_per_digest_done_does_nothing(run_ops: Callable[..., Plan]) -> None:
    plan = run_ops(stamped, HostFacts(stamp="d1g357\n"))
    assert not [op for op in plan.ops if op.name == "Demo step"]
    assert plan.shell == []


def test_once_per_digest_keeps_stamps_in_the_state_folder() -> None:
    with pytest.raises(ValueError, match="/var/lib/farmhand"):
        ops.once_per_digest("Demo step", "/tmp/stamp", "d1g357", ["true"])


QUEUE_COMPONENTS = (
    "mongodb", "mongodb-user", "deadline-repository", "deadline-client", "flamenco",
    "munge", "slurm", "slurm-features", "jobs",
)  # fmt: skip
"""The render managers' own components (queue/deadline.py, queue/flamenco.py, queue/slurm.py
with its job service, queue/slurm_jobs.py)."""


@pytest.mark.parametrize("distro", ["almalinux-9", "debian-12"])
@pytest.mark.parametrize("role", ROLES)
def test_the_deploy_installs_exactly_the_rendered_files(
    role: str, distro: str, deploy: Callable[..., Plan], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What lands is what ``farmhand files`` shows: the deploy renders once (context.load) and
    every task installs from that set. The render queue's files are left to its own deploys
    (tests/test_queue_facts.py: the harness deploys with farmhand_queue=False)."""
    context = importlib.import_module("farmhand.deploy.tasks.context")
    seen: list[HostFiles] = []
    original = context.host_files

    def recorded(*args: Any, **kwargs: Any) -> HostFiles:
        seen.append(original(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(context, "host_files", recorded)
    plan = deploy(role, distro)
    assert len(seen) == 1, "the deploy renders the host once"
    (files,) = seen
    queue = {f.path for f in files.of("queue", *QUEUE_COMPONENTS)}
    expected = {f.path: f.content for f in files if not f.at_boot and f.path not in queue}
    uploads = {path: plan.upload_bytes(path) for path in plan.uploads() if path != NEBULA_ARCHIVE}
    assert sorted(uploads) == sorted(expected)
    assert uploads == expected
