"""The lab's underlay: a private "internet" made of network namespaces, veths and one bridge.

Nothing here touches the host's own network namespace: the bridge lives in ``fhlab-net``, each
lab host gets a namespace ``fhlab-<host>`` with a veth (``eth0``) plugged into that bridge, and
the user's desktop is ``fhlab-desk``, from where pyinfra and ssh reach the hosts. Every veth is
created directly between two lab namespaces, so no interface or address ever appears in the
host's namespace, and deleting the namespaces removes everything.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from farmhand.errors import LabError
from farmhand.lab.system import run, send_signal, wait_gone

PREFIX = "fhlab"
UNDERLAY = IPv4Network("198.18.87.0/24")
"""The lab's "internet" (RFC 2544 benchmarking space: collides with no real network)."""
DESK_ADDRESS = IPv4Address("198.18.87.2")
NAT_LANS = IPv4Network("198.18.88.0/21")
"""Private LANs behind NAT routers: 198.18.88.0/24, 198.18.89.0/24, … one per router."""

NETNS_DIR = Path("/run/netns")
NETNS_LOCK = Path("/run/lock/farmhand-lab-netns.lock")
"""Held while a namespace is added or deleted, by every lab on the machine (see _netns_lock)."""
BRIDGE = "br0"
HOST_IF = "eth0"
_PREFIX = re.compile(r"[a-z][a-z0-9]{1,9}")  # fullmatch only: "$" accepts a final newline
_HOST_NAME = re.compile(r"[a-z][a-z0-9-]{0,12}")


def check_host_name(name: str) -> str:
    """Lab host names become interface names (15 bytes max): keep them short and plain."""
    if not _HOST_NAME.fullmatch(name) or name in {"net", "desk"} or name.startswith("nat-"):
        raise LabError(
            f"lab host name {name!r} must be 1-13 of a-z, 0-9, '-' (not net, desk, nat-…)"
        )
    return name


def _ip(*args: str, what: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["ip", *args], what=what, check=check, timeout=30)


def netns_exists(name: str) -> bool:
    """True when ``ip netns`` knows ``name``."""
    return (NETNS_DIR / name).exists()


def netns_argv(namespace: str, argv: Sequence[str]) -> list[str]:
    """``argv`` prefixed to run inside ``namespace``."""
    return ["ip", "netns", "exec", namespace, *argv]


@contextlib.contextmanager
def _netns_lock() -> Iterator[None]:
    """Serialize ``ip netns add``/``delete`` machine-wide. The first ``ip netns add`` makes
    /run/netns a shared bind mount of itself; two at once can stack two such mounts, and the
    namespaces made under the lower one vanish from view (seen with two labs booting at once:
    "Cannot open network namespace")."""
    NETNS_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with NETNS_LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_host_namespace(namespace: str) -> bool:
    """True when ``namespace``'s file is the host's own network namespace (a broken mount):
    its processes are then everything on the machine, never to be killed."""
    own = os.stat("/proc/self/ns/net")
    try:
        theirs = os.stat(NETNS_DIR / namespace)
    except OSError:
        return False
    return (own.st_dev, own.st_ino) == (theirs.st_dev, theirs.st_ino)


def netns_pids(namespace: str) -> list[int]:
    """Processes living in ``namespace`` (containers, ssh clients, pyinfra…)."""
    if not netns_exists(namespace):
        return []
    if _is_host_namespace(namespace):
        raise LabError(f"{NETNS_DIR / namespace} is the host's own network namespace: not a lab's")
    result = _ip("netns", "pids", namespace, what=f"listing processes in {namespace}", check=False)
    return sorted(int(x) for x in result.stdout.split() if x.isdigit())


def _link_exists(namespace: str, device: str) -> bool:
    return _ip("-n", namespace, "link", "show", device, what="", check=False).returncode == 0


@dataclass(frozen=True)
class NatRouter:
    """A home router in front of one lab host: its WAN on the underlay, the host on its LAN."""

    host: str
    namespace: str
    wan_address: IPv4Address
    lan: IPv4Network

    @property
    def lan_gateway(self) -> IPv4Address:
        """The router's own LAN address (the host's default gateway)."""
        return self.lan.network_address + 1

    @property
    def host_address(self) -> IPv4Address:
        """The NATed host's private address."""
        return self.lan.network_address + 2


class Underlay:
    """Creates and removes the lab's namespaces; every method is idempotent."""

    def __init__(self, prefix: str = PREFIX, network: IPv4Network = UNDERLAY) -> None:
        if not _PREFIX.fullmatch(prefix):
            raise LabError(f"lab prefix {prefix!r} must be 2-10 of a-z, 0-9, starting with a-z")
        self.prefix = prefix
        self.network = network

    # names ------------------------------------------------------------------------------

    @property
    def bridge_namespace(self) -> str:
        """Holds the bridge: the lab's "internet"."""
        return f"{self.prefix}-net"

    @property
    def desk_namespace(self) -> str:
        """The user's desktop: where pyinfra and ssh run."""
        return f"{self.prefix}-desk"

    def host_namespace(self, host: str) -> str:
        """Namespace of one lab host (its container joins it)."""
        return f"{self.prefix}-{check_host_name(host)}"

    def router_namespace(self, host: str) -> str:
        """Namespace of the NAT router in front of ``host``."""
        return f"{self.prefix}-nat-{check_host_name(host)}"

    def namespaces(self) -> list[str]:
        """Every existing namespace this lab owns (by prefix), e.g. after a crash."""
        if not NETNS_DIR.is_dir():
            return []
        return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(f"{self.prefix}-"))

    # building blocks --------------------------------------------------------------------

    def _add_namespace(self, name: str) -> None:
        with _netns_lock():
            if not netns_exists(name):
                _ip("netns", "add", name, what=f"creating network namespace {name}")
        _ip("-n", name, "link", "set", "lo", "up", what=f"bringing up lo in {name}")

    def _veth_to_bridge(self, port: str, namespace: str, device: str) -> None:
        """A veth from the bridge (port ``port``) to ``device`` in ``namespace``."""
        net = self.bridge_namespace
        has_port, has_device = _link_exists(net, port), _link_exists(namespace, device)
        if has_port and not has_device:  # half of a pair: start over
            _ip("-n", net, "link", "del", port, what=f"removing stale {port}")
        if has_device and not has_port:
            _ip("-n", namespace, "link", "del", device, what=f"removing stale {device}")
        if not (has_port and has_device):
            _ip(
                "-n", net, "link", "add", port, "type", "veth",
                "peer", "name", device, "netns", namespace,
                what=f"creating the veth {port} -> {namespace}",
            )  # fmt: skip
        _ip("-n", net, "link", "set", port, "master", BRIDGE, "up", what=f"plugging {port}")
        _ip("-n", namespace, "link", "set", device, "up", what=f"bringing up {device}")

    @staticmethod
    def _set_address(namespace: str, device: str, interface: IPv4Interface) -> None:
        _ip("-n", namespace, "addr", "flush", "dev", device, what=f"clearing {device}")
        _ip("-n", namespace, "addr", "add", str(interface), "dev", device, what="adding address")

    def _iface(self, address: IPv4Address) -> IPv4Interface:
        if address not in self.network or address in (
            self.network.network_address,
            self.network.broadcast_address,
        ):
            raise LabError(f"{address} is not a host address in the lab underlay {self.network}")
        return IPv4Interface(f"{address}/{self.network.prefixlen}")

    # public -----------------------------------------------------------------------------

    def create(self) -> None:
        """The bridge namespace and the desk, plugged in."""
        net = self.bridge_namespace
        self._add_namespace(net)
        if not _link_exists(net, BRIDGE):
            _ip("-n", net, "link", "add", BRIDGE, "type", "bridge", what="creating the bridge")
        _ip("-n", net, "link", "set", BRIDGE, "up", what="bringing up the bridge")
        desk = self.desk_namespace
        self._add_namespace(desk)
        self._veth_to_bridge("desk", desk, HOST_IF)
        self._set_address(desk, HOST_IF, self._iface(DESK_ADDRESS))

    def add_host(self, host: str, address: IPv4Address) -> str:
        """Plug ``host`` straight into the underlay with ``address``; return its namespace."""
        namespace = self.host_namespace(host)
        self._add_namespace(namespace)
        self._remove_router(host)
        self._veth_to_bridge(f"h-{host}", namespace, HOST_IF)
        self._set_address(namespace, HOST_IF, self._iface(address))
        self._forget_neighbour(address)
        return namespace

    def put_behind_nat(
        self,
        host: str,
        wan_address: IPv4Address,
        *,
        lan_index: int = 0,
        allow_udp_with: Sequence[IPv4Address] = (),
    ) -> NatRouter:
        """Put ``host`` behind a NAT router that owns ``wan_address`` on the underlay.

        The router masquerades the host's traffic, forwards TCP 22 to it (so the desk still
        reaches it by ``wan_address``) and drops all UDP between the host and underlay
        addresses other than ``allow_udp_with`` (the hub): Nebula must then relay via the hub.
        Safe to call on a running host: its namespace (and container) stay, its link moves.
        """
        lans = list(NAT_LANS.subnets(new_prefix=24))
        if not 0 <= lan_index < len(lans):
            raise LabError(f"NAT LAN index {lan_index} out of range 0-{len(lans) - 1}")
        router = NatRouter(host, self.router_namespace(host), wan_address, lans[lan_index])
        namespace = self.host_namespace(host)
        self._add_namespace(namespace)
        self._add_namespace(router.namespace)
        # Unplug the host from the bridge (its old veth goes with the bridge-side port).
        if _link_exists(self.bridge_namespace, f"h-{host}"):
            _ip("-n", self.bridge_namespace, "link", "del", f"h-{host}", what="unplugging host")
        self._veth_to_bridge(f"r-{host}", router.namespace, "wan")
        self._set_address(router.namespace, "wan", self._iface(wan_address))
        if _link_exists(namespace, HOST_IF) and not _link_exists(router.namespace, "lan"):
            _ip("-n", namespace, "link", "del", HOST_IF, what="removing the host's old link")
        if not _link_exists(router.namespace, "lan"):
            _ip(
                "-n", router.namespace, "link", "add", "lan", "type", "veth",
                "peer", "name", HOST_IF, "netns", namespace,
                what=f"creating the LAN veth behind {router.namespace}",
            )  # fmt: skip
        _ip("-n", router.namespace, "link", "set", "lan", "up", what="bringing up lan")
        _ip("-n", namespace, "link", "set", HOST_IF, "up", what="bringing up the host link")
        lan_prefix = router.lan.prefixlen
        self._set_address(
            router.namespace, "lan", IPv4Interface(f"{router.lan_gateway}/{lan_prefix}")
        )
        self._set_address(namespace, HOST_IF, IPv4Interface(f"{router.host_address}/{lan_prefix}"))
        _ip(
            "-n", namespace, "route", "replace", "default", "via", str(router.lan_gateway),
            what="routing the NATed host via its router",
        )  # fmt: skip
        run(
            ["ip", "netns", "exec", router.namespace, "sysctl", "-q", "-w",
             "net.ipv4.ip_forward=1"],
            what="enabling forwarding in the NAT router",
        )  # fmt: skip
        run(
            ["ip", "netns", "exec", router.namespace, "nft", "-f", "-"],
            input=self._nat_ruleset(router, allow_udp_with),
            what="loading the NAT router's nftables rules",
        )
        self._forget_neighbour(wan_address)
        return router

    def _forget_neighbour(self, address: IPv4Address) -> None:
        """Drop ARP entries for an address that moved to another link (new MAC address)."""
        for namespace in self.namespaces():
            _ip("-n", namespace, "neigh", "flush", "to", str(address), what="", check=False)

    def _nat_ruleset(self, router: NatRouter, allow_udp_with: Sequence[IPv4Address]) -> str:
        allowed = ", ".join(str(a) for a in allow_udp_with)
        udp_rules = (
            f'        iifname "lan" ip daddr {self.network} ip daddr != {{ {allowed} }} '
            "meta l4proto udp counter drop\n"
            f'        iifname "wan" ip saddr {self.network} ip saddr != {{ {allowed} }} '
            "meta l4proto udp counter drop\n"
            if allowed
            else f"        meta l4proto udp ip saddr {self.network} counter drop\n"
            f"        meta l4proto udp ip daddr {self.network} counter drop\n"
        )
        # Flush-then-define keeps this idempotent.
        return (
            "table ip fhlab_nat\n"
            "delete table ip fhlab_nat\n"
            "table ip fhlab_nat {\n"
            "    chain prerouting {\n"
            "        type nat hook prerouting priority dstnat; policy accept;\n"
            f'        iifname "wan" tcp dport 22 dnat to {router.host_address}\n'
            "    }\n"
            "    chain postrouting {\n"
            "        type nat hook postrouting priority srcnat; policy accept;\n"
            f'        oifname "wan" ip saddr {router.lan} masquerade\n'
            "    }\n"
            "    chain forward {\n"
            "        type filter hook forward priority filter; policy accept;\n"
            f"{udp_rules}"
            "    }\n"
            "}\n"
        )

    def _remove_router(self, host: str) -> None:
        router_ns = self.router_namespace(host)
        if netns_exists(router_ns):
            # Delete the LAN veth now: namespace teardown is asynchronous in the kernel.
            if _link_exists(router_ns, "lan"):
                _ip("-n", router_ns, "link", "del", "lan", what="unplugging the NAT LAN")
            self.delete_namespace(router_ns)
        if _link_exists(self.bridge_namespace, f"r-{host}"):
            _ip("-n", self.bridge_namespace, "link", "del", f"r-{host}", what="unplugging router")

    def remove_host(self, host: str) -> None:
        """Remove ``host``'s namespace (and NAT router); its processes must be gone first."""
        self._remove_router(host)
        self.delete_namespace(self.host_namespace(host))

    def delete_namespace(self, name: str) -> None:
        """Kill what still runs in namespace ``name``, then delete it."""
        if not netns_exists(name):
            return
        pids = netns_pids(name)
        if pids:
            send_signal(pids, signal.SIGKILL)
            wait_gone(pids, 10)
        with _netns_lock():
            if netns_exists(name):
                _ip("netns", "delete", name, what=f"deleting network namespace {name}")

    def teardown(self) -> None:
        """Delete every lab namespace (hosts, routers, desk, bridge), killing stragglers."""
        for name in self.namespaces():
            self.delete_namespace(name)
