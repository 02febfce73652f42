"""One deploy per role, composed from the tasks. deploys/hub.py etc. call these."""

from __future__ import annotations

from farmhand.deploy.tasks import context, deploy
from farmhand.deploy.tasks import files as farm_files
from farmhand.deploy.tasks.firewall import firewall
from farmhand.deploy.tasks.idle import idle
from farmhand.deploy.tasks.leases import hub_leases
from farmhand.deploy.tasks.mounts import mounts
from farmhand.deploy.tasks.nebula import nebula
from farmhand.deploy.tasks.render_queue import render_queue
from farmhand.deploy.tasks.samba import samba
from farmhand.deploy.tasks.ssh import ssh
from farmhand.deploy.tasks.users import farm_user
from farmhand.keystore.plan import Role


@deploy("farmhand hub")
def hub() -> None:
    model, files = context.load(Role.HUB)
    farm_files.secret_upload_dir()
    firewall(model, files)
    farm_user(model)
    running = nebula(model, files)
    samba(model, files, running)
    hub_leases(model, files)
    ssh(model, files)
    render_queue(model, files)


@deploy("farmhand worker")
def worker() -> None:
    model, files = context.load(Role.WORKER)
    farm_files.secret_upload_dir()
    firewall(model, files)
    farm_user(model)
    nebula(model, files)
    mounts(model, files)
    ssh(model, files)
    idle(model, files)
    render_queue(model, files)


@deploy("farmhand boss")
def boss() -> None:
    model, files = context.load(Role.BOSS)
    farm_files.secret_upload_dir()
    nebula(model, files)


ROLE_DEPLOYS = {Role.HUB: hub, Role.WORKER: worker, Role.BOSS: boss}
