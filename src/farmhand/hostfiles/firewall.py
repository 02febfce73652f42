"""The host firewall: nftables and its unit, or a firewalld zone for the overlay."""

from __future__ import annotations

from collections.abc import Callable

from farmhand.hostfiles.base import HostFile
from farmhand.model.host import HostModel
from farmhand.model.paths import FIREWALLD_ZONE, NFTABLES_CONF, SYSTEMD_DIR


def firewall_files(model: HostModel, expand: Callable[[str], bytes]) -> list[HostFile]:
    if model.distro.firewall == "nftables":
        return [
            HostFile(NFTABLES_CONF, expand("firewall/nftables.conf.j2"), 0o644),
            HostFile(
                f"{SYSTEMD_DIR}/farmhand-firewall.service",
                expand("firewall/farmhand-firewall.service.j2"),
            ),
        ]
    return [HostFile(FIREWALLD_ZONE, expand("firewall/farmhand-overlay.xml.j2"))]
