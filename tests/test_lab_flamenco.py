"""The Flamenco stack deployed for real on the container lab, with STAND-IN artifacts (issue 5).

One lab (prefix ``fhfl``): hub, worker0001, boss1. The plan chooses Flamenco; its release archive
is the stand-in of tests/standins/ (``flamenco-manager`` and ``flamenco-worker`` record their
argv, uid and the config they read; the manager listens where its YAML says), pinned by its
sha256 in farm.toml like a real one. The hub is deployed with ``--artifacts``; the worker is
not: it must take the archive from the hub's installers share. What tests/test_lab_queue.py
proves for Deadline, this proves for Flamenco.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import support.lab
from farmhand.keystore.plan import Role
from farmhand.lab import provision as prov
from farmhand.model.paths import FLAMENCO_MANAGER_DIR, FLAMENCO_WORKER_DIR, MOUNTS_ROOT, SHARES_ROOT
from farmhand.queue import artifacts
from farmhand.queue.flamenco import MANAGER_UNIT as FLAMENCO_MANAGER_UNIT
from farmhand.queue.flamenco import PORT
from farmhand.queue.flamenco import WORKER_UNIT as FLAMENCO_WORKER_UNIT

sys.path.insert(0, str(Path(__file__).parent))
from standins.queue_lab import QueueLab, queue_farm

PREFIX = "fhfl"
HUB, W1, BOSS = "hub", "worker0001", "boss1"
FARM_UID = 2042
MANAGER_YAML = f"{FLAMENCO_MANAGER_DIR}/flamenco-manager.yaml"
WORKER_YAML = f"{FLAMENCO_WORKER_DIR}/flamenco-worker.yaml"

pytestmark = support.lab.MARKS


class FlamencoLab(QueueLab):
    def started(self, name: str, standin: str, unit: str) -> list[dict[str, Any]]:
        """The stand-in's records; none means it never started: show why."""
        records = self.records(name, standin)
        status = f"systemctl status {unit} --no-pager -l; journalctl -u {unit} -n 20 --no-pager"
        assert records, f"{standin} never started on {name}:\n" + self.sh(name, status + "; true")
        return records

    def yaml(self, name: str, path: str) -> dict[str, Any]:
        loaded = yaml.safe_load(self.sh(name, f"cat {path}"))
        assert isinstance(loaded, dict), f"{name}:{path} is not a YAML mapping"
        return loaded


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlamencoLab]:
    support.lab.require_lab()
    yield from queue_farm(
        FlamencoLab, tmp_path_factory, PREFIX, "flamenco", ["flamenco"], artifacts.FLAMENCO.filename
    )


def test_a_corrupted_archive_is_refused(lab: FlamencoLab) -> None:
    report = lab.first["corrupt"]
    assert not report.ok
    message = report.failure_message()
    assert "does not match the sha256" in message, message
    assert artifacts.FLAMENCO.filename in message
    assert "[artifacts.flamenco]" in message


def test_the_worker_takes_the_archive_from_the_hubs_cache(lab: FlamencoLab) -> None:
    cached = lab.sh(HUB, f"sha256sum {artifacts.FLAMENCO.cached} | cut -d' ' -f1")
    taken = lab.sh(W1, f"sha256sum {artifacts.FLAMENCO.local} | cut -d' ' -f1")
    assert cached == taken == _plan(lab).settings.artifact_sha256["flamenco"]
    assert lab.sh(HUB, f"stat -c %U:%a {artifacts.FLAMENCO.cached}") == "root:600"
    # The worker was given no --artifacts, and the hub's cache is the only copy it could reach.
    assert lab.sh(W1, f"test -e {artifacts.FLAMENCO.cached} && echo yes || echo no") == "no"


def test_the_configs_are_rendered_valid_and_overlay_only(lab: FlamencoLab) -> None:
    hub_overlay = prov.overlay_ip(lab.farm, HUB)
    manager = lab.yaml(HUB, MANAGER_YAML)
    assert manager["_meta"] == {"version": 3}
    assert manager["listen"] == f"{hub_overlay}:{PORT}"
    assert manager["autodiscoverable"] is False
    assert manager["shaman"] == {"enabled": False}
    assert manager["shared_storage_path"] == f"{SHARES_ROOT}/farm"
    farm_var = manager["variables"]["farm"]
    assert farm_var["is_twoway"] is True
    values = {v["platform"]: v["value"] for v in farm_var["values"]}
    assert values == {
        "linux": f"{MOUNTS_ROOT}/farm",
        "windows": f"\\\\{hub_overlay}\\farm",
        "darwin": "/Volumes/farm",
    }
    blender = {v["platform"] for v in manager["variables"]["blender"]["values"]}
    assert blender == {"linux", "windows", "darwin"}
    worker = lab.yaml(W1, WORKER_YAML)
    assert worker["manager_url"] == f"http://{hub_overlay}:{PORT}/"
    # What the stand-ins read from their working directory is exactly these files.
    read = lab.started(HUB, "flamenco-manager", FLAMENCO_MANAGER_UNIT)[0]
    assert read["config"] == MANAGER_YAML
    assert read["listen"] == f"{hub_overlay}:{PORT}"
    read = lab.started(W1, "flamenco-worker", FLAMENCO_WORKER_UNIT)[0]
    assert read["config"] == WORKER_YAML
    assert read["manager_url"] == f"http://{hub_overlay}:{PORT}/"


def test_the_units_are_valid_and_active(lab: FlamencoLab) -> None:
    for name, unit in ((HUB, FLAMENCO_MANAGER_UNIT), (W1, FLAMENCO_WORKER_UNIT)):
        lab.sh(name, f"systemd-analyze verify /etc/systemd/system/{unit}")
        assert lab.sh(name, f"systemctl is-active {unit}") == "active"
        assert lab.sh(name, f"systemctl is-enabled {unit}") == "enabled"


def test_both_run_as_the_farm_user_with_state_they_can_write(lab: FlamencoLab) -> None:
    for name, unit, standin in (
        (HUB, FLAMENCO_MANAGER_UNIT, "flamenco-manager"),
        (W1, FLAMENCO_WORKER_UNIT, "flamenco-worker"),
    ):
        records = lab.started(name, standin, unit)
        assert records[-1]["uid"] == FARM_UID, f"{standin} must run as the farm user"
        assert records[-1]["argv"] == []
        pid = lab.sh(name, f"systemctl show -p MainPID --value {unit}")
        assert lab.sh(name, f"stat -c %u /proc/{pid}") == str(FARM_UID)
    # The manager's local storage (resolved next to its executable in root's /opt) and the
    # worker's credentials ($FLAMENCO_HOME) land in folders the farm user owns.
    manager = lab.records(HUB, "flamenco-manager")[-1]
    assert manager["storage_writable"], manager
    storage = lab.sh(HUB, f"realpath {manager['storage']}")
    assert storage == f"{FLAMENCO_MANAGER_DIR}/flamenco-manager-storage"
    worker = lab.records(W1, "flamenco-worker")[-1]
    assert worker["credentials_writable"], worker
    assert worker["flamenco_home"] == FLAMENCO_WORKER_DIR
    owner = lab.sh(W1, f"stat -c %u {FLAMENCO_WORKER_DIR}/flamenco-worker-credentials.yaml")
    assert owner == str(FARM_UID)


def test_the_manager_port_is_reachable_over_the_overlay_only(lab: FlamencoLab) -> None:
    hub_overlay = prov.overlay_ip(lab.farm, HUB)
    for name in (W1, BOSS):
        assert prov.ping(lab.farm, name, hub_overlay)
        assert prov.tcp_open(lab.farm, name, hub_overlay, PORT), f"{name} cannot reach {PORT}"
    listening = lab.sh(HUB, f"ss -Hltn 'sport = :{PORT}' | awk '{{print $4}}'")
    assert listening == f"{hub_overlay}:{PORT}"
    assert not prov.desk_tcp_open(lab.farm, str(lab.farm.address(HUB)), PORT)
    assert not prov.tcp_open(lab.farm, W1, str(lab.farm.address(HUB)), PORT)


def test_a_second_deploy_changes_nothing(lab: FlamencoLab) -> None:
    hub = lab.deploy(Role.HUB, [HUB], farmhand_artifacts=str(lab.artifacts))
    worker = lab.deploy(Role.WORKER, [W1])
    assert hub.ok, hub.failure_message()
    assert worker.ok, worker.failure_message()
    assert hub.changed == 0, hub.hosts[HUB].changed_ops
    assert worker.changed == 0, worker.hosts[W1].changed_ops


def _plan(lab: FlamencoLab) -> Any:
    from farmhand.keystore.store import KeyStore

    return KeyStore.open(prov.store_dir(lab.farm)).plan
