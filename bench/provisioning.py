"""Parts 1 and 2 of the lab benchmark: ``lab up`` timed step by step, and no-change re-deploys
of a host, with their report tables; apart from the Nebula measurements, which need a lab up."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.measure import say
from farmhand.deploy.runner import DeployReport
from farmhand.keystore.bundle import bundle_filename
from farmhand.keystore.plan import Role
from farmhand.lab import provision
from farmhand.lab.farm import LabFarm, worker_name


@dataclass
class Step:
    """One timed step of ``lab up``, as its report line shows it."""

    label: str
    seconds: float
    detail: str = ""


@dataclass
class UpResult:
    """``lab up``'s steps, then its proof checks, timed apart from the steps."""

    steps: list[Step]
    checks_seconds: float
    checks_passed: int
    checks_failed: list[str]

    @property
    def total(self) -> float:
        return sum(s.seconds for s in self.steps)


def _deploy_detail(report: DeployReport) -> str:
    hosts = list(report.hosts.values())
    operations = sum(h.operations for h in hosts)
    changed = sum(h.changed for h in hosts)
    per = f"{len(hosts)} hosts, " if len(hosts) > 1 else ""
    return f"{per}{operations} operations, {changed} changed"


def lab_up(farm: LabFarm, workers: int) -> UpResult:
    """What ``farmhand lab up`` does (farm.up, then provision.provision, then prove), timed."""
    steps: list[Step] = []
    started = time.monotonic()
    farm.up(workers=workers, bosses=1)
    hosts = len(farm.records())
    steps.append(Step(f"boot: underlay + {hosts} containers until ssh", time.monotonic() - started))

    # provision.provision, step by step, so each step gets its own time.
    started = time.monotonic()
    provision.ensure_keys(farm, max(workers, 1), say)
    steps.append(Step(f"keygen: CA, hub, {workers} workers, boss1", time.monotonic() - started))
    names = [worker_name(n) for n in range(1, workers + 1)]
    for label, role, targets, bundle in (
        ("deploy hub", Role.HUB, ["hub"], ""),
        (f"deploy {workers} workers", Role.WORKER, names, ""),
        ("deploy boss1", Role.BOSS, ["boss1"], bundle_filename(Role.BOSS, "boss1")),
    ):
        say(f"{label}...")
        started = time.monotonic()
        report = provision.deploy_role(farm, role, targets, bundle)
        steps.append(Step(label, time.monotonic() - started, _deploy_detail(report)))

    say("lab up's proof checks...")
    started = time.monotonic()
    checks = provision.prove(farm, say)
    return UpResult(
        steps,
        time.monotonic() - started,
        sum(c.passed for c in checks),
        [c.claim + (f" ({c.detail})" if c.detail else "") for c in checks if not c.passed],
    )


@dataclass
class Redeploy:
    """One re-deploy of one host: its time and what it changed (0 is the target)."""

    host: str
    seconds: float
    operations: int
    changed: int
    changed_ops: list[str]


def redeploy(farm: LabFarm, role: Role, host: str) -> Redeploy:
    """The real deploy of ``role`` on ``host`` again, timed; also proves a restore."""
    started = time.monotonic()
    report = provision.deploy_role(farm, role, [host])
    seconds = time.monotonic() - started
    result = report.hosts[host]
    return Redeploy(host, seconds, result.operations, result.changed, result.changed_ops)


def print_up(up: UpResult, workers: int) -> None:
    """Report section 1: ``lab up`` step by step."""
    print(f"\n1. lab up: 1 hub, {workers} workers, 1 boss, base image cached")
    header = f"   {'step':<46}  {'seconds':>7}  detail"
    print(header)
    print("   " + "-" * (len(header) - 3 + 30))
    for step in up.steps:
        print(f"   {step.label:<46}  {step.seconds:>7.1f}  {step.detail}")
    print("   " + "-" * (len(header) - 3 + 30))
    print(f"   {'lab up (boot + keygen + deploys)':<46}  {up.total:>7.1f}")
    checks = up.checks_passed + len(up.checks_failed)
    print(
        f"   {'then: the proof checks `lab up` prints':<46}  {up.checks_seconds:>7.1f}  "
        f"{up.checks_passed}/{checks} passed"
    )
    for claim in up.checks_failed:
        print(f"      FAILED: {claim}")


def print_redeploys(runs: list[Redeploy]) -> None:
    """Report section 2: each re-deploy, with any operation it changed."""
    print("\n2. no-change re-deploy of the hub (the real hub deploy, run again)")
    print(f"   {'run':>3}  {'seconds':>7}  {'operations':>10}  {'changed':>7}")
    for n, run in enumerate(runs, 1):
        print(f"   {n:>3}  {run.seconds:>7.1f}  {run.operations:>10}  {run.changed:>7}")
        for op in run.changed_ops:
            print(f"        changed: {op}")
