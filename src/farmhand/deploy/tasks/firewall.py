"""The host firewall: publicly only SSH and the hub's Nebula port; the overlay is Nebula's job."""

from __future__ import annotations

from pyinfra.context import host
from pyinfra.facts.server import Command
from pyinfra.operations import server, systemd
from pyinfra.operations.util import any_changed

from farmhand.deploy.tasks import deploy, ops, packages
from farmhand.deploy.tasks import files as farm_files
from farmhand.hostfiles.base import HostFiles
from farmhand.model.host import HostModel

PUBLIC_SERVICES = frozenset({"ssh", "dhcpv6-client"})
EL_DEFAULT_EXTRA_SERVICES = frozenset({"cockpit"})


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
    # A zone file only: firewalld itself is the distribution's, and reloads through firewall-cmd.
    zone = farm_files.install(host_files.of("firewall"))
    systemd.service(
        name="firewalld running and enabled",
        service="firewalld.service",
        enabled=True,
        running=True,
    )
    # Empty on a fresh host (firewalld not installed or not running yet): never a failed fact.
    listing = host.get_fact(
        Command, command="firewall-cmd --permanent --zone=public --list-all 2>/dev/null || true"
    )
    wanted = [f"{p}/tcp" for p in model.ssh_ports]
    if model.listen_port:
        wanted.append(f"{model.listen_port}/udp")
    ports = _zone_field(listing, "ports") or set()
    commands = [
        f"firewall-cmd --permanent --zone=public --add-port={port}"
        for port in wanted
        if port not in ports
    ]
    # Publicly only SSH and Nebula: drop what the distribution opens (EL: cockpit), keeping
    # DHCPv6 so hosts keep their IPv6 address. Unknown before firewalld runs: its defaults then.
    services = _zone_field(listing, "services")
    extra = EL_DEFAULT_EXTRA_SERVICES if services is None else services - PUBLIC_SERVICES
    commands += [
        f"firewall-cmd --permanent --zone=public --remove-service={service}"
        for service in sorted(extra)
    ]
    if commands:
        server.shell(
            name="Publicly only SSH and Nebula in firewalld's public zone", commands=commands
        )
    server.shell(
        name="Reload firewalld",
        commands=["firewall-cmd --reload"],
        _if=lambda: bool(commands) or any_changed(*zone)(),
    )


def _zone_field(listing: str | None, field: str) -> set[str] | None:
    """One field (``ports``, ``services``) of ``firewall-cmd --list-all``; None if unknown."""
    if not listing:
        return None
    for line in listing.splitlines():
        key, _, value = line.strip().partition(":")
        if key == field:
            return set(value.split())
    return set()
