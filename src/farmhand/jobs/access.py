"""Where a boss's way to the hub comes from: ``farmhand join``'s folder (the usual case), or
a boss bundle given with ``--bundle`` (its key written to a private temporary folder for the
one command, then removed)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from farmhand.errors import UsageError
from farmhand.inspect.status.view import FarmView
from farmhand.jobs.api import Farm
from farmhand.jobs.client import HubAccess, known_hosts_line
from farmhand.jobs.deadline import DeadlineFarm
from farmhand.jobs.flamenco import FlamencoFarm
from farmhand.jobs.shared_storage import SharedStorageFarm
from farmhand.jobs.transfer import ShareAccess
from farmhand.join.paths import JoinPaths
from farmhand.keystore.bundle import Bundle
from farmhand.keystore.job_keys import JOB_KEY
from farmhand.keystore.plan import Role
from farmhand.model.paths import MOUNTS_ROOT
from farmhand.queue.base import RenderManager
from farmhand.queue.flamenco import PORT as FLAMENCO_PORT


def _farm(view: FarmView, key: Path, known_hosts: Path) -> Farm:
    hub = view.hub_ip
    share = ShareAccess(hub, view.smb_user, view.smb_password)
    settings = view.plan.settings
    manager: SharedStorageFarm | None = None
    if settings.render_manager is RenderManager.FLAMENCO:
        manager = FlamencoFarm(f"http://{hub}:{FLAMENCO_PORT}", share, f"{MOUNTS_ROOT}/farm")
    elif settings.render_manager is RenderManager.DEADLINE:
        manager = DeadlineFarm(settings.deadline_web_service, share, f"{MOUNTS_ROOT}/farm")
    return Farm(
        hub=HubAccess(
            hub=hub, key=key, known_hosts=known_hosts, port=view.plan.settings.lease_ssh_port
        ),
        share=share,
        manager=manager,
    )


@contextlib.contextmanager
def from_join(paths: JoinPaths) -> Iterator[Farm]:
    if not paths.joined():
        raise UsageError(
            "this machine has not joined a farm: run 'farmhand join BUNDLE' first, or give --bundle"
        )
    if not paths.jobs_key.is_file() or not paths.hub_known_hosts.is_file():
        raise UsageError(
            f"{paths.dir} has no job key (joined with an older bundle): run 'farmhand keys "
            "rebundle' on the key store, then 'farmhand join' again"
        )
    yield _farm(FarmView.from_join(paths), paths.jobs_key, paths.hub_known_hosts)


@contextlib.contextmanager
def from_bundle(bundle: Bundle) -> Iterator[Farm]:
    if bundle.role is not Role.BOSS:
        raise UsageError(f"a {bundle.role.value} bundle cannot submit jobs: give a boss's bundle")
    key = bundle.extras.get(JOB_KEY)
    host = bundle.extras.get("lease-host-key.pub")
    if key is None or host is None:
        raise UsageError(
            "this boss bundle has no job key (an older farmhand made it): run 'farmhand keys "
            "rebundle'"
        )
    folder = Path(tempfile.mkdtemp(prefix="farmhand-jobs-"))  # 0700
    try:
        (folder / "jobs.key").touch(mode=0o600)
        (folder / "jobs.key").write_bytes(key)
        (folder / "known_hosts").write_bytes(known_hosts_line(host))
        yield _farm(FarmView.from_bundle(bundle), folder / "jobs.key", folder / "known_hosts")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
