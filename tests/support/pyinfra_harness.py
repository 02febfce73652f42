"""A fake pyinfra host for the deploy tests that run against fact fixtures (issue #3).

pyinfra's API builds each role's deploy in-process for one ``@fake`` host whose facts come from
fixtures (``Host.get_fact`` patched, keyed by fact class and arguments, as pyinfra's own
operation tests do): AlmaLinux 8 and 9, Rocky 9, Ubuntu 22.04 and 24.04, and Debian 12 for
contrast. ``simulate`` then "runs" the operations in order: each ``_if`` condition is evaluated
against the operations before it, each operation counts as changed when it yields commands.
``Plan`` is what the deploy would run. The fixtures that build it (``deploy``, ``bundles``…) are
in support/fixtures_deploy.py, registered for every test module by tests/conftest.py.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api.command import FileUploadCommand, StringCommand
from pyinfra.api.host import Host
from pyinfra.api.state import State
from pyinfra.connectors.util import CommandOutput
from pyinfra.context import ctx_host, ctx_state

from farmhand.keystore.bundle import Bundle, bundle_from_tar, pack
from support.cli import decrypt_tars
from support.session import BUNDLES, Farm

HUB_ADDRESS = "198.51.100.7"
ROLES = ("hub", "worker", "boss")
BUNDLE_OF = dict(zip(ROLES, BUNDLES, strict=True))
TARGET = "@fake/target"

# /etc/os-release as these distributions ship it (the fields pyinfra's LinuxDistribution keeps).
OS_RELEASE = {
    "almalinux-8": ("AlmaLinux", "almalinux", "rhel centos fedora", "8.10"),
    "almalinux-9": ("AlmaLinux", "almalinux", "rhel centos fedora", "9.4"),
    "rocky-9": ("Rocky Linux", "rocky", "rhel centos fedora", "9.3"),
    "ubuntu-22.04": ("Ubuntu", "ubuntu", "debian", "22.04"),
    "ubuntu-24.04": ("Ubuntu", "ubuntu", "debian", "24.04"),
    "debian-12": ("Debian GNU/Linux", "debian", "", "12"),
}
DISTROS = tuple(OS_RELEASE)
EL = ("almalinux-8", "almalinux-9", "rocky-9")
DEBIAN_LIKE = ("ubuntu-22.04", "ubuntu-24.04", "debian-12")
NEBULA_PACKAGED = ("ubuntu-24.04", "debian-12")  # jammy has no nebula package
NEBULA_ARCHIVE = "/var/lib/farmhand/artifacts/nebula-linux-amd64.tar.gz"
NEBULA_SHA256 = hashlib.sha256(b"a stand-in for nebula-linux-amd64.tar.gz\n").hexdigest()

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SSHD_CONFIG = "/etc/ssh/sshd_config"


def stock_sshd_config(distro: str) -> str:
    """/etc/ssh/sshd_config as the distribution ships it (tests/fixtures/sshd/README.md)."""
    name = {"almalinux-8": "el8"}.get(distro, "el9" if distro in EL else "debian")
    return (FIXTURES / "sshd" / f"{name}.sshd_config").read_text()


def firewalld_listing(name: str) -> str:
    """``firewall-cmd [--permanent] --list-all-zones`` from tests/fixtures/firewalld/ (its
    README.md): ``el9-fresh.runtime``, ``el9-messy.permanent``..."""
    return (FIXTURES / "firewalld" / name).read_text()


# Facts a fresh host answers with pyinfra's default (nothing there yet).
FRESH_DEFAULTS = {
    "File",
    "Directory",
    "Link",
    "Sha1File",
    "Sha256File",
    "Md5File",
    "FileContents",
    "DebPackages",
    "RpmPackages",
    "RpmPackageProvides",
    "SystemdStatus",
    "SystemdEnabled",
    "Users",
    "Groups",
}


# ------------------------------------------------------------------------------------------------
# Fact fixtures and the deploy harness
# ------------------------------------------------------------------------------------------------


@dataclass
class Facts:
    """The facts of one fake host. Unknown facts fail the test, so fixtures stay complete."""

    distro: str
    key_login: bool = True
    firewalld: str | None = None  # tests/fixtures/firewalld/NAME.*; None: not installed yet
    pool: str | None = None  # ls of the worker certificate pool; None: no pool yet
    sshd_config: str | None = None  # /etc/ssh/sshd_config; None: the distribution's own
    fcontexts: dict[str, str] = field(default_factory=dict)  # semanage fcontext: target -> type
    files: dict[tuple[str, str], Any] = field(default_factory=dict)  # (fact, path) -> value
    asked: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def get(self, cls: type, *args: Any, **kwargs: Any) -> Any:
        name = cls.__name__
        self.asked.append((name, dict(kwargs)))
        if name == "LinuxDistribution":
            pretty, distro_id, like, version = OS_RELEASE[self.distro]
            meta = {"NAME": pretty, "ID": distro_id, "VERSION_ID": version}
            if like:
                meta["ID_LIKE"] = like
            major, _, minor = version.partition(".")
            return {
                "name": pretty,
                "major": int(major),
                "minor": int(minor or 0),
                "release_meta": meta,
            }
        if name == "Os":
            return "Linux"
        if name == "TmpDir":
            return "/tmp"
        if name == "Which":  # the base system's tools
            return f"/usr/sbin/{kwargs['command']}"
        if name == "Command":
            return self.command(kwargs["command"])
        if name == "FileContextMapping":  # pyinfra's: {} when semanage has no such mapping
            se_type = self.fcontexts.get(kwargs["target"])
            return {} if se_type is None else {"user": "system_u", "type": se_type}
        if "path" in kwargs and (name, kwargs["path"]) in self.files:
            return self.files[(name, kwargs["path"])]
        if kwargs.get("path") == SSHD_CONFIG and name in ("FileContents", "Block"):
            text = self.sshd_config or stock_sshd_config(self.distro)
            if name == "Block":  # files.block's markers: never there unless files says so
                return []
            return text.splitlines()
        if name in FRESH_DEFAULTS:
            return cls().default()
        pytest.fail(f"the deploy asked for a fact this fixture lacks: {name} {kwargs}")

    def command(self, command: str) -> str | None:
        if "authorized_keys" in command:
            return "yes" if self.key_login else "no"
        if command.startswith("firewall-cmd "):
            if self.firewalld is None:
                return ""
            if command.startswith("firewall-cmd --get-default-zone"):
                return "public"
            kind = "permanent" if "--permanent" in command else "runtime"
            return firewalld_listing(f"{self.firewalld}.{kind}")
        if "smb-password.sha256" in command:
            return None
        if command.startswith("ls -1 /etc/nebula/farmhand/pool"):
            return self.pool
        if command.startswith("ls -1 /etc/ssh/ssh_host_"):  # the hub's own sshd host keys
            return "/etc/ssh/ssh_host_ecdsa_key\n/etc/ssh/ssh_host_ed25519_key"
        pytest.fail(f"the deploy ran a Command fact this fixture lacks: {command}")


@dataclass
class Op:
    name: str
    ran: bool  # its _if conditions held
    commands: list[Any]
    named: bool  # an operation without name= would show its arguments

    @property
    def shell(self) -> list[str]:
        return [c.get_raw_value() for c in self.commands if isinstance(c, StringCommand)]

    @property
    def uploads(self) -> list[FileUploadCommand]:
        return [c for c in self.commands if isinstance(c, FileUploadCommand)]


@dataclass
class Plan:
    ops: list[Op]
    facts: Facts

    @property
    def shell(self) -> list[str]:
        return [command for op in self.ops for command in op.shell]

    def text(self) -> str:
        return "\n".join(self.shell)

    def uploads(self) -> dict[str, FileUploadCommand]:
        """Every upload by the path it ends at: a staged secret by the file it is moved to."""
        moves = {}
        for command in self.shell:
            if " > " in command and "mv -f " in command:
                staged = command.split("cat ", 1)[1].split(" > ", 1)[0]
                moves[staged] = command.rsplit("mv -f ", 1)[1].split()[1].strip("'")
        return {moves.get(u.dest, u.dest): u for op in self.ops for u in op.uploads}

    def upload_bytes(self, dest: str) -> bytes:
        src = self.uploads()[dest].src
        if isinstance(src, io.BytesIO):
            return src.getvalue()
        return Path(str(src)).read_bytes()

    def op(self, fragment: str) -> Op:
        found = [op for op in self.ops if fragment in op.name]
        assert len(found) == 1, f"{fragment!r} names {len(found)} operations"
        return found[0]

    def has(self, command: str) -> bool:
        return any(command in line for line in self.shell)


def open_bundles(farm: Farm) -> dict[str, Bundle]:
    """The session farm's bundles, opened by farmhand from the session's cache of decrypted
    tars (decrypted here at once, in processes, when no other test did it first)."""
    missing = [name for name in BUNDLES if name not in farm._tars]
    if missing:
        farm._tars.update(zip(missing, decrypt_tars([farm.root / n for n in missing]), strict=True))
    opened = {}
    for role, name in BUNDLE_OF.items():
        members = farm._tars[name].items()
        opened[role] = bundle_from_tar(pack([(n, c, m) for n, (c, m) in members], 0), name)
    return opened


def simulate(state: State, host: Host) -> list[Op]:
    """Run the operations in order as if every one succeeded, without touching anything."""
    ops = []
    with ctx_state.use(state), ctx_host.use(host):
        for op_hash in state.get_op_order():
            data = state.ops[host].get(op_hash)
            if data is None:
                continue
            conditions = data.global_arguments.get("_if") or []
            if callable(conditions):
                conditions = [conditions]
            ran = all(condition() for condition in conditions)
            commands = list(data.command_generator()) if ran else []
            data.operation_meta.set_complete(True, commands, CommandOutput([]))
            meta = state.op_meta[op_hash]
            ops.append(Op(sorted(meta.names)[0], ran, commands, named=not meta.args))
    return ops
