"""The host model: what a hub, worker or boss needs, derived from its bundle and the plan.

The same model feeds ``farmhand files`` (files for review) and the deploys (files on hosts), so
what a user reviews is exactly what lands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address

from farmhand.errors import UsageError
from farmhand.keystore.bundle import Bundle, BundleHost
from farmhand.keystore.plan import FarmPlan, Role, validate_hub_address
from farmhand.model.distro import DEBIAN_12, Distro
from farmhand.model.paths import MOUNTS_ROOT, SHARES_ROOT
from farmhand.model.smb import SmbAccount, smb_account, worker_accounts
from farmhand.queue import manager_for

NEBULA_DEV = "nebula1"
SMB_PORT = 445
SSH_PORT = 22
SOCKET_BUFFER = 10 * 1024 * 1024
TX_QUEUE = 5000


@dataclass(frozen=True)
class Share:
    """A Samba share on the hub and where workers mount it (``mounted``). In a writable share
    each account writes as itself: files get ``file_mode``, folders ``dir_mode`` (the folders'
    owners and modes, :func:`farmhand.model.smb.share_folders`, decide who may change what). A
    ``read_only`` share is root's, and no farm account can write it, in Samba or on disk."""

    name: str
    comment: str = ""
    read_only: bool = False
    mounted: bool = True
    file_mode: int = 0o644
    dir_mode: int = 0o1775

    @property
    def path(self) -> str:
        return f"{SHARES_ROOT}/{self.name}"

    @property
    def mount_point(self) -> str:
        return f"{MOUNTS_ROOT}/{self.name}"


SHARES = (
    # Files only their creator may change; folders sticky: nobody removes another's files.
    Share("farm", "scenes and renders"),
    # The render queue's data is shared work (Deadline's jobs and logs): group-writable.
    Share("queue", "the render queue repository", file_mode=0o664, dir_mode=0o2775),
    Share("installers", "the hub's pinned installers, read-only", read_only=True, mounted=False),
)
MOUNTED_SHARES = tuple(share for share in SHARES if share.mounted)
"""The shares workers mount and bosses are shown (workers fetch installers with smbclient)."""


@dataclass(frozen=True)
class FirewallRule:
    """One Nebula inbound rule: a port (or 'any') and protocol, from a group or anyone."""

    port: str
    proto: str
    group: str = ""


@dataclass(frozen=True)
class HostModel:
    """One host of the farm: its role, identity, peers, firewall and shares."""

    role: Role
    name: str
    bundle: Bundle = field(repr=False)
    hub_address: str
    distro: Distro = DEBIAN_12
    ssh_ports: tuple[int, ...] = (SSH_PORT,)
    key_logins_work: bool = False

    @property
    def plan(self) -> FarmPlan:
        return self.bundle.plan

    @property
    def certificate(self) -> BundleHost:
        return self.bundle.host(self.name)

    @property
    def overlay_ip(self) -> IPv4Address:
        return self.certificate.ip.ip

    @property
    def is_lighthouse(self) -> bool:
        return self.role is Role.HUB

    @property
    def hub_overlay_ip(self) -> IPv4Address:
        return self.bundle.plan.addresses.hub

    @property
    def listen_port(self) -> int:
        """The hub listens on the farm's public port; everyone else on a random one."""
        return self.bundle.plan.port if self.is_lighthouse else 0

    @property
    def lighthouse_endpoints(self) -> dict[str, list[str]]:
        if self.is_lighthouse:
            return {}
        return {str(self.hub_overlay_ip): [endpoint(self.hub_address, self.bundle.plan.port)]}

    @property
    def inbound_rules(self) -> tuple[FirewallRule, ...]:
        """Least privilege by group: the hub takes SMB and the queue from workers and bosses
        and SSH from bosses; workers take SSH from bosses (and what the manager's worker part
        needs: Slurm's slurmd from the hub); bosses accept nothing but ICMP."""
        rules = [FirewallRule("any", "icmp")]
        if self.role is Role.HUB:
            rules += [
                FirewallRule(str(SMB_PORT), "tcp", "worker"),
                FirewallRule(str(SMB_PORT), "tcp", "boss"),
                FirewallRule(str(SSH_PORT), "tcp", "boss"),
            ]
            ports = manager_for(self.bundle.plan).hub_ports()
            rules += [FirewallRule(str(port), "tcp", group) for port, group in ports]
        elif self.role is Role.WORKER:
            rules.append(FirewallRule(str(SSH_PORT), "tcp", "boss"))
            ports = manager_for(self.bundle.plan).worker_ports()
            rules += [FirewallRule(str(port), "tcp", group) for port, group in ports]
        return tuple(rules)

    @property
    def blocklist(self) -> list[str]:
        return sorted(self.bundle.blocklist)

    @property
    def shares(self) -> tuple[Share, ...]:
        """The hub serves every share; workers mount theirs; bosses join by hand."""
        if self.role is Role.HUB:
            return SHARES
        return MOUNTED_SHARES if self.role is Role.WORKER else ()

    @property
    def farm_user(self) -> str:
        return self.bundle.plan.farm_user

    @property
    def farm_uid(self) -> int:
        return self.bundle.plan.farm_uid

    @property
    def smb_password(self) -> str:
        """The bosses' share password (the hub sets it; bosses log in with it)."""
        return self.bundle.smb_password

    @property
    def smb_account(self) -> SmbAccount:
        """This host's own Samba login: a worker's is its certificate's (model/smb.py)."""
        return smb_account(self.bundle, self.name)

    @property
    def worker_smb_accounts(self) -> tuple[SmbAccount, ...]:
        """Every live worker's Samba login, for the hub to set."""
        return worker_accounts(self.bundle) if self.role is Role.HUB else ()

    @property
    def lease_ttl(self) -> int:
        """How long a worker's certificate lease lasts unless renewed (farm.toml lease_ttl)."""
        return self.plan.settings.lease_ttl

    @property
    def lease_renew_every(self) -> int:
        """Workers renew three times per lease, so one lost renewal never ends a lease."""
        return max(2, self.lease_ttl // 3)

    @property
    def lease_per_source(self) -> int:
        """How many worker certificates one source address may hold at once (farm.toml
        lease_per_source; 0 when unset: the lease service then allows half the pool)."""
        return self.plan.settings.lease_per_source

    @property
    def lease_ssh_port(self) -> int:
        """The hub's SSH port workers claim certificates on (farm.toml lease_ssh_port)."""
        return self.plan.settings.lease_ssh_port


def endpoint(address: str, port: int) -> str:
    """``host:port`` for Nebula's static_host_map: the address is an IPv4 address or a DNS name
    (:func:`~farmhand.keystore.plan.validate_hub_address`), so it needs no brackets."""
    return f"{address}:{port}"


def host_model(
    bundle: Bundle,
    *,
    host: str = "",
    hub_address: str = "",
    distro: Distro = DEBIAN_12,
    ssh_ports: tuple[int, ...] = (SSH_PORT,),
    key_logins_work: bool = False,
) -> HostModel:
    """The model of one host from its role's bundle; ``host`` picks a worker's certificate.

    ``hub_address`` (e.g. ``--hub-address``) is checked like farm.toml's: an IPv4 address or a
    DNS name, nothing that could change the rendered Nebula config."""
    hub_address = validate_hub_address(hub_address)
    if not bundle.hosts:
        raise UsageError(f"the {bundle.role.value} bundle holds no usable certificate")
    if bundle.role is Role.WORKER:
        name = host or bundle.hosts[0].name
    elif host and host != bundle.hosts[0].name:
        raise UsageError(
            f"the {bundle.role.value} bundle is for {bundle.hosts[0].name!r}, not {host!r}"
        )
    else:
        name = bundle.hosts[0].name
    bundle.host(name)  # fails clearly on an unknown worker name
    address = hub_address or bundle.plan.hub_address
    if bundle.role is not Role.HUB and not address:
        raise UsageError("the hub's public address is not in the bundle: give --hub-address HOST")
    return HostModel(
        role=bundle.role,
        name=name,
        bundle=bundle,
        hub_address=address,
        distro=distro,
        ssh_ports=tuple(sorted(set(ssh_ports))),
        key_logins_work=key_logins_work,
    )
