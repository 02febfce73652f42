"""The host firewall: publicly only SSH and the hub's Nebula port; the overlay is Nebula's job."""

from __future__ import annotations

from pyinfra.context import host
from pyinfra.facts.server import Command
from pyinfra.operations import server, systemd
from pyinfra.operations.util import any_changed

from farmhand.deploy.tasks import deploy, ops, packages
from farmhand.deploy.tasks import files as farm_files
from farmhand.hostfiles.base import HostFiles
from farmhand.model.firewalld import Allowed, Zone, parse_zones, underlay_zones
from farmhand.model.host import HostModel

STOCK_DEFAULT_ZONE = "public"
STOCK_PUBLIC_SERVICES = ("cockpit", "dhcpv6-client", "ssh")
"""What EL 8/9 open by default, assumed where firewalld is not even installed yet."""

# Never a failed fact on a fresh host: empty until firewalld is installed. The permanent
# configuration can be read without the daemon (firewall-offline-cmd), the runtime one cannot.
DEFAULT_ZONE_FACT = (
    "firewall-cmd --get-default-zone 2>/dev/null"
    " || firewall-offline-cmd --get-default-zone 2>/dev/null || true"
)
RUNTIME_FACT = "firewall-cmd --list-all-zones 2>/dev/null || true"
PERMANENT_FACT = (
    "firewall-cmd --permanent --list-all-zones 2>/dev/null"
    " || firewall-offline-cmd --list-all-zones 2>/dev/null || true"
)


@deploy("Host firewall")
def firewall(model: HostModel, host_files: HostFiles) -> None:
    packages.install(model, *model.distro.firewall_packages)
    if model.distro.firewall == "nftables":
        _nftables(host_files)
    else:
        _firewalld(model, host_files)


def _nftables(host_files: HostFiles) -> None:
    ruleset = farm_files.install(host_files.plain("firewall"))
    ops.managed_service(
        "firewall",
        "farmhand-firewall.service",
        host_files.units("firewall"),
        depends=ruleset,
        on_change="reload",
        start_name="farmhand-firewall loaded and enabled",
        restart_name="Reload the firewall after its rules changed",
    )


def _firewalld(model: HostModel, host_files: HostFiles) -> None:
    """Only what farmhand allows on the underlay, in every zone that can see it.

    firewalld sends a packet through the zone of its source address, else of its interface,
    else the default zone. So every zone bound to an interface or a source (at runtime or
    permanently) and the default zone are the underlay's, except our overlay zone: each keeps
    only the SSH ports, the hub's Nebula port and DHCPv6, with no source ports, protocols,
    forward ports or rich rules, and a target that refuses the rest. They are cleaned where
    they stand rather than replaced by a zone of ours: NetworkManager binds a connection's
    interface to the zone its profile names whenever it comes up, so whatever zone that is has
    to be clean. Changes go to the permanent configuration, then one reload makes the runtime
    the same (dropping anything added at runtime only); a converged host gets no operation."""
    zone = farm_files.install(host_files.of("firewall"))
    systemd.service(
        name="firewalld running and enabled",
        service="firewalld.service",
        enabled=True,
        running=True,
    )
    default = (host.get_fact(Command, command=DEFAULT_ZONE_FACT) or "").strip()
    runtime = parse_zones(host.get_fact(Command, command=RUNTIME_FACT) or "")
    permanent = parse_zones(host.get_fact(Command, command=PERMANENT_FACT) or "")
    if not permanent:  # firewalld not installed yet: its stock configuration
        default = default or STOCK_DEFAULT_ZONE
        permanent = {default: Zone(default, {"services": list(STOCK_PUBLIC_SERVICES)})}
    names = underlay_zones(default, runtime, permanent)
    allowed = Allowed.of(model.ssh_ports, model.listen_port)
    commands = [c for name in names if name in permanent for c in allowed.fix(permanent[name])]
    stale_runtime = any(allowed.fix(runtime[name]) for name in names if name in runtime)
    if commands:
        server.shell(
            name=f"Publicly only SSH and Nebula in firewalld's underlay zones ({', '.join(names)})",
            commands=commands,
        )
    server.shell(
        name="Reload firewalld",
        commands=["firewall-cmd --reload"],
        _if=lambda: bool(commands) or stale_runtime or any_changed(*zone)(),
    )
