"""What the render-queue lab tests (Deadline and Flamenco) share: a farm whose deploys install
the queue from stand-in artifacts, and reading what the stand-ins recorded."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import support.lab
from farmhand.deploy.runner import DeployReport, run_deploy
from farmhand.keystore import pki
from farmhand.keystore.bundle import bundle_filename
from farmhand.keystore.plan import Role, new_plan
from farmhand.lab import LabFarm
from farmhand.lab import provision as prov
from standins.archives import build

RECORDS = "/var/lib/farmhand-standin"


@dataclass
class QueueLab:
    farm: LabFarm
    passphrase: str
    artifacts: Path
    first: dict[str, DeployReport]

    def deploy(self, role: Role, names: list[str], **data: object) -> DeployReport:
        """The real deploy with the queue on (the lab's default deploy data turns it off)."""
        bundle = bundle_filename(role, names[0] if role is Role.BOSS else "")
        return run_deploy(
            role,
            prov.store_dir(self.farm) / bundle,
            self.passphrase,
            prov.targets(self.farm, names),
            data={**prov.LAB_DEPLOY_DATA, "farmhand_queue": True, **data},
            netns=self.farm.desk_namespace,
        )

    def sh(self, name: str, script: str) -> str:
        return support.lab.sh(self.farm, name, script)

    def records(self, name: str, standin: str) -> list[dict[str, Any]]:
        """What stand-in ``standin`` recorded on host ``name``, one dict per run."""
        text = self.sh(name, f"cat {RECORDS}/{standin}.jsonl 2>/dev/null || true")
        return [json.loads(line) for line in text.splitlines() if line]


LabT = TypeVar("LabT", bound=QueueLab)


def queue_farm(
    make: type[LabT],
    tmp_path_factory: Any,
    prefix: str,
    manager: str,
    artifact_keys: list[str] | None,
    tampered: str,
) -> Iterator[LabT]:
    """hub, worker0001 and boss1 with the queue ``manager`` deployed from stand-in artifacts
    (the checksums of ``artifact_keys`` in farm.toml; None: all of them).

    Before the real deploys, a hub deploy with ``tampered`` (an artifact file name) corrupted
    is recorded in ``first["corrupt"]``: it must be refused before anything reaches the hub.
    """
    hub, worker, boss = "hub", "worker0001", "boss1"
    state = tmp_path_factory.mktemp(f"{prefix}-state")
    artifacts = tmp_path_factory.mktemp("standin-artifacts")
    sums = build(artifacts)
    farm = LabFarm(state, prefix=prefix, progress=print)
    try:
        farm.up(workers=1, bosses=1)
        for name in (hub, worker):  # the stand-ins record here, whichever user runs them
            farm.exec(name, ["install", "-d", "-m", "1777", RECORDS], check=True)
        plan = new_plan(name=prov.LAB_FARM_NAME, hub_address=str(farm.address(hub)))
        settings = {
            "render_manager": manager,
            "renderer": "blender",
            "artifacts": {
                key: {"sha256": value}
                for key, value in sums.items()
                if artifact_keys is None or key in artifact_keys
            },
        }
        plan = plan.with_settings(**settings)
        pki.create_farm(prov.store_dir(farm), plan, 1, [boss], prov.lab_passphrase(farm))
        lab = make(farm, prov.lab_passphrase(farm), artifacts, {})
        corrupt = tmp_path_factory.mktemp("corrupt")
        for item in artifacts.iterdir():
            shutil.copy(item, corrupt / item.name)
        with (corrupt / tampered).open("ab") as handle:
            handle.write(b"tampered")
        lab.first["corrupt"] = lab.deploy(Role.HUB, [hub], farmhand_artifacts=str(corrupt))
        lab.first["hub"] = lab.deploy(Role.HUB, [hub], farmhand_artifacts=str(artifacts))
        assert lab.first["hub"].ok, lab.first["hub"].failure_message()
        lab.first["worker"] = lab.deploy(Role.WORKER, [worker])
        assert lab.first["worker"].ok, lab.first["worker"].failure_message()
        lab.first["boss"] = lab.deploy(Role.BOSS, [boss])
        assert lab.first["boss"].ok, lab.first["boss"].failure_message()
        yield lab
    finally:
        farm.down()
