"""The host firewall: nftables and its unit, or a firewalld zone for the overlay."""

from __future__ import annotations

from collections.abc import Callable

from farmhand.hostfiles.base import RenderedFile
from farmhand.model.host import HostModel
from farmhand.model.paths import FIREWALLD_ZONE, NFTABLES_CONF, SYSTEMD_DIR


def firewall_files(model: HostModel, render: Callable[[str], bytes]) -> list[RenderedFile]:
    if model.distro.firewall == "nftables":
        return [
            RenderedFile(NFTABLES_CONF, render("firewall/nftables.conf.j2"), 0o644),
            RenderedFile(
                f"{SYSTEMD_DIR}/farmhand-firewall.service",
                render("firewall/farmhand-firewall.service.j2"),
            ),
        ]
    return [RenderedFile(FIREWALLD_ZONE, render("firewall/farmhand-overlay.xml.j2"))]
