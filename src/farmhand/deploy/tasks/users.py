"""The farm user: the same uid/gid on the hub and every worker, so share files line up."""

from __future__ import annotations

from pyinfra.context import host
from pyinfra.facts.server import Users
from pyinfra.operations import server

from farmhand.deploy.tasks import deploy
from farmhand.errors import UsageError
from farmhand.model.host import HostModel
from farmhand.model.paths import SHARES_ROOT


@deploy("Farm user")
def farm_user(model: HostModel) -> None:
    existing = host.get_fact(Users).get(model.farm_user)
    if existing and existing.get("uid") not in (None, model.farm_uid):
        # pyinfra would leave it as it is, and share files would belong to someone else.
        raise UsageError(
            f"user {model.farm_user} already exists with uid {existing['uid']}, but the farm "
            f"uses {model.farm_uid}: change farm_uid in farm.toml or the user on this host"
        )
    server.group(
        name=f"Group {model.farm_user} ({model.farm_uid})",
        group=model.farm_user,
        gid=model.farm_uid,
        present=True,
    )
    server.user(
        name=f"User {model.farm_user} ({model.farm_uid}), no login",
        user=model.farm_user,
        uid=model.farm_uid,
        group=model.farm_user,
        home=SHARES_ROOT,
        shell="/usr/sbin/nologin",
        create_home=False,
        ensure_home=False,  # the share root stays root's; the farm user owns only the shares
        present=True,
    )
