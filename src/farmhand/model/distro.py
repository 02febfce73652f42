"""What differs between the supported target distributions, in one place.

Deploys and templates never test distribution names themselves; they ask a ``Distro``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from farmhand.errors import UsageError


class Family(str, Enum):
    DEBIAN = "debian"  # Debian and Ubuntu
    EL = "el"  # AlmaLinux, Rocky, RHEL


@dataclass(frozen=True)
class Distro:
    """A supported target: package names, service names and firewall/SELinux needs."""

    id: str
    major: int
    family: Family

    @property
    def package_manager(self) -> str:
        return "apt" if self.family is Family.DEBIAN else "dnf"

    @property
    def nebula_from_package(self) -> bool:
        """Debian 12+ and Ubuntu 24.04+ ship nebula (1.6.1 and later); Ubuntu 22.04 has no
        nebula package, and EL none either: they need the pinned upstream release."""
        if self.family is not Family.DEBIAN:
            return False
        return not (self.id == "ubuntu" and self.major < 24)

    @property
    def nebula_binary(self) -> str:
        return "/usr/bin/nebula" if self.nebula_from_package else "/usr/local/bin/nebula"

    @property
    def samba_service(self) -> str:
        return "smbd" if self.family is Family.DEBIAN else "smb"

    @property
    def samba_packages(self) -> tuple[str, ...]:
        # iproute2: the hub's wait-overlay check runs `ip` before Samba starts.
        if self.family is Family.DEBIAN:
            return ("samba", "iproute2")
        return ("samba", "iproute", "policycoreutils-python-utils")

    @property
    def mount_packages(self) -> tuple[str, ...]:
        return ("cifs-utils",)

    @property
    def firewall(self) -> str:
        """The host firewall farmhand manages: nftables on Debian/Ubuntu, firewalld on EL."""
        return "nftables" if self.family is Family.DEBIAN else "firewalld"

    @property
    def firewall_packages(self) -> tuple[str, ...]:
        return ("nftables",) if self.family is Family.DEBIAN else ("firewalld",)

    @property
    def selinux(self) -> bool:
        return self.family is Family.EL

    @property
    def ssh_service(self) -> str:
        return "ssh" if self.family is Family.DEBIAN else "sshd"


SUPPORTED = {
    "debian": (Family.DEBIAN, 12),
    "ubuntu": (Family.DEBIAN, 22),
    "almalinux": (Family.EL, 8),
    "rocky": (Family.EL, 8),
    "rhel": (Family.EL, 8),
}


def distro_from_os_release(meta: dict[str, Any]) -> Distro:
    """Classify a host from its /etc/os-release fields (as pyinfra's LinuxDistribution has them)."""
    distro_id = str(meta.get("ID", "")).strip('"').lower()
    version = str(meta.get("VERSION_ID", "")).strip('"')
    try:
        major = int(version.split(".")[0])
    except ValueError:
        major = 0
    if distro_id not in SUPPORTED:
        raise UsageError(
            f"unsupported distribution {distro_id or 'unknown'!r}: farmhand supports "
            "Debian 12+, Ubuntu 22.04+, AlmaLinux/Rocky 8-9"
        )
    family, minimum = SUPPORTED[distro_id]
    if major < minimum or (family is Family.EL and major > 9):
        raise UsageError(f"unsupported version {distro_id} {version}")
    return Distro(id=distro_id, major=major, family=family)


DEBIAN_12 = Distro("debian", 12, Family.DEBIAN)
