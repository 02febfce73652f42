"""Where a lab host plugs into the underlay: straight in, or behind a NAT router LAN of its
own that lets UDP through with the hub only (as a home router lets a Nebula handshake)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from ipaddress import IPv4Address

from farmhand.lab.net import NatRouter, Underlay
from farmhand.lab.records import HostRecord


def plug(underlay: Underlay, rec: HostRecord, hub: Callable[[], IPv4Address]) -> NatRouter | None:
    """Plug ``rec`` in where its record says; its NAT router, or None when plugged straight in.
    ``hub`` gives the hub's address, looked up only for a host behind NAT."""
    if rec.nat_lan is None:
        underlay.add_host(rec.name, rec.address)
        return None
    return underlay.put_behind_nat(
        rec.name, rec.address, lan_index=rec.nat_lan, allow_udp_with=[hub()]
    )


def free_nat_lan(records: Sequence[HostRecord]) -> int:
    """The lowest NAT router LAN index no host sits behind."""
    used = {r.nat_lan for r in records if r.nat_lan is not None}
    return min(set(range(len(used) + 1)) - used)
