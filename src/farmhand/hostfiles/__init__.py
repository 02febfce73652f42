"""Host model + templates/ -> the files a host gets; one module per component, and the only
place Jinja2 runs (hostfiles.base)."""

from __future__ import annotations

import json

import jinja2

from farmhand.errors import FarmhandError
from farmhand.hostfiles.base import HostFile, HostFiles, environment
from farmhand.hostfiles.firewall import firewall_files
from farmhand.hostfiles.idle import idle_files
from farmhand.hostfiles.leases import credentials_group, lease_files
from farmhand.hostfiles.mounts import credentials_files, mount_files
from farmhand.hostfiles.nebula import Tuning, nebula_files, nebula_paths, pool_files
from farmhand.hostfiles.queue import queue_files
from farmhand.hostfiles.samba import samba_files
from farmhand.hostfiles.ssh import ssh_files
from farmhand.keystore.plan import Role
from farmhand.model.host import NEBULA_DEV, SMB_PORT, HostModel
from farmhand.model.paths import FARM_JSON, FARMHAND_ETC, FARMHAND_LIB


def join_files(
    model: HostModel, nebula_dir: str, *, sep: str = "/", tun_dev: str = NEBULA_DEV
) -> list[HostFile]:
    """A boss's Nebula config, CA, certificate and key under ``nebula_dir`` (``farmhand join``
    keeps them in the user's config folder, on Linux, macOS or Windows), from the same
    templates as ``host_files``."""
    paths = nebula_paths(nebula_dir, sep)
    files = host_files(model, paths=paths, tun_dev=tun_dev)
    wanted = {paths["config"], paths["ca"], paths["cert"], paths["key"]}
    return [f for f in files if f.path in wanted]


def host_files(
    model: HostModel, *, paths: dict[str, str] | None = None, tun_dev: str = NEBULA_DEV
) -> HostFiles:
    """Every file farmhand installs on ``model``'s host, as the host has them once running, by
    component: nebula, farm (farm.json), firewall, queue (the artifact fetcher) and the render
    manager's own (mongodb, deadline-client, flamenco...), ssh, leases, lease-sshd (the hub's
    extra host key and its sshd drop-in), samba, pool (a worker's certificates), mounts, idle."""
    env = environment()
    plan = model.bundle.plan
    paths = paths or nebula_paths()
    context = {
        "host": model,
        "plan": plan,
        "paths": paths,
        "tuning": Tuning(mtu=plan.mtu, dev=tun_dev),
        "blocklist": model.blocklist,
        "lighthouse_endpoints": model.lighthouse_endpoints,
        "listen_port": model.listen_port,
        "inbound": model.inbound_rules,
        "lib": FARMHAND_LIB,
        "etc": FARMHAND_ETC,
        "smb_port": SMB_PORT,
    }

    def expand(template: str, **extra: object) -> bytes:
        try:
            return env.get_template(template).render(**context, **extra).encode()
        except jinja2.TemplateError as exc:
            raise FarmhandError(f"template {template} failed to expand: {exc}") from None

    parts: dict[str, list[HostFile]] = {
        "nebula": nebula_files(model, expand, paths),
        "farm": [HostFile(FARM_JSON, _farm_json(model))],
    }
    if model.role is Role.BOSS:
        return _host_files(parts)
    parts["firewall"] = firewall_files(model, expand)
    parts.update(queue_files(model, expand))
    parts["ssh"] = ssh_files(model, expand)
    parts["leases"], parts["lease-sshd"] = lease_files(model, expand)
    if model.role is Role.HUB:
        parts["samba"] = samba_files(model, expand)
    else:
        parts["pool"] = pool_files(model)
        parts["mounts"] = credentials_files(model) + mount_files(model, expand)
        parts["idle"] = idle_files(model, expand)
    return _host_files(parts)


def _host_files(parts: dict[str, list[HostFile]]) -> HostFiles:
    return HostFiles({name: tuple(files) for name, files in parts.items() if files})


def _farm_json(model: HostModel) -> bytes:
    """What tools on the host (status, the picker) need to know, without secrets."""
    data = {
        "role": model.role.value,
        "name": model.name if model.role is not Role.WORKER else None,
        "farm": model.bundle.plan.name,
        "network": str(model.bundle.plan.network),
        "hub_overlay_ip": str(model.hub_overlay_ip),
        "hub_address": model.hub_address,
        "port": model.bundle.plan.port,
        "shares": [s.name for s in model.shares],
    }
    if model.role is Role.WORKER:
        # farmhand verify checks the share login's owner against it.
        data["smb_credentials_group"] = credentials_group(model) or None
    return json.dumps(data, indent=1).encode() + b"\n"
