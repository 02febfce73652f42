"""The fixtures of the fact-fixture deploy tests (tests/test_deploy_facts.py,
tests/test_queue_facts.py), on the harness of support/pyinfra_harness.py.

Registered once for every test module by ``pytest_plugins`` in tests/conftest.py; the bundles are
preloaded (``context.preload``), so no passphrase is needed.
"""

from __future__ import annotations

import dataclasses
import importlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api.config import Config
from pyinfra.api.deploy import add_deploy
from pyinfra.api.host import Host
from pyinfra.api.inventory import Inventory
from pyinfra.api.state import State

from farmhand.model.smb import WORKER_SMB_KEY, worker_password
from support.cli import PASSPHRASE
from support.pyinfra_harness import (
    BUNDLE_OF,
    HUB_ADDRESS,
    NEBULA_SHA256,
    TARGET,
    Facts,
    Plan,
    open_bundles,
    simulate,
)
from support.session import BUNDLES, WORKER_NAMES, Farm


@pytest.fixture(scope="module")
def tasks() -> Any:
    """farmhand.deploy.tasks, as deploys/hub.py, worker.py and boss.py import it."""
    return importlib.import_module("farmhand.deploy.tasks.roles"), importlib.import_module(
        "farmhand.deploy.tasks.context"
    )


@pytest.fixture(scope="module")
def bundles(farm: Farm, tasks: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Bundle files preloaded for the deploys: each role's, and each with nebula_sha256 set."""
    _, context = tasks
    work = tmp_path_factory.mktemp("preloaded")
    paths = {}
    for role, bundle in open_bundles(farm).items():
        paths[role] = farm.root / BUNDLE_OF[role]
        context.preload(paths[role], bundle)
        pinned = dataclasses.replace(
            bundle, plan=bundle.plan.with_settings(nebula_sha256=NEBULA_SHA256)
        )
        paths[f"{role}+sha"] = Path(shutil.copy(paths[role], work / f"pinned-{BUNDLE_OF[role]}"))
        context.preload(paths[f"{role}+sha"], pinned)
    return paths


@pytest.fixture(scope="module")
def secrets(farm: Farm, bundles: dict[str, Path]) -> list[bytes]:
    """Everything secret a deploy handles: the SMB passwords and every private key."""
    members = {name: farm._tars[name] for name in BUNDLES}
    out = [PASSPHRASE.encode()]
    for tar in members.values():
        for name, (content, _) in tar.items():
            if name == "smb.password":
                out.append(content.strip())
            if name == f"extras/{WORKER_SMB_KEY.name}":  # every worker's share password
                out.append(content.strip())
                out += [worker_password(content, n).encode() for n in WORKER_NAMES]
            if name.startswith("keys/"):
                out.append(content.strip().splitlines()[1])  # the key's base64 line
    return out


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("artifacts")
    (folder / "nebula-linux-amd64.tar.gz").write_bytes(
        b"a stand-in for nebula-linux-amd64.tar.gz\n"
    )
    return folder


@pytest.fixture
def deploy(
    tasks: Any, bundles: dict[str, Path], artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Plan]:
    """``deploy(role, distro, facts=None, pinned=True, artifacts=True, diff=False, **data)``."""
    roles, _ = tasks

    def run(
        role: str,
        distro: str,
        facts: Facts | None = None,
        *,
        pinned: bool = True,
        with_artifacts: bool = True,
        diff: bool = False,
        **data: Any,
    ) -> Plan:
        facts = facts or Facts(distro)
        monkeypatch.setattr(Host, "get_fact", lambda self, cls, *a, **kw: facts.get(cls, *a, **kw))
        host_data = {
            "farmhand_bundle": str(bundles[f"{role}+sha" if pinned else role]),
            "farmhand_hub_address": HUB_ADDRESS,
            "farmhand_queue": False,  # the render queue's deploys: tests/test_queue_facts.py
            **({"farmhand_artifacts": str(artifacts)} if with_artifacts else {}),
            **data,
        }
        inventory = Inventory(([(TARGET, host_data)], {}))
        config = Config()
        config.DIFF = diff
        state = State(inventory, config)
        for each in inventory:
            state.activate_host(each)
        add_deploy(state, getattr(roles, role))
        return Plan(simulate(state, inventory.get_host(TARGET)), facts)

    return run
