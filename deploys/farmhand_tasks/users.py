"""The farm user: the same uid/gid on the hub and every worker, so share files line up."""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.operations import server

from farmhand import hosts as h
from farmhand.hosts import HostModel


@deploy("Farm user")
def farm_user(model: HostModel) -> None:
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
        home=h.SHARES_ROOT,
        shell="/usr/sbin/nologin",
        create_home=False,
        ensure_home=False,  # the share root stays root's; the farm user owns only the shares
        present=True,
    )
