"""The farm plan: network, port, hub address and who gets which overlay addresses.

It is the one human-readable, hand-editable file of the key store (``farm.toml``); everything
else is derived from it and the register. Its values and checks live in the leaf
keystore/plan_fields.py (re-exported here), which farmhand/settings.py builds on; this module
builds on both.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from ipaddress import AddressValueError, IPv4Address, IPv4Interface, IPv4Network
from typing import Any

import tomli_w

from farmhand.durations import format_duration
from farmhand.errors import StoreError, UsageError
from farmhand.keystore.plan_fields import (
    DEFAULT_BOSSES,
    DEFAULT_CA_LIFETIME,
    DEFAULT_FARM_UID,
    DEFAULT_FARM_USER,
    DEFAULT_MTU,
    DEFAULT_NAME,
    DEFAULT_NETWORK,
    DEFAULT_PORT,
    DEFAULT_WORKERS,
    HUB_NAME,
    MTU_RANGE,
    PLAN_FORMAT,
    PORT_RANGE,
    SMALLEST_PREFIX,
    UID_RANGE,
    WORKER_PREFIX,
    AddressPlan,
    AddressRange,
    Role,
    default_addresses,
    parse_network,
    validate_farm_name,
    validate_fingerprint,
    validate_group,
    validate_host_name,
    validate_hub_address,
    validate_port,
    validate_user,
)
from farmhand.settings import FarmSettings, read_plan

__all__ = [  # the plan's values and checks are re-exported from plan_fields
    "DEFAULT_BOSSES",
    "DEFAULT_CA_LIFETIME",
    "DEFAULT_FARM_UID",
    "DEFAULT_FARM_USER",
    "DEFAULT_MTU",
    "DEFAULT_NAME",
    "DEFAULT_NETWORK",
    "DEFAULT_PORT",
    "DEFAULT_WORKERS",
    "HUB_NAME",
    "MTU_RANGE",
    "PLAN_FORMAT",
    "PORT_RANGE",
    "SMALLEST_PREFIX",
    "UID_RANGE",
    "WORKER_PREFIX",
    "AddressPlan",
    "AddressRange",
    "FarmPlan",
    "Role",
    "default_addresses",
    "new_plan",
    "parse_network",
    "validate_farm_name",
    "validate_fingerprint",
    "validate_group",
    "validate_host_name",
    "validate_hub_address",
    "validate_port",
    "validate_user",
]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


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
    settings: FarmSettings = field(default_factory=FarmSettings)
    """farm.toml's other settings (farmhand/settings.py declares every key), checked."""

    def overlay_interface(self, address: IPv4Address) -> IPv4Interface:
        """An address with the farm's prefix, as Nebula certificates carry it."""
        return IPv4Interface((address, self.network.prefixlen))

    def with_hub_address(self, hub_address: str) -> FarmPlan:
        return replace(self, hub_address=validate_hub_address(hub_address))

    def with_settings(self, **given: Any) -> FarmPlan:
        """This plan with farm.toml settings set, spelt as in farm.toml; checked."""
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
