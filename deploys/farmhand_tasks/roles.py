"""One deploy per role, composed from the tasks. deploys/hub.py etc. call these."""

from __future__ import annotations

from pyinfra.api import deploy

from farmhand.keystore.plan import Role
from farmhand_tasks import context
from farmhand_tasks import files as farm_files
from farmhand_tasks.firewall import firewall
from farmhand_tasks.idle import idle
from farmhand_tasks.leases import hub_leases
from farmhand_tasks.mounts import mounts
from farmhand_tasks.nebula import nebula
from farmhand_tasks.renderer import render_queue
from farmhand_tasks.samba import samba
from farmhand_tasks.ssh import ssh
from farmhand_tasks.users import farm_user


@deploy("farmhand hub")
def hub() -> None:
    model, rendered = context.load(Role.HUB)
    farm_files.secret_upload_dir()
    firewall(model, rendered)
    farm_user(model)
    running = nebula(model, rendered)
    samba(model, rendered, running)
    hub_leases(model, rendered)
    ssh(model, rendered)
    render_queue(model, rendered)


@deploy("farmhand worker")
def worker() -> None:
    model, rendered = context.load(Role.WORKER)
    farm_files.secret_upload_dir()
    firewall(model, rendered)
    farm_user(model)
    nebula(model, rendered)
    mounts(model, rendered)
    ssh(model, rendered)
    idle(model, rendered)
    render_queue(model, rendered)


@deploy("farmhand boss")
def boss() -> None:
    model, rendered = context.load(Role.BOSS)
    farm_files.secret_upload_dir()
    nebula(model, rendered)


ROLE_DEPLOYS = {Role.HUB: hub, Role.WORKER: worker, Role.BOSS: boss}
