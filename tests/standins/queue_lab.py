"""What the render-queue lab tests (Deadline and Flamenco) share: a farm whose deploys install
the queue from stand-in artifacts, and reading what the stand-ins recorded."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from farmhand.deploy.runner import DeployReport, run_deploy
from farmhand.keystore.bundle import bundle_filename
from farmhand.keystore.plan import Role
from farmhand.lab import LabFarm
from farmhand.lab import provision as prov

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
        result = self.farm.exec(name, ["sh", "-c", script])
        assert result.returncode == 0, f"{name}: {script}: {result.stderr or result.stdout}"
        return result.stdout.strip()

    def records(self, name: str, standin: str) -> list[dict[str, Any]]:
        """What stand-in ``standin`` recorded on host ``name``, one dict per run."""
        text = self.sh(name, f"cat {RECORDS}/{standin}.jsonl 2>/dev/null || true")
        return [json.loads(line) for line in text.splitlines() if line]
