"""The farm plan: network, port, hub address and who gets which overlay addresses.

It is the one human-readable, hand-editable file of the key store (``farm.toml``); everything
else is derived from it and the register.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field, replace
from enum import Enum
from ipaddress import AddressValueError, IPv4Address, IPv4Interface, IPv4Network, NetmaskValueError
from typing import TYPE_CHECKING, Any

import tomli_w

from farmhand.durations import format_duration
from farmhand.errors import StoreError, UsageError

if TYPE_CHECKING:
    from farmhand.settings import FarmSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

PLAN_FORMAT = 1
DEFAULT_NAME = "farm"
DEFAULT_NETWORK = "10.87.0.0/16"
DEFAULT_PORT = 42042
DEFAULT_CA_LIFETIME = 5 * 365 * 86400
DEFAULT_WORKERS = 100
DEFAULT_BOSSES = ("boss1",)
SMALLEST_PREFIX = 26
# 1380 fits every common internet path: GCP's 1460-byte underlay and PPPoE's 1492 minus
# Nebula's 60 bytes of IPv4+UDP+header+tag (IPv6 underlays: 80). Raise it only when every
# host's path carries more (e.g. 1440 on a plain 1500-byte LAN or cloud VPC).
DEFAULT_MTU = 1380
DEFAULT_FARM_USER = "farmhand"
DEFAULT_FARM_UID = 2042

PORT_RANGE = (1, 65535)
MTU_RANGE = (1280, 8940)
UID_RANGE = (1000, 60000)

# Whole-string patterns, always used with fullmatch: '$' would also accept a final newline.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_HOST_NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?")
_USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,30}")
_HOSTNAME_RE = re.compile(
    r"(?=.{1,253}\Z)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)


class Role(str, Enum):
    """What a certificate is for; each role has its own address range and Nebula groups."""

    HUB = "hub"
    WORKER = "worker"
    BOSS = "boss"

    @property
    def groups(self) -> tuple[str, ...]:
        return _ROLE_GROUPS[self]


_ROLE_GROUPS = {
    Role.HUB: ("farm", "hub", "lighthouse"),
    Role.WORKER: ("farm", "worker"),
    Role.BOSS: ("farm", "boss"),
}
HUB_NAME = "hub"
WORKER_PREFIX = "worker"


@dataclass(frozen=True)
class AddressRange:
    """An inclusive range of overlay addresses reserved for one kind of host."""

    first: IPv4Address
    last: IPv4Address

    @classmethod
    def parse(cls, text: str, what: str) -> AddressRange:
        try:
            first_text, last_text = (part.strip() for part in text.split("-", 1))
            first, last = IPv4Address(first_text), IPv4Address(last_text)
        except (ValueError, AddressValueError):
            raise UsageError(
                f"invalid {what} range {text!r}: expect FIRST-LAST addresses"
            ) from None
        if last < first:
            raise UsageError(f"invalid {what} range {text!r}: last address before first")
        return cls(first, last)

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"

    @property
    def size(self) -> int:
        return int(self.last) - int(self.first) + 1

    def __contains__(self, address: object) -> bool:
        return isinstance(address, IPv4Address) and self.first <= address <= self.last

    def overlaps(self, other: AddressRange) -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass(frozen=True)
class AddressPlan:
    hub: IPv4Address
    lighthouses: AddressRange
    servers: AddressRange
    bosses: AddressRange
    workers: AddressRange

    def range_for(self, role: Role) -> AddressRange:
        if role is Role.WORKER:
            return self.workers
        if role is Role.BOSS:
            return self.bosses
        return self.lighthouses


def _no_settings() -> FarmSettings:
    """farm.toml's settings when it sets none (all defaults).

    farmhand.settings declares every farm.toml key, the plan's own with this module's checks,
    so it imports this module; this module imports it only when first needed."""
    from farmhand.settings import FarmSettings

    return FarmSettings()


@dataclass(frozen=True)
class FarmPlan:
    """Everything about the farm that is not a key: the same on the desktop and in every bundle."""

    name: str
    network: IPv4Network
    port: int
    addresses: AddressPlan
    hub_address: str = ""
    ca_lifetime: int = DEFAULT_CA_LIFETIME
    cert_lifetime: int = DEFAULT_CA_LIFETIME
    mtu: int = DEFAULT_MTU
    farm_user: str = DEFAULT_FARM_USER
    farm_uid: int = DEFAULT_FARM_UID
    settings: FarmSettings = field(default_factory=_no_settings)
    """farm.toml's other settings (farmhand/settings.py declares every key), checked."""

    def overlay_interface(self, address: IPv4Address) -> IPv4Interface:
        """An address with the farm's prefix, as Nebula certificates carry it."""
        return IPv4Interface((address, self.network.prefixlen))

    def with_hub_address(self, hub_address: str) -> FarmPlan:
        return replace(self, hub_address=validate_hub_address(hub_address))

    def with_settings(self, **given: Any) -> FarmPlan:
        """This plan with farm.toml settings set, spelt as in farm.toml; checked."""
        from farmhand.settings import FarmSettings  # it builds on this module (see _no_settings)

        return replace(self, settings=FarmSettings({**self.settings.given, **given}))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format": PLAN_FORMAT,
            "name": self.name,
            "network": str(self.network),
            "port": self.port,
            "hub_address": self.hub_address,
            "ca_lifetime": format_duration(self.ca_lifetime),
            "cert_lifetime": format_duration(self.cert_lifetime),
            "mtu": self.mtu,
            "farm_user": self.farm_user,
            "farm_uid": self.farm_uid,
            "addresses": {
                "hub": str(self.addresses.hub),
                "lighthouses": str(self.addresses.lighthouses),
                "servers": str(self.addresses.servers),
                "bosses": str(self.addresses.bosses),
                "workers": str(self.addresses.workers),
            },
        }
        data.update(self.settings.given)
        return data

    def to_toml(self) -> str:
        header = (
            "# farmhand farm plan: the one hand-editable file of this key store.\n"
            "# Address ranges are inclusive; issued addresses are never reused.\n"
        )
        return header + tomli_w.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FarmPlan:
        """The plan from farm.toml's data (or a bundle's copy), every key checked."""
        from farmhand.settings import read_plan  # it builds on this module (see _no_settings)

        try:
            plan = cls(**read_plan(data))
        except (KeyError, TypeError, ValueError, AddressValueError) as exc:
            raise UsageError(f"farm plan is incomplete or invalid: {exc}") from None
        plan.check()
        return plan

    @classmethod
    def from_toml(cls, text: str, source: str = "farm.toml") -> FarmPlan:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise StoreError(f"{source} is not valid TOML: {exc}") from None
        try:
            return cls.from_dict(data)
        except UsageError as exc:
            raise StoreError(f"{source}: {exc}") from None

    def check(self) -> None:
        """Every range inside the network, no two overlapping, the hub a lighthouse address."""
        ranges = {k: v for k, v in vars(self.addresses).items() if isinstance(v, AddressRange)}
        usable = AddressRange(self.network.network_address + 1, self.network.broadcast_address - 1)
        for what, rng in ranges.items():
            if rng.first not in usable or rng.last not in usable:
                raise UsageError(f"{what} range {rng} is not inside network {self.network}")
        items = list(ranges.items())
        for i, (a_name, a) in enumerate(items):
            for b_name, b in items[i + 1 :]:
                if a.overlaps(b):
                    raise UsageError(f"address ranges {a_name} ({a}) and {b_name} ({b}) overlap")
        if self.addresses.hub not in self.addresses.lighthouses:
            raise UsageError(f"hub address {self.addresses.hub} is not in the lighthouses range")


def validate_farm_name(name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise UsageError(
            f"invalid farm name {name!r}: use letters, digits, '.', '_' or '-' (at most 63)"
        )
    return name


def validate_host_name(name: str) -> str:
    """Certificate names double as hostnames: lowercase letters, digits and inner hyphens."""
    if not _HOST_NAME_RE.fullmatch(name):
        raise UsageError(
            f"invalid name {name!r}: use lowercase letters, digits and '-' (at most 32)"
        )
    return name


def validate_user(name: str) -> str:
    if not _USER_RE.fullmatch(name):
        raise UsageError(f"invalid farm user {name!r}: a lowercase Unix user name")
    return name


def validate_port(port: int) -> int:
    low, high = PORT_RANGE
    if not low <= port <= high:
        raise UsageError(f"invalid port {port}: must be between {low} and {high}")
    return port


def validate_hub_address(address: str) -> str:
    """A hub's public host name or IP address (no scheme, no port), or empty for 'not yet'."""
    address = address.strip()
    if not address:
        return ""
    try:
        IPv4Address(address)
        return address
    except AddressValueError:
        pass
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    if ":" in address:
        from ipaddress import IPv6Address

        try:
            return str(IPv6Address(address))
        except AddressValueError:
            raise UsageError(
                f"invalid hub address {address!r}: give a host name or IP; the port is --port"
            ) from None
    if not _HOSTNAME_RE.fullmatch(address) or address.replace(".", "").isdigit():
        raise UsageError(f"invalid hub address {address!r}: not a host name or IP address")
    return address


def parse_network(text: str) -> IPv4Network:
    try:
        network = IPv4Network(text.strip(), strict=True)
    except (AddressValueError, NetmaskValueError, ValueError) as exc:
        raise UsageError(f"invalid network {text!r}: {exc}") from None
    if network.prefixlen > SMALLEST_PREFIX:
        raise UsageError(
            f"network {network} is too small for a farm: use a /{SMALLEST_PREFIX} or larger"
        )
    return network


def default_addresses(network: IPv4Network) -> AddressPlan:
    """The default layout: hub .0.1, servers .1.x, bosses .10.x, workers from .99.1 upward.

    Networks of /16 or larger use those offsets as they are; smaller ones scale them down
    (a /24 gets hub .1, servers .4-.9, bosses .10-.49, workers .50-.254).
    """
    base = int(network.network_address)
    size = network.num_addresses
    if network.prefixlen <= 16:
        lighthouse_end, server_end, boss_end = 256, 10 * 256, 99 * 256
    else:
        lighthouse_end = max(2, size // 64)
        server_end = max(lighthouse_end + 1, size * 10 // 256)
        boss_end = max(server_end + 1, size * 50 // 256)

    def rng(first: int, end: int) -> AddressRange:
        return AddressRange(IPv4Address(base + first), IPv4Address(base + end - 1))

    last_worker = size - 1  # exclusive end: the broadcast address
    return AddressPlan(
        hub=IPv4Address(base + 1),
        lighthouses=rng(1, lighthouse_end),
        servers=rng(lighthouse_end if network.prefixlen > 16 else 257, server_end),
        bosses=rng(server_end if network.prefixlen > 16 else server_end + 1, boss_end),
        workers=rng(boss_end if network.prefixlen > 16 else boss_end + 1, last_worker),
    )


def new_plan(
    name: str = DEFAULT_NAME,
    network: str = DEFAULT_NETWORK,
    port: int = DEFAULT_PORT,
    hub_address: str = "",
    ca_lifetime: int = DEFAULT_CA_LIFETIME,
    cert_lifetime: int | None = None,
) -> FarmPlan:
    """A plan with the defaults (see :func:`default_addresses`), validated."""
    net = parse_network(network)
    plan = FarmPlan(
        name=validate_farm_name(name),
        network=net,
        port=validate_port(port),
        addresses=default_addresses(net),
        hub_address=validate_hub_address(hub_address),
        ca_lifetime=ca_lifetime,
        cert_lifetime=cert_lifetime if cert_lifetime is not None else ca_lifetime,
    )
    plan.check()
    return plan
