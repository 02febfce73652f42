"""Slurm, the default render manager, on the shared standard lab farm (real deploys, real
slurmctld on the hub and slurmd on both workers, over Nebula).

The lab is tests/support/standard_farm.py's (hub, two workers and boss1), whose provisioning
deploys Slurm's queue (farmhand.lab.provision.deploy_data); this module puts back what it
changes (the hub's published version).
"""

from __future__ import annotations

import time

import pytest

import support.lab
from farmhand.deploy.runner import run_deploy
from farmhand.keystore.bundle import bundle_filename
from farmhand.keystore.plan import Role
from farmhand.lab import provision as prov
from farmhand.queue import slurm
from support.standard_farm import HUB, W1, W2, StandardFarm

pytestmark = support.lab.MARKS
WORKERS = (W1, W2)
PUBLISHED = f"/srv/farmhand/installers/{slurm.VERSION_FILE}"


def sh(shared: StandardFarm, name: str, script: str) -> str:
    return support.lab.sh(shared.farm, name, script)


def states(shared: StandardFarm) -> dict[str, str]:
    return prov.sinfo_nodes(shared.farm)


def wait_idle(shared: StandardFarm, seconds: float = 60) -> dict[str, str]:
    deadline = time.monotonic() + seconds
    found = states(shared)
    while time.monotonic() < deadline:
        found = states(shared)
        if all(found.get(w) == "idle" for w in WORKERS):
            return found
        time.sleep(1)
    return found


def test_sinfo_on_the_hub_shows_both_workers_idle(standard_farm: StandardFarm) -> None:
    found = wait_idle(standard_farm)
    assert all(found.get(w) == "idle" for w in WORKERS), found
    # The rest of the pool are nodes too (down until a worker claims them); nothing else is.
    assert set(found) <= {f"worker{n:04d}" for n in range(1, 100)}, found
    partitions = sh(standard_farm, HUB, "sinfo -h -o '%P %a'")
    assert partitions.split() == [f"{slurm.PARTITION}*", "up"]


def test_each_worker_tells_slurm_its_blender(standard_farm: StandardFarm) -> None:
    """Each worker's timer gives its node the features of its Blender (onhost/jobs.py)."""
    deadline = time.monotonic() + 60
    while True:
        listed = sh(standard_farm, HUB, "sinfo -h -N -o '%N %f'").splitlines()
        features = dict(line.split() for line in listed)
        if all(features.get(w, "(null)") != "(null)" for w in WORKERS):
            break
        assert time.monotonic() < deadline, features
        time.sleep(2)
    for worker in WORKERS:
        version = sh(standard_farm, worker, "blender --version | head -1").split()[1]
        major_minor = ".".join(version.split(".")[:2])
        assert features[worker] == f"blender-{major_minor},blender-{version}", features
        timer = sh(standard_farm, worker, f"systemctl is-active {slurm.FEATURES_TIMER}")
        assert timer == "active"


def test_an_array_of_four_from_the_farm_user_runs_on_both_workers(
    standard_farm: StandardFarm,
) -> None:
    assert all(wait_idle(standard_farm).get(w) == "idle" for w in WORKERS)
    tag = f"fhlab{int(time.time())}"
    job = sh(
        standard_farm,
        HUB,
        "runuser -u farmhand -- sbatch --parsable --array=0-3 --chdir=/tmp "
        f"--output=/tmp/{tag}_%a.out "
        "--wrap 'echo $SLURM_ARRAY_TASK_ID $SLURMD_NODENAME $(id -un); sleep 2'",
    )
    deadline = time.monotonic() + 120
    while sh(standard_farm, HUB, f"squeue -h -j {job} -o %i") and time.monotonic() < deadline:
        time.sleep(2)
    assert not sh(standard_farm, HUB, f"squeue -h -j {job} -o %i"), "the array did not finish"
    ran: dict[int, str] = {}
    for worker in WORKERS:
        out = sh(standard_farm, worker, f"cat /tmp/{tag}_*.out 2>/dev/null || true")
        for line in out.splitlines():
            task, node, user = line.split()
            assert (node, user) == (worker, "farmhand"), line
            ran[int(task)] = node
    assert sorted(ran) == [0, 1, 2, 3], ran
    assert set(ran.values()) == set(WORKERS), ran


def test_a_worker_newer_than_the_hub_stops_its_deploy_in_one_line(
    standard_farm: StandardFarm,
) -> None:
    farm = standard_farm.farm
    original = sh(standard_farm, HUB, f"cat {PUBLISHED}")
    assert slurm.major(original), original  # Debian's says "slurm-wlm 22.05.8"
    try:
        # The hub claims an older slurmctld than the workers' slurmd (22.05 in the lab).
        sh(standard_farm, HUB, f"echo 'slurm 20.11.9' > {PUBLISHED}")
        report = run_deploy(
            Role.WORKER,
            prov.store_dir(farm) / bundle_filename(Role.WORKER),
            prov.lab_passphrase(farm),
            prov.targets(farm, [W1]),
            data=prov.deploy_data(farm),
            netns=farm.desk_namespace,
        )
        assert not report.ok
        message = report.failure_message()
        line = next(ln for ln in message.splitlines() if "newer than the hub's slurmctld" in ln)
        assert "20.11" in line, message
        assert "upgrade the hub" in line, message
        assert "pin this worker" in line, message
    finally:
        sh(standard_farm, HUB, f"printf '%s\\n' '{original}' > {PUBLISHED}")
    # Stopped before it touched slurmd: the worker still serves the farm.
    assert wait_idle(standard_farm).get(W1) == "idle"


@pytest.fixture(autouse=True)
def _slurm_farm(standard_farm: StandardFarm) -> None:
    if not prov.slurm_farm(standard_farm.farm):
        pytest.skip("the standard farm does not run Slurm")
