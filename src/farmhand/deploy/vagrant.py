"""Vagrant machines as deploy targets: ``vagrant ssh-config`` parsed into farmhand targets.

``farmhand deploy ROLE @vagrant/NAME`` and ``farmhand verify ROLE @vagrant/NAME`` ask Vagrant how
to reach machine NAME (``vagrant ssh-config NAME``, run in the current folder or ``$VAGRANT_CWD``)
instead of making the user copy ports and key paths by hand. Vagrant forwards a host port to the
guest's sshd (VirtualBox: 127.0.0.1:2222 -> 22) or gives the guest's management address
(libvirt); either way the guest's sshd listens on ``GUEST_SSH_PORT``, which is the port the
host firewall must keep open, not the forwarded one we connect to.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from farmhand.deploy.target import Target
from farmhand.errors import FarmhandError, UsageError

PREFIX = "@vagrant/"
GUEST_SSH_PORT = 22  # Vagrant's config.ssh.guest_port default, and what our Vagrantfile keeps
_TIMEOUT = 120

Runner = Callable[[Sequence[str]], str]
"""Runs a vagrant command line and returns its stdout (raises VagrantError on failure)."""


class VagrantError(FarmhandError):
    """Vagrant is missing, or could not say how to reach a machine."""


@dataclass(frozen=True)
class SshConfig:
    """One ``Host`` block of ``vagrant ssh-config``: what we need to log in."""

    name: str
    hostname: str
    user: str
    port: int
    identity_files: tuple[str, ...] = ()
    strict_host_keys: str = "no"
    known_hosts: str = "/dev/null"
    options: dict[str, str] = field(default_factory=dict)

    def target(self) -> Target:
        """The deploy target for this machine (label ``@vagrant/NAME``)."""
        return Target(
            host=self.hostname,
            user=self.user,
            port=self.port,
            key=self.identity_files[0] if self.identity_files else "",
            name=f"{PREFIX}{self.name}",
            known_hosts=self.known_hosts,
            strict_host_keys=_strictness(self.strict_host_keys),
            sshd_port=GUEST_SSH_PORT,
        )


def _strictness(value: str) -> str:
    """ssh_config's StrictHostKeyChecking values as pyinfra's ssh connector names them."""
    value = value.lower()
    if value in {"no", "off", "false"}:
        return "off"
    if value == "accept-new":
        return "accept-new"
    return "yes"


def _unquote(value: str) -> str:
    """ssh_config values may be double-quoted (Vagrant quotes paths with spaces)."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def parse_ssh_config(text: str) -> list[SshConfig]:
    """Every ``Host`` block of ``vagrant ssh-config`` output, in order.

    Machines whose SSH needs a ProxyCommand or ProxyJump (a remote libvirt host) are refused:
    the deploy connects directly and would silently go elsewhere."""
    blocks: list[tuple[str, dict[str, str], list[str]]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        if not value:
            key, _, value = line.partition("=")
        key, value = key.strip().lower(), _unquote(value.strip().lstrip("=").strip())
        if key == "host":
            blocks.append((value, {}, []))
            continue
        if not blocks:
            raise VagrantError(f"vagrant ssh-config line {number}: {key!r} before any Host")
        if key == "identityfile":
            blocks[-1][2].append(value)
        else:
            blocks[-1][1].setdefault(key, value)
    configs = []
    for name, options, keys in blocks:
        for proxy in ("proxycommand", "proxyjump"):
            if proxy in options:
                raise VagrantError(
                    f"Vagrant machine {name} is reached through a {proxy}: "
                    "farmhand connects directly; deploy it with USER@HOST:PORT instead"
                )
        try:
            port = int(options.get("port", "22"))
        except ValueError:
            raise VagrantError(f"Vagrant machine {name}: bad Port {options['port']!r}") from None
        if "hostname" not in options:
            raise VagrantError(f"Vagrant machine {name}: ssh-config has no HostName")
        configs.append(
            SshConfig(
                name=name,
                hostname=options["hostname"],
                user=options.get("user", "vagrant"),
                port=port,
                identity_files=tuple(keys),
                strict_host_keys=options.get("stricthostkeychecking", "yes"),
                known_hosts=options.get("userknownhostsfile", ""),
                options=options,
            )
        )
    return configs


def parse_status(text: str) -> dict[str, str]:
    """Machine name -> state from ``vagrant status --machine-readable``."""
    states = {}
    for line in text.splitlines():
        parts = line.strip().split(",", 3)
        if len(parts) == 4 and parts[2] == "state" and parts[1]:
            states[parts[1]] = parts[3]
    return states


def run_vagrant(argv: Sequence[str]) -> str:
    """Run ``vagrant ARGV`` (in the current folder; Vagrant honours $VAGRANT_CWD)."""
    if shutil.which("vagrant") is None:
        raise VagrantError("vagrant is not installed (or not on PATH)")
    command = ["vagrant", *argv]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise VagrantError(f"{shlex.join(command)} took more than {_TIMEOUT} s") from None
    if result.returncode != 0:
        said = [ln.strip() for ln in (result.stderr or result.stdout).splitlines() if ln.strip()]
        reason = said[0] if said else f"exit status {result.returncode}"
        raise VagrantError(f"{shlex.join(command)} failed: {reason}")
    return result.stdout


def ssh_configs(names: Sequence[str] = (), run: Runner = run_vagrant) -> list[SshConfig]:
    """How to reach the named machines, or every running one when ``names`` is empty."""
    wanted = list(names)
    if not wanted:
        states = parse_status(run(["status", "--machine-readable"]))
        wanted = [name for name, state in states.items() if state == "running"]
        if not wanted:
            raise VagrantError("no Vagrant machine is running here: `vagrant up` first")
    configs = []
    for name in wanted:
        found = parse_ssh_config(run(["ssh-config", name]))
        match = [c for c in found if c.name == name]
        if len(match) != 1:
            raise VagrantError(f"vagrant ssh-config {name} did not describe machine {name}")
        configs.append(match[0])
    return configs


def resolve_target(text: str, run: Runner = run_vagrant) -> Target:
    """``@vagrant/NAME`` -> the Target Vagrant says reaches machine NAME."""
    name = text[len(PREFIX) :]
    if (
        not text.startswith(PREFIX)
        or not name
        or "/" in name
        or name.startswith("-")
        or not name.isprintable()
        or any(c.isspace() for c in name)
    ):
        raise UsageError(f"invalid Vagrant target {text!r}: use @vagrant/NAME")
    return ssh_configs([name], run)[0].target()
