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

from farmhand.deploy.tasks.installers import verified
from farmhand.model.distro import Distro, Family
from farmhand.model.paths import INSTALLERS, LOCAL_CACHE, OLD_INSTALLERS, QUEUE_ETC
from farmhand.queue import needed
from farmhand.queue.artifacts import BLENDER, DEADLINE
from farmhand.queue.deadline import REPOSITORY_DATA
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
    for artifact in needed(_any_plan(farm).with_settings(render_manager="deadline"), ALMA9):
        (folder / artifact.filename).write_text(f"stand-in for {artifact.filename}\n")
        sums[artifact.key] = {"sha256": stand_in_sha256(artifact)}
    paths = {}
    for role, bundle in open_bundles(farm).items():
        # Deadline's deploys (Slurm's, the default, are in tests/test_deploy_facts.py).
        plan = bundle.plan.with_settings(
            nebula_sha256=NEBULA_SHA256, artifacts=sums, render_manager="deadline"
        )
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
    # The cache is root's, outside the shares; workers get root-owned 0644 copies of it.
    for artifact in needed(_plan_of(plan), ALMA9):
        upload = plan.op(f"Installers cache: {artifact.filename}")
        assert any(f"chown root:root {artifact.cached}" in c for c in upload.shell), upload
        assert any(f"chmod 600 {artifact.cached}" in c for c in upload.shell), upload
        publish = plan.op(f"Installers share: publish {artifact.filename}").shell
        assert publish[0] == verified(artifact.cached, stand_in_sha256(artifact))
        assert publish[1].startswith(f"install -m 644 -o root -g root {artifact.cached} ")
        assert publish[2].endswith(f" {artifact.published}")
    assert plan.op(f"Old installers folder {OLD_INSTALLERS} removed")
    # The Repository's code is root's and read-only to every farm account; its data is theirs.
    repository = plan.op("Deadline Repository: code root's").shell
    assert repository[:2] == [
        "chown -R root:root /srv/farmhand/queue",
        "chmod -R u+rwX,go+rX,go-w /srv/farmhand/queue",
    ]
    data = " ".join(f"/srv/farmhand/queue/{name}" for name in REPOSITORY_DATA)
    assert f"chown -R farmhand:farmhand-workers {data}" in repository
    for code in ("bin", "plugins", "scripts", "events", "custom", "settings"):
        assert code not in REPOSITORY_DATA
    assert not plan.has("chown -R farmhand:farmhand /srv/farmhand/queue")
    installer = plan.ops.index(plan.op("Deadline Repository into the queue share"))
    assert plan.ops.index(plan.op("Deadline Repository: code root's")) > installer
    assert_root_uses_only_root_only_copies(plan)
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
    # From the hub's read-only installers share, into the worker's root-only folder.
    assert f"'smb://10.87.0.1/installers/{DEADLINE.filename}' {DEADLINE.local} " in text
    assert f"'smb://10.87.0.1/installers/{BLENDER.filename}' {BLENDER.local} " in text  # no pkg
    assert "/farm/installers" not in text
    assert_root_uses_only_root_only_copies(plan)
    assert "initscripts" in text
    assert "file" in text


ROOT_ONLY = (f"{INSTALLERS}/", f"{LOCAL_CACHE}/")
"""The folders root unpacks and runs artifacts from: root's alone, 0700."""


def assert_root_uses_only_root_only_copies(plan: Any) -> None:
    """Every unpack (tar) and installer run takes a file from a root-only folder, right after
    checking that very file's sha256; those folders are made 0700 root first."""
    for folder in ROOT_ONLY:
        if any(folder in line for line in plan.shell):
            name = f"Root-only artifacts folder {folder.rstrip('/')} (0700)"
            made = [op.shell for op in plan.ops if name in op.name]
            assert made, f"no operation makes {folder} root's"
            assert all(f"chmod 700 {folder.rstrip('/')}" in shell for shell in made)
            assert all(f"chown root:root {folder.rstrip('/')}" in shell for shell in made)
    used = 0
    for op in plan.ops:
        for i, line in enumerate(op.shell):
            if not line.startswith("tar "):
                continue
            archive = line.split(" -xf ", 1)[1].split()[0] if " -xf " in line else ""
            archive = archive or line.split(" -xzf ", 1)[1].split()[0]
            assert archive.startswith(ROOT_ONLY), line
            assert i > 0, f"{op.name}: no sha256 check before {line}"
            assert op.shell[i - 1].endswith("| sha256sum -c --quiet"), op.name
            assert f"  {archive}" in op.shell[i - 1], op.name
            used += 1
    for line in plan.shell:
        for word in line.split():
            if word.endswith("-installer.run"):  # what root runs: unpacked from a checked tar
                assert word.startswith(f"{LOCAL_CACHE}/"), line
    assert "/srv/farmhand" not in " ".join(
        line for line in plan.shell if line.startswith(("tar ", "echo "))
    )
    assert used, "the deploy unpacked nothing"


def stand_in_sha256(artifact: Any) -> str:
    return hashlib.sha256(f"stand-in for {artifact.filename}\n".encode()).hexdigest()


def _plan_of(plan: Any) -> Any:
    return (
        __import__("farmhand.keystore.plan", fromlist=["new_plan"])
        .new_plan("x")
        .with_settings(render_manager="deadline")
    )
