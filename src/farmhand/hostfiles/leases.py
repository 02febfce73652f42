"""Certificate leases: the hub's lease service and its sshd entry; a worker's picker, its
renewal timer, the claim key and the hub's pinned host key."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from farmhand.errors import UsageError
from farmhand.hostfiles.base import HostFile
from farmhand.keystore.farm_secrets import LEASE_HOST_KEY
from farmhand.keystore.plan import Role
from farmhand.model.host import HostModel
from farmhand.model.paths import (
    DEFAULT_SSH_HOST_KEYS,
    LEASE_DROPIN,
    NEBULA_CERT,
    NEBULA_KEY,
    NEBULA_POOL,
    SMB_CREDENTIALS,
    SYSTEMD_DIR,
)
from farmhand.onhost import leases
from farmhand.onhost.jobs import JOBS_USER
from farmhand.queue.base import RenderManager, render_manager


def credentials_group(model: HostModel) -> str:
    """The group that may read a worker's share login besides root: the render tasks' user
    under Slurm (queue/slurm_jobs.py), else none."""
    return JOBS_USER if render_manager(model.plan) is RenderManager.SLURM else ""


def lease_files(
    model: HostModel, expand: Callable[..., bytes]
) -> tuple[list[HostFile], list[HostFile]]:
    """The certificate leases (onhost/leases.py): the lease service on the hub, with its sshd
    entry apart (the extra host key and the drop-in that lists it); the picker, its renewal
    timer, the claim key and the hub's pinned host key on workers (no sshd entry)."""
    module = Path(leases.__file__).read_bytes()
    files = [HostFile(leases.LIB, b"#!/usr/bin/python3\n" + module, 0o755)]
    extras = model.bundle.extras
    if model.role is Role.HUB:
        needed = ("lease-host-key", "lease-claim-key.pub")
    else:
        needed = ("lease-claim-key", "lease-host-key.pub")
    missing = [name for name in needed if name not in extras]
    if missing:
        raise UsageError(
            f"the {model.role.value} bundle has no certificate-lease keys ({', '.join(missing)}): "
            "it comes from an older farmhand: run `farmhand keys rebundle`"
        )
    if model.role is Role.HUB:
        entries = [
            {"name": p.name, "ip": str(p.ip), "not_after": p.not_after}
            for p in model.bundle.peers_of(Role.WORKER)
        ]
        pool = {
            "ttl": model.lease_ttl,
            "per_source": model.lease_per_source or leases.default_per_source(len(entries)),
            "pool": entries,
        }
        files += [
            HostFile(leases.HUB_POOL, json.dumps(pool, indent=1).encode() + b"\n"),
            HostFile(
                leases.LEASE_AUTHORIZED_KEYS,
                expand(
                    "leases/lease-authorized_keys.j2",
                    leases=leases,
                    claim_key=extras["lease-claim-key.pub"].decode().strip(),
                ),
            ),
        ]
        sshd = [
            HostFile(leases.HUB_HOST_KEY, extras["lease-host-key"], 0o600, secret=True),
            HostFile(
                leases.HUB_HOST_KEY + ".pub",
                LEASE_HOST_KEY.public(extras["lease-host-key"]) if LEASE_HOST_KEY.public else b"",
            ),
            HostFile(
                LEASE_DROPIN,
                expand(
                    "leases/40-farmhand-lease.conf.j2",
                    leases=leases,
                    default_host_keys=DEFAULT_SSH_HOST_KEYS,
                ),
            ),
        ]
        return files, sshd
    config = {
        "hub": model.hub_address,
        "hub_port": model.lease_ssh_port,
        "user": leases.LEASE_USER,
        "ttl": model.lease_ttl,
        "renew_every": model.lease_renew_every,
        "claim_key": leases.CLAIM_KEY,
        "known_hosts": leases.KNOWN_HOSTS,
        "pool_dir": NEBULA_POOL,
        "cert": NEBULA_CERT,
        "key": NEBULA_KEY,
        "smb_credentials": SMB_CREDENTIALS,
        "smb_credentials_group": credentials_group(model),
        "nebula_unit": "farmhand-nebula.service",
        "pick_unit": "farmhand-pick-cert.service",
        "connect_timeout": 10,
    }
    host_key = extras["lease-host-key.pub"].decode().split()
    files += [
        HostFile(leases.WORKER_CONFIG, json.dumps(config, indent=1).encode() + b"\n"),
        HostFile(leases.CLAIM_KEY, extras["lease-claim-key"], 0o600, secret=True),
        HostFile(
            leases.KNOWN_HOSTS,
            f"{leases.HOST_KEY_ALIAS} {host_key[0]} {host_key[1]}\n".encode(),
        ),
        HostFile(
            f"{SYSTEMD_DIR}/farmhand-pick-cert.service",
            expand("leases/farmhand-pick-cert.service.j2", leases=leases),
        ),
        HostFile(
            f"{SYSTEMD_DIR}/farmhand-lease-renew.service",
            expand("leases/farmhand-lease-renew.service.j2", leases=leases),
        ),
        HostFile(
            f"{SYSTEMD_DIR}/farmhand-lease-renew.timer",
            expand("leases/farmhand-lease-renew.timer.j2", leases=leases),
        ),
    ]
    return files, []
