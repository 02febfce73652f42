"""Distribution packages, the same call on apt and dnf hosts."""

from __future__ import annotations

from pyinfra.context import host
from pyinfra.operations import apt, dnf

from farmhand.model.host import HostModel

# Wait for the dpkg lock instead of failing at once: it is held by the apt of a deploy that
# was interrupted (Ctrl-C, a dropped connection) and still finishes on the host, or by
# unattended-upgrades on a freshly booted cloud host.
APT_LOCK_WAIT = "-o DPkg::Lock::Timeout=300"


def install(model: HostModel, *packages: str) -> None:
    """Install ``packages``; host data ``farmhand_apt_update=False`` skips the index refresh
    (offline sites and the lab, whose images carry a seeded package cache)."""
    refresh = bool(host.data.get("farmhand_apt_update", True))
    label = ", ".join(packages)
    if model.distro.package_manager == "apt":
        if refresh:
            apt.update(name="Refresh the package index (at most hourly)", cache_time=3600)
        apt.packages(
            name=f"Packages: {label}",
            packages=list(packages),
            no_recommends=True,
            extra_install_args=APT_LOCK_WAIT,
        )
    else:
        dnf.packages(name=f"Packages: {label}", packages=list(packages))
