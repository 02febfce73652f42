"""Where a deploy goes: ``host``, ``user@host``, ``user@host:port``, ``@local`` or
``@vagrant/NAME`` (a Vagrant machine, resolved by ``farmhand.deploy.vagrant``)."""

from __future__ import annotations

import re

from farmhand.deploy.target import Target
from farmhand.deploy.vagrant import resolve_target
from farmhand.errors import UsageError

_TARGET = re.compile(
    r"(?:(?P<user>[a-z_][a-z0-9_.-]*)@)?(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+)"
    r"(?::(?P<port>[0-9]{1,5}))?"
)  # fullmatch only: "$" would accept a final newline


def parse_target(
    text: str, *, user: str = "", port: int = 0, key: str = "", known_hosts: str = ""
) -> Target:
    if text == "@local":
        return Target(host="localhost", local=True, name="@local")
    if text.startswith("@vagrant/"):
        return resolve_target(text)  # runs `vagrant ssh-config NAME`
    match = _TARGET.fullmatch(text.strip(" "))
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
