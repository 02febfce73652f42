"""The render queue's deploys on EL (SELinux, firewalld) against fact fixtures.

Uses the harness of tests/test_deploy_facts.py (support/pyinfra_harness.py and its fixtures): the
operations a hub and a worker deploy would run on AlmaLinux 9 with a fresh host's facts, with
pinned stand-in artifact files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest

from farmhand.model.distro import Distro, Family
from farmhand.model.paths import QUEUE_ETC
from farmhand.queue import needed
from farmhand.queue.artifacts import BLENDER, DEADLINE
from support.pyinfra_harness import BUNDLE_OF, NEBULA_SHA256, Facts, open_bundles
from support.session import Farm

ALMA9 = Distro("almalinux", 9, Family.EL)


class QueueFacts(Facts):
    def command(self, command: str) -> str | None:
        if command.startswith("cat /var/lib/farmhand/"):
            return ""
        return super().command(command)


@pytest.fixture(scope="module")
def queue_artifacts(
    farm: Farm, tasks: Any, artifacts: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Path]]:
    """Stand-in files for every artifact an EL farm needs, pinned in preloaded bundles."""
    _, context = tasks
    folder = tmp_path_factory.mktemp("queue-artifacts")
    shutil.copy(artifacts / "nebula-linux-amd64.tar.gz", folder)
    sums = {}
    for artifact in needed(dataclasses.replace(_any_plan(farm)), ALMA9):
        data = f"stand-in for {artifact.filename}\n".encode()
        (folder / artifact.filename).write_bytes(data)
        sums[artifact.key] = {"sha256": hashlib.sha256(data).hexdigest()}
    paths = {}
    for role, bundle in open_bundles(farm).items():
        plan = bundle.plan.with_settings(nebula_sha256=NEBULA_SHA256, artifacts=sums)
        pinned = dataclasses.replace(bundle, plan=plan)
        paths[role] = Path(shutil.copy(farm.root / BUNDLE_OF[role], folder / f"q-{role}.age"))
        context.preload(paths[role], pinned)
    return folder, paths


def _any_plan(farm: Farm) -> Any:
    return next(iter(open_bundles(farm).values())).plan


def test_el_hub_labels_persistently_and_installs_the_queue(
    deploy: Any, queue_artifacts: tuple[Path, dict[str, Path]]
) -> None:
    folder, paths = queue_artifacts
    plan = deploy(
        "hub",
        "almalinux-9",
        QueueFacts("almalinux-9"),
        farmhand_queue=True,
        farmhand_bundle=str(paths["hub"]),
        farmhand_artifacts=str(folder),
    )
    text = plan.text()
    mongod = "/opt/farmhand/mongodb-linux-x86_64-rhel90-6.0.16/bin(/.*)?"
    assert f"semanage fcontext -a -t bin_t '{mongod}'" in text
    assert "semanage fcontext -a -t bin_t '/opt/Thinkbox/Deadline10/bin(/.*)?'" in text
    assert "[^/]" not in text, "pyinfra's mapping fact would never find a pattern"
    assert "restorecon -R /opt/farmhand" in text
    # Labelled before use: the mappings come first, and each unpack relabels what it made.
    names = [op.name for op in plan.ops]
    mapping = names.index(next(n for n in names if f"SELinux: {mongod} is bin_t" in n))
    unpack = plan.op("Unpack mongodb-linux-x86_64-rhel90")
    assert mapping < names.index(unpack.name)
    top = "/opt/farmhand/mongodb-linux-x86_64-rhel90-6.0.16"
    assert unpack.shell[-1] == f"! selinuxenabled 2>/dev/null || restorecon -R {top}"
    assert "chcon" not in text
    uploads = plan.uploads()
    for artifact in needed(_plan_of(plan), ALMA9):
        assert artifact.cached in uploads, artifact.filename
    assert f"{QUEUE_ETC}/mongod.conf" in uploads
    assert "mongodb-linux-x86_64-rhel90" in text  # the EL 9 build is unpacked
    assert "--dbpassword env:FARMHAND_QUEUE_DB_PASSWORD" in text
    # No secret ever on a command line.
    assert f"{QUEUE_ETC}/db.password" in uploads
    secret = plan.upload_bytes(f"{QUEUE_ETC}/db.password").strip().decode()
    assert secret not in text


def test_el_worker_takes_artifacts_from_the_hub(
    deploy: Any, queue_artifacts: tuple[Path, dict[str, Path]]
) -> None:
    folder, paths = queue_artifacts
    plan = deploy(
        "worker",
        "almalinux-9",
        QueueFacts("almalinux-9"),
        farmhand_queue=True,
        farmhand_bundle=str(paths["worker"]),
        farmhand_artifacts=str(folder),  # nebula's (EL); the queue's come from the hub
    )
    text = plan.text()
    assert f"smb://10.87.0.1/farm/installers/{DEADLINE.filename}" in text
    assert f"smb://10.87.0.1/farm/installers/{BLENDER.filename}" in text  # no EL package
    assert "initscripts" in text
    assert "file" in text


def _plan_of(plan: Any) -> Any:
    return (
        __import__("farmhand.keystore.plan", fromlist=["new_plan"])
        .new_plan("x")
        .with_settings(render_manager="deadline")
    )
