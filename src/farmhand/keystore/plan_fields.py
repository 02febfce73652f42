"""The farm plan's values and checks, without the plan itself: roles, address ranges, defaults.

A leaf: farmhand/settings.py declares farm.toml's keys with these checks, and keystore/plan.py
builds :class:`~farmhand.keystore.plan.FarmPlan` on both (it re-exports everything here), so
neither needs to import the other lazily.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from ipaddress import AddressValueError, IPv4Address, IPv4Network, IPv6Address, NetmaskValueError

from farmhand.errors import UsageError

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
_FINGERPRINT_RE = re.compile(r"[0-9a-f]{64}")
_GROUP_RE = re.compile(r"[a-z][a-z0-9-]{0,31}")
_IPV4_RE = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
IPV6_REFUSED = "Nebula here listens on IPv4 only: give the hub's IPv4 address or a DNS name"
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


def validate_fingerprint(value: str, what: str = "fingerprint") -> str:
    """A certificate fingerprint as the register and bundles keep it: 64 lowercase hex digits."""
    if not _FINGERPRINT_RE.fullmatch(value):
        raise UsageError(f"invalid {what} {value!r}: expected 64 lowercase hex digits")
    return value


def validate_group(name: str) -> str:
    """A Nebula group name as farmhand issues them (see :attr:`Role.groups`)."""
    if not _GROUP_RE.fullmatch(name):
        raise UsageError(f"invalid group {name!r}: use lowercase letters, digits and '-'")
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
    """The hub's public address as the farm's hosts dial it: an IPv4 address or a DNS host name
    (RFC 1123 labels, at most 253 characters), no scheme, no port; empty for 'not yet'.

    The one check for every way a hub address comes in (keygen, farm.toml, a bundle's plan,
    ``--hub-address`` of files, deploy, bootstrap, cloud-init and join): the value ends up in
    the rendered Nebula config, so anything but a plain name or address is refused, not
    quoted. Surrounding spaces are dropped; any other whitespace or control character is
    refused. IPv6 is refused with its reason: the Nebula config here listens on 0.0.0.0.
    """
    address = address.strip(" ")
    if not address:
        return ""
    shown = address if len(address) <= 80 else address[:77] + "..."
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c.isspace() for c in address):
        raise UsageError(
            f"invalid hub address {shown!r}: it holds whitespace or a control character"
        )
    if _IPV4_RE.fullmatch(address):
        try:
            IPv4Address(address)
        except AddressValueError:
            raise UsageError(f"invalid hub address {shown!r}: not an IPv4 address") from None
        return address
    if ":" in address:
        try:
            IPv6Address(address.removeprefix("[").removesuffix("]"))
        except AddressValueError:
            raise UsageError(
                f"invalid hub address {shown!r}: give a host name or IPv4 address; "
                "the port is --port"
            ) from None
        raise UsageError(f"invalid hub address {shown!r}: {IPV6_REFUSED}")
    if not _HOSTNAME_RE.fullmatch(address) or address.replace(".", "").isdigit():
        raise UsageError(f"invalid hub address {shown!r}: not a host name or IP address")
    return address


def parse_network(text: str) -> IPv4Network:
    try:
        network = IPv4Network(text.strip(" "), strict=True)  # spaces only: no newline
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
