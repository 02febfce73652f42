"""Nebula's files on every host: config, CA, certificate, key and its unit; a worker's pool."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from farmhand.hostfiles.base import HostFile
from farmhand.keystore.plan import Role
from farmhand.model.host import NEBULA_DEV, SOCKET_BUFFER, TX_QUEUE, HostModel
from farmhand.model.paths import NEBULA_DIR, NEBULA_POOL, SYSTEMD_DIR
from farmhand.model.smb import SmbAccount, worker_account


@dataclass(frozen=True)
class Tuning:
    """Nebula's data-path settings (see bench/lab for the measurements behind them)."""

    mtu: int
    dev: str = NEBULA_DEV
    tx_queue: int = TX_QUEUE
    socket_buffer: int = SOCKET_BUFFER


def nebula_paths(nebula_dir: str = NEBULA_DIR, sep: str = "/") -> dict[str, str]:
    """Where a host's Nebula config, CA, certificate and key live (``sep``: the host's OS)."""
    return {
        "dir": nebula_dir,
        "config": f"{nebula_dir}{sep}config.yml",
        "ca": f"{nebula_dir}{sep}ca.crt",
        "cert": f"{nebula_dir}{sep}host.crt",
        "key": f"{nebula_dir}{sep}host.key",
        "pool": f"{nebula_dir}{sep}pool",
    }


def nebula_files(
    model: HostModel, expand: Callable[..., bytes], paths: dict[str, str]
) -> list[HostFile]:
    """The config, the CA, the host's certificate and key (a worker's are chosen at boot), and
    farmhand-nebula.service."""
    chosen = model.certificate
    return [
        HostFile(paths["config"], expand("nebula/config.yml.j2"), 0o600),
        HostFile(paths["ca"], model.bundle.ca_pem, 0o644),
        HostFile(paths["cert"], chosen.cert_pem, 0o644, at_boot=model.role is Role.WORKER),
        HostFile(
            paths["key"], chosen.key_pem, 0o600, secret=True, at_boot=model.role is Role.WORKER
        ),
        HostFile(
            f"{SYSTEMD_DIR}/farmhand-nebula.service", expand("nebula/farmhand-nebula.service.j2")
        ),
    ]


def pool_files(model: HostModel) -> list[HostFile]:
    """A worker's pool: every worker certificate and key, one of which it claims at boot, and
    each certificate's share credentials (``NAME.smb``), installed with it."""
    files = []
    for host in model.bundle.hosts:
        files.append(HostFile(f"{NEBULA_POOL}/{host.name}.crt", host.cert_pem, 0o644))
        files.append(HostFile(f"{NEBULA_POOL}/{host.name}.key", host.key_pem, 0o600, secret=True))
        credentials = smb_credentials(worker_account(model.bundle, host.name))
        files.append(HostFile(f"{NEBULA_POOL}/{host.name}.smb", credentials, 0o600, secret=True))
    return files


def smb_credentials(account: SmbAccount) -> bytes:
    """A mount.cifs/smbclient credentials file for ``account``."""
    return f"username={account.user}\npassword={account.password}\n".encode()
