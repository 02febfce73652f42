"""One host a deploy goes to, and how to reach it (``farmhand.deploy.targets`` parses them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """One host to deploy to, and how to reach it."""

    host: str
    user: str = "root"
    port: int = 22
    key: str = ""
    local: bool = False
    name: str = ""
    known_hosts: str = ""
    strict_host_keys: str = "accept-new"
    sshd_port: int = 0
    """The port sshd listens on at the host, when it differs from ``port`` (a port forward,
    as Vagrant's VirtualBox 127.0.0.1:2222 -> 22): the host firewall must keep that one open."""

    @property
    def label(self) -> str:
        return self.name or ("@local" if self.local else self.host)

    def inventory_entry(self) -> tuple[str, dict[str, object]]:
        """pyinfra's (name, data) for this target."""
        if self.local:
            return "@local", {}
        data: dict[str, object] = {
            "ssh_hostname": self.host.strip("[]"),
            "ssh_user": self.user,
            "ssh_port": self.port,
            "ssh_strict_host_key_checking": self.strict_host_keys,
        }
        if self.key:
            data["ssh_key"] = self.key
        if self.known_hosts:
            data["ssh_known_hosts_file"] = self.known_hosts
        if self.user != "root":
            data["_sudo"] = True
        if self.sshd_port:
            data["farmhand_ssh_port"] = self.sshd_port
        return self.label, data
