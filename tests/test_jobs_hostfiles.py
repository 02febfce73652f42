"""The job service's host files (hostfiles/jobs.py): the hub's authorized_keys names each live
boss in its own forced command, with that boss's key; the worker's config points its tasks at
the hub's overlay address."""

from __future__ import annotations

import json
from pathlib import Path

from farmhand.hostfiles.base import expand_template
from farmhand.hostfiles.jobs import job_files
from farmhand.keystore.bundle import open_bundle
from farmhand.keystore.job_keys import JOB_KEY
from farmhand.model.host import host_model
from farmhand.onhost import jobs
from support.cli import PASSPHRASE
from support.session import SESSION_BOSS


def test_hub_and_worker_files(farm_store: Path) -> None:
    hub = open_bundle(farm_store / "hub.keybundle.age", PASSPHRASE)
    boss = open_bundle(farm_store / f"boss-{SESSION_BOSS}.keybundle.age", PASSPHRASE)
    files = {f.path: f for f in job_files(host_model(hub, hub_address="hub"), expand_template)}
    lines = [x for x in files[jobs.JOBS_AUTHORIZED_KEYS].text.splitlines() if not x.startswith("#")]
    assert len(lines) == 1
    assert lines[0].startswith(f'restrict,command="/usr/bin/python3 {jobs.LIB} serve alice" ')
    assert boss.extras[JOB_KEY].startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    assert files[jobs.LIB].mode == 0o755
    assert json.loads(files[jobs.HUB_CONFIG].content)["max_attempts"] == 2

    workers = open_bundle(farm_store / "workers.keybundle.age", PASSPHRASE)
    model = host_model(workers, hub_address="hub", host="worker0001")
    config = json.loads(
        {f.path: f for f in job_files(model, expand_template)}[jobs.WORKER_CONFIG].content
    )
    assert config["hub"] == str(hub.plan.addresses.hub)
