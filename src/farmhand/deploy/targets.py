"""Where a deploy goes: ``host``, ``user@host``, ``user@host:port``, ``@local`` or
``@vagrant/NAME`` (a Vagrant machine, resolved by ``farmhand.vagrant``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from farmhand.errors import UsageError

_TARGET = re.compile(
    r"^(?:(?P<user>[a-z_][a-z0-9_.-]*)@)?(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+)"
    r"(?::(?P<port>\d{1,5}))?$"
)


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


def parse_target(
    text: str, *, user: str = "", port: int = 0, key: str = "", known_hosts: str = ""
) -> Target:
    if text == "@local":
        return Target(host="localhost", local=True, name="@local")
    if text.startswith("@vagrant/"):
        from farmhand.vagrant import resolve_target  # runs `vagrant ssh-config NAME`

        return resolve_target(text)
    match = _TARGET.match(text.strip())
    if not match:
        raise UsageError(
            f"invalid target {text!r}: use HOST, USER@HOST, USER@HOST:PORT or @vagrant/NAME"
        )
    target_port = int(match["port"]) if match["port"] else (port or 22)
    if not 1 <= target_port <= 65535:
        raise UsageError(f"invalid port in target {text!r}")
    return Target(
        host=match["host"],
        user=match["user"] or user or "root",
        port=target_port,
        key=key,
        name=text.strip(),
        known_hosts=known_hosts,
    )
