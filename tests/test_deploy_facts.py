"""The pyinfra deploys (issue #3) against fact fixtures, for distributions we cannot boot here.

pyinfra's API builds each role's deploy in-process for one ``@fake`` host whose facts come from
fixtures (``Host.get_fact`` patched, keyed by fact class and arguments, as pyinfra's own
operation tests do): AlmaLinux 8 and 9, Rocky 9, Ubuntu 22.04 and 24.04, and Debian 12 for
contrast. The operations are then "run" in order: each ``_if`` condition is evaluated against
the operations before it, each operation counts as changed when it yields commands. What it
would run is checked per distribution, and that no command carries a secret. The bundles are
preloaded (``context.preload``), so no passphrase is needed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import io
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api.command import FileUploadCommand, StringCommand
from pyinfra.api.config import Config
from pyinfra.api.deploy import add_deploy
from pyinfra.api.host import Host
from pyinfra.api.inventory import Inventory
from pyinfra.api.state import State
from pyinfra.connectors.util import CommandOutput
from pyinfra.context import ctx_host, ctx_state

from farmhand.errors import FarmhandError, UsageError
from farmhand.keystore.bundle import Bundle, bundle_from_tar, pack
from farmhand.model.paths import NEBULA_CERT, NEBULA_KEY, NEBULA_POOL, SECRET_UPLOADS, SHARES_ROOT
from farmhand.nebula import release
from support.cli import PASSPHRASE, decrypt_tars
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

# What firewalld's public zone lists on a fresh EL 8/9 host.
EL_PUBLIC_ZONE = """public
  target: default
  icmp-block-inversion: no
  interfaces:
  sources:
  services: cockpit dhcpv6-client ssh
  ports:
  protocols:
  forward: yes
  masquerade: no
  forward-ports:
  source-ports:
  icmp-blocks:
  rich rules:"""

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
    public_zone: str | None = None  # firewall-cmd --list-all; None: firewalld not running yet
    pool: str | None = None  # ls of the worker certificate pool; None: no pool yet
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
        if "path" in kwargs and (name, kwargs["path"]) in self.files:
            return self.files[(name, kwargs["path"])]
        if name in FRESH_DEFAULTS:
            return cls().default()
        pytest.fail(f"the deploy asked for a fact this fixture lacks: {name} {kwargs}")

    def command(self, command: str) -> str | None:
        if "authorized_keys" in command:
            return "yes" if self.key_login else "no"
        if command.startswith("firewall-cmd "):
            return self.public_zone
        if command.startswith("semanage fcontext -l"):
            return "0"
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


@pytest.fixture(scope="module")
def tasks() -> Any:
    """farmhand.deploy.tasks, as deploys/hub.py, worker.py and boss.py import it."""
    return importlib.import_module("farmhand.deploy.tasks.roles"), importlib.import_module(
        "farmhand.deploy.tasks.context"
    )


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


@pytest.fixture(scope="module")
def bundles(farm: Farm, tasks: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Bundle files preloaded for the deploys: each role's, and each with nebula_sha256 set."""
    _, context = tasks
    work = tmp_path_factory.mktemp("preloaded")
    paths = {}
    for role, bundle in open_bundles(farm).items():
        paths[role] = farm.root / BUNDLE_OF[role]
        context.preload(paths[role], bundle)
        pinned = dataclasses.replace(
            bundle, plan=bundle.plan.with_settings(nebula_sha256=NEBULA_SHA256)
        )
        paths[f"{role}+sha"] = Path(shutil.copy(paths[role], work / f"pinned-{BUNDLE_OF[role]}"))
        context.preload(paths[f"{role}+sha"], pinned)
    return paths


@pytest.fixture(scope="module")
def secrets(farm: Farm, bundles: dict[str, Path]) -> list[bytes]:
    """Everything secret a deploy handles: the SMB password and every private key."""
    members = {name: farm._tars[name] for name in BUNDLES}
    out = [PASSPHRASE.encode()]
    for tar in members.values():
        for name, (content, _) in tar.items():
            if name == "smb.password":
                out.append(content.strip())
            if name.startswith("keys/"):
                out.append(content.strip().splitlines()[1])  # the key's base64 line
    return out


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("artifacts")
    (folder / "nebula-linux-amd64.tar.gz").write_bytes(
        b"a stand-in for nebula-linux-amd64.tar.gz\n"
    )
    return folder


@pytest.fixture
def deploy(
    tasks: Any, bundles: dict[str, Path], artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Plan]:
    """``deploy(role, distro, facts=None, pinned=True, artifacts=True, diff=False, **data)``."""
    roles, _ = tasks

    def run(
        role: str,
        distro: str,
        facts: Facts | None = None,
        *,
        pinned: bool = True,
        with_artifacts: bool = True,
        diff: bool = False,
        **data: Any,
    ) -> Plan:
        facts = facts or Facts(distro)
        monkeypatch.setattr(Host, "get_fact", lambda self, cls, *a, **kw: facts.get(cls, *a, **kw))
        host_data = {
            "farmhand_bundle": str(bundles[f"{role}+sha" if pinned else role]),
            "farmhand_hub_address": HUB_ADDRESS,
            "farmhand_queue": False,  # the render queue's deploys: tests/test_queue_facts.py
            **({"farmhand_artifacts": str(artifacts)} if with_artifacts else {}),
            **data,
        }
        inventory = Inventory(([(TARGET, host_data)], {}))
        config = Config()
        config.DIFF = diff
        state = State(inventory, config)
        for each in inventory:
            state.activate_host(each)
        add_deploy(state, getattr(roles, role))
        return Plan(simulate(state, inventory.get_host(TARGET)), facts)

    return run


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


# ------------------------------------------------------------------------------------------------
# Packages, services and firewalls per distribution
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("distro", DISTROS)
@pytest.mark.parametrize("role", ROLES)
def test_package_manager(role: str, distro: str, deploy: Callable[..., Plan]) -> None:
    plan = deploy(role, distro)
    installs = [c for c in plan.shell if c.startswith(("dnf ", "yum ")) or "apt-get" in c]
    installs = [c for c in installs if " install " in c]
    if role != "boss" or distro in NEBULA_PACKAGED:
        assert installs, "the deploy installs packages"
    if distro in EL:
        assert all(c.startswith("dnf install -y ") for c in installs), installs
        assert not plan.has("apt-get")
    else:
        assert all(c.startswith("DEBIAN_FRONTEND=noninteractive apt-get") for c in installs)
        assert not plan.has("dnf ")
        assert not plan.has("yum ")
    packages = " ".join(installs)
    if role == "hub":
        assert "samba" in packages
        assert ("policycoreutils-python-utils" in packages) is (distro in EL)
    if role == "worker":
        assert "cifs-utils" in packages
    if role != "boss":
        assert ("firewalld" if distro in EL else "nftables") in packages


@pytest.mark.parametrize("distro", DISTROS)
@pytest.mark.parametrize("role", ROLES)
def test_nebula_from_the_package_or_the_pinned_archive(
    role: str, distro: str, deploy: Callable[..., Plan]
) -> None:
    plan = deploy(role, distro)
    unit = plan.upload_bytes("/etc/systemd/system/farmhand-nebula.service").decode()
    if distro in NEBULA_PACKAGED:
        assert any("install" in c and c.endswith(" nebula") for c in plan.shell)
        assert NEBULA_ARCHIVE not in plan.uploads()
        assert "ExecStart=/usr/bin/nebula -config" in unit
        return
    assert not any(c.endswith(" nebula") for c in plan.shell if "install" in c)
    upload = plan.uploads()[NEBULA_ARCHIVE]
    assert Path(str(upload.src)).name == "nebula-linux-amd64.tar.gz"
    unpack = plan.op("Unpack nebula")
    assert unpack.ran
    assert unpack.shell == [
        f"echo '{NEBULA_SHA256}  {NEBULA_ARCHIVE}' | sha256sum -c --quiet",
        f"tar --no-same-owner -xzf {NEBULA_ARCHIVE} -C /usr/local/bin nebula nebula-cert",
    ]
    assert "ExecStart=/usr/local/bin/nebula -config" in unit


@pytest.mark.parametrize("distro", [*EL, "ubuntu-22.04"])
def test_no_nebula_package_downloads_the_pinned_release(
    distro: str, deploy: Callable[..., Plan]
) -> None:
    plan = deploy("hub", distro, pinned=False, with_artifacts=False)
    archive = release.ARCHIVES["linux-amd64"]
    download = plan.op("Nebula release archive (download, sha256-checked)")
    assert download.ran
    assert any(archive.url in line for line in download.shell)
    assert any(archive.sha256 in line for line in download.shell)
    unpack = plan.op("Unpack nebula")
    assert unpack.shell[0] == f"echo '{archive.sha256}  {NEBULA_ARCHIVE}' | sha256sum -c --quiet"
    assert archive.url == (
        f"https://github.com/slackhq/nebula/releases/download/v{release.NEBULA_VERSION}/"
        "nebula-linux-amd64.tar.gz"
    )


@pytest.mark.parametrize("distro", [*EL, "ubuntu-22.04"])
def test_own_nebula_checksum_needs_own_archive(distro: str, deploy: Callable[..., Plan]) -> None:
    with pytest.raises(UsageError) as refused:
        deploy("hub", distro, pinned=True, with_artifacts=False)
    message = str(refused.value)
    assert "nebula_sha256" in message
    assert "--artifacts" in message
    assert "\n" not in message


@pytest.mark.parametrize("distro", NEBULA_PACKAGED)
def test_packaged_nebula_needs_no_artifacts(distro: str, deploy: Callable[..., Plan]) -> None:
    plan = deploy("hub", distro, pinned=False, with_artifacts=False)
    assert plan.has("nebula")


def test_an_interrupted_unpack_is_redone_and_a_done_one_is_not(
    deploy: Callable[..., Plan], artifacts: Path
) -> None:
    archive = artifacts / "nebula-linux-amd64.tar.gz"
    uploaded = {
        ("Directory", os.path.dirname(NEBULA_ARCHIVE)): {"mode": 755},
        ("File", NEBULA_ARCHIVE): {"mode": 644, "size": archive.stat().st_size},
        ("Sha1File", NEBULA_ARCHIVE): hashlib.sha1(archive.read_bytes()).hexdigest(),  # noqa: S324
        ("Sha256File", NEBULA_ARCHIVE): hashlib.sha256(archive.read_bytes()).hexdigest(),
    }
    interrupted = deploy("boss", "rocky-9", Facts("rocky-9", files=dict(uploaded)))
    assert not interrupted.op("Nebula release archive").commands, "the archive is in place"
    assert interrupted.op("Unpack nebula").ran, "but nebula is not: unpack again"
    installed = {**uploaded, ("File", "/usr/local/bin/nebula"): {"mode": 755, "size": 1}}
    done = deploy("boss", "rocky-9", Facts("rocky-9", files=installed))
    assert not done.op("Unpack nebula").ran


@pytest.mark.parametrize("distro", DISTROS)
@pytest.mark.parametrize("role", ["hub", "worker"])
def test_host_firewall(role: str, distro: str, deploy: Callable[..., Plan]) -> None:
    plan = deploy(role, distro)
    uploads = plan.uploads()
    if distro in DEBIAN_LIKE:
        assert "/etc/farmhand/nftables.conf" in uploads
        assert "/etc/systemd/system/farmhand-firewall.service" in uploads
        assert "/etc/firewalld/zones/farmhand-overlay.xml" not in uploads
        assert plan.has("systemctl enable farmhand-firewall.service")
        assert not plan.has("firewall-cmd")
        ruleset = plan.upload_bytes("/etc/farmhand/nftables.conf").decode()
        assert ("udp dport 42042 accept" in ruleset) is (role == "hub")
        return
    assert "/etc/firewalld/zones/farmhand-overlay.xml" in uploads
    assert not any("nftables" in dest or "farmhand-firewall" in dest for dest in uploads)
    assert not plan.has("nft ")
    assert plan.has("systemctl enable firewalld.service")
    opened = plan.op("Publicly only SSH and Nebula").shell
    expected = ["firewall-cmd --permanent --zone=public --add-port=22/tcp"]
    if role == "hub":
        expected.append("firewall-cmd --permanent --zone=public --add-port=42042/udp")
    expected.append("firewall-cmd --permanent --zone=public --remove-service=cockpit")
    assert opened == expected
    assert plan.op("Reload firewalld").shell == ["firewall-cmd --reload"]


@pytest.mark.parametrize("distro", EL)
def test_firewalld_public_zone_is_trimmed_and_then_left_alone(
    distro: str, deploy: Callable[..., Plan]
) -> None:
    running = deploy("hub", distro, Facts(distro, public_zone=EL_PUBLIC_ZONE))
    assert running.op("Publicly only SSH and Nebula").shell == [
        "firewall-cmd --permanent --zone=public --add-port=22/tcp",
        "firewall-cmd --permanent --zone=public --add-port=42042/udp",
        "firewall-cmd --permanent --zone=public --remove-service=cockpit",
    ]
    done = EL_PUBLIC_ZONE.replace("cockpit dhcpv6-client ssh", "dhcpv6-client ssh").replace(
        "ports:", "ports: 22/tcp 42042/udp"
    )
    plan = deploy("hub", distro, Facts(distro, public_zone=done))
    assert not [op for op in plan.ops if "Publicly only" in op.name]
    zone_installed = plan.op("Install /etc/firewalld/zones/").commands
    assert plan.op("Reload firewalld").ran is bool(zone_installed)


@pytest.mark.parametrize("distro", DISTROS)
def test_samba_service_and_selinux_labels(distro: str, deploy: Callable[..., Plan]) -> None:
    plan = deploy("hub", distro)
    service = "smb" if distro in EL else "smbd"
    other = "smbd" if distro in EL else "smb"
    assert plan.has(f"systemctl enable {service}.service")
    assert not plan.has(f"systemctl enable {other}.service")
    assert f"/etc/systemd/system/{service}.service.d/farmhand.conf" in plan.uploads()
    assert "/etc/samba/smb.conf" in plan.uploads()
    assert not plan.has("chcon")
    if distro in EL:
        assert plan.op("SELinux").shell == [
            "semanage fcontext -a -t samba_share_t '/srv/farmhand(/.*)?'",
            "restorecon -R /srv/farmhand",
        ]
        assert not plan.has("nmbd")
    else:
        assert not plan.has("semanage")
        assert not plan.has("restorecon")
        assert plan.op("nmbd stopped").name
    # The password goes from the uploaded root-only file through a pipe, never a command line.
    assert plan.has(
        "{ cat /etc/farmhand/smb.password; cat /etc/farmhand/smb.password; } "
        "| smbpasswd -s -a farmhand"
    )


class LabelledFacts(Facts):
    """An EL hub whose shares are already labelled samba_share_t."""

    def command(self, command: str) -> str | None:
        return "1" if command.startswith("semanage ") else super().command(command)


def test_selinux_label_is_not_added_twice(deploy: Callable[..., Plan]) -> None:
    plan = deploy("hub", "almalinux-9", LabelledFacts("almalinux-9"))
    assert not plan.has("semanage")
    assert not plan.has("restorecon")


@pytest.mark.parametrize("distro", DISTROS)
@pytest.mark.parametrize("role", ["hub", "worker"])
def test_ssh_service_and_key_only_logins(
    role: str, distro: str, deploy: Callable[..., Plan]
) -> None:
    plan = deploy(role, distro)
    dropin = "/etc/ssh/sshd_config.d/50-farmhand.conf"
    assert b"PasswordAuthentication no" in plan.upload_bytes(dropin)
    assert plan.op("Check the sshd configuration").shell == ["sshd -t"]
    service = "sshd" if distro in EL else "ssh"
    reload = plan.op("Reload sshd").shell
    assert reload
    assert all(f" {service}.service" in c for c in reload), reload
    # Without a working key login, password logins stay as they are.
    no_key = deploy(role, distro, Facts(distro, key_login=False))
    assert dropin not in no_key.uploads()
    assert not any("Check the sshd configuration" in op.name for op in no_key.ops)


@pytest.mark.parametrize("distro", DISTROS)
def test_hub_lease_service_adds_its_host_key_after_the_hosts_own(
    distro: str, deploy: Callable[..., Plan]
) -> None:
    plan = deploy("hub", distro)
    dropin = plan.upload_bytes("/etc/ssh/sshd_config.d/40-farmhand-lease.conf").decode()
    # Only the default host keys the host has (the fixture has no RSA key), then ours.
    assert [ln for ln in dropin.splitlines() if ln.startswith("HostKey")] == [
        "HostKey /etc/ssh/ssh_host_ecdsa_key",
        "HostKey /etc/ssh/ssh_host_ed25519_key",
        "HostKey /etc/ssh/farmhand_lease_host_key",
    ]
    assert plan.op("Lease host key: sshd -t").shell == [
        "sshd -t || { rm -f /etc/ssh/sshd_config.d/40-farmhand-lease.conf; exit 1; }"
    ]
    assert plan.op("Lease host key: sshd reloaded").shell
    assert {"/etc/farmhand/lease-pool.json", "/usr/local/lib/farmhand/leases.py"} <= set(
        plan.uploads()
    )
    assert plan.has("useradd")
    assert plan.has("farmhand-lease")


@pytest.mark.parametrize("distro", DISTROS)
def test_worker_picks_its_certificate_and_mounts_the_shares(
    distro: str, deploy: Callable[..., Plan]
) -> None:
    plan = deploy("worker", distro)
    uploads = plan.uploads()
    assert NEBULA_CERT not in uploads, "a worker's certificate is chosen at boot"
    assert NEBULA_KEY not in uploads
    assert {f"{NEBULA_POOL}/worker0001.crt", f"{NEBULA_POOL}/worker0005.key"} <= set(uploads)
    assert plan.has("systemctl enable farmhand-pick-cert.service")
    assert plan.has("systemctl enable farmhand-lease-renew.timer")
    assert {"/etc/farmhand/lease/claim.key", "/etc/farmhand/lease.json"} <= set(uploads)
    assert plan.has("systemctl enable mnt-farmhand-farm.automount")
    assert plan.has("systemctl start mnt-farmhand-queue.automount")
    unmounted = deploy("worker", distro, farmhand_mounts=False)
    assert unmounted.has("systemctl enable mnt-farmhand-farm.automount")
    assert not unmounted.has("systemctl start mnt-farmhand-farm.automount")


@pytest.mark.parametrize("distro", DISTROS)
def test_farm_user_has_the_fixed_uid(distro: str, deploy: Callable[..., Plan]) -> None:
    for role in ("hub", "worker"):
        plan = deploy(role, distro)
        assert plan.has("groupadd farmhand --gid 2042")
        assert plan.has("useradd -d /srv/farmhand -s /usr/sbin/nologin -g farmhand --uid 2042")
    assert not deploy("boss", distro).has("useradd")


class ExistingFarmUser(Facts):
    """A hub after a first deploy: the farm user and group exist, the share root is root's."""

    def get(self, cls: type, *args: Any, **kwargs: Any) -> Any:
        if cls.__name__ == "Users":
            self.asked.append(("Users", {}))
            return {
                "farmhand": {
                    "home": "/srv/farmhand",
                    "shell": "/usr/sbin/nologin",
                    "group": "farmhand",
                    "groups": [],
                    "uid": 2042,
                    "gid": 2042,
                    "comment": None,
                    "password": "!",
                }
            }
        if cls.__name__ == "Groups":
            self.asked.append(("Groups", {}))
            return ["root", "farmhand"]
        return super().get(cls, *args, **kwargs)


@pytest.mark.parametrize("distro", ["almalinux-9", "debian-12"])
def test_farm_user_and_share_root_do_not_fight_over_ownership(
    distro: str, deploy: Callable[..., Plan]
) -> None:
    """Each owner of /srv/farmhand would undo the other on every run: never idempotent."""
    for owner in ("root", "farmhand"):
        facts = ExistingFarmUser(distro)
        facts.files[("Directory", SHARES_ROOT)] = {"user": owner, "group": owner, "mode": 755}
        plan = deploy("hub", distro, facts)
        assert not plan.op("Farm user | User farmhand").commands
        assert not plan.op("Farm user | Group farmhand").commands
        changes = [c for c in plan.shell if c.startswith("chown") and c.endswith(SHARES_ROOT)]
        assert changes == ([] if owner == "root" else [f"chown root:root {SHARES_ROOT}"])


# ------------------------------------------------------------------------------------------------
# Secrets and safety
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("login", ["root", "deployer"])
@pytest.mark.parametrize("distro", ["almalinux-9", "ubuntu-22.04", "debian-12"])
@pytest.mark.parametrize("role", ROLES)
def test_no_secret_in_any_command_and_secrets_only_as_private_uploads(
    role: str,
    distro: str,
    login: str,
    deploy: Callable[..., Plan],
    secrets: list[bytes],
    tasks: Any,
) -> None:
    """A root login uploads secrets into a root-only folder; a sudo login into its own 0700
    folder (SFTP runs as that user). Either way root copies them, umask 077, into a file beside
    the destination, sets owner and mode, and renames it into place: never readable by others."""
    sudo = {"ssh_user": login, "_sudo": True} if login != "root" else {}
    plan = deploy(role, distro, **sudo)
    words = "\n".join([*plan.shell, *(op.name for op in plan.ops)])
    assert "PRIVATE KEY" not in words
    for secret in secrets:
        assert secret.decode() not in words, "a secret is in a command line or operation name"
    assert all(op.named for op in plan.ops), "an unnamed operation would print its arguments"
    module = importlib.import_module("farmhand.deploy.tasks.files")
    uploads_dir = SECRET_UPLOADS
    drop_dir = module.login_upload_dir(login) if sudo else uploads_dir
    secret_files = 0
    for final, upload in plan.uploads().items():
        content = plan.upload_bytes(final)
        dest = upload.dest
        if any(secret in content for secret in secrets) or b"PRIVATE KEY" in content:
            secret_files += 1
            assert dest.startswith(f"{drop_dir}/"), dest
            assert upload.connector_arguments == ({"_sudo": False} if sudo else {}), dest
            moves = [c for c in plan.shell if f"cat {dest} > " in c]
            assert len(moves) == 1, (dest, moves)
            assert "umask 077" in moves[0].split(f"cat {dest}")[0], moves[0]
            assert moves[0].endswith(f" {final}'") or moves[0].endswith(f" {final}"), moves[0]
        else:
            assert final == dest, dest
            assert not dest.startswith((f"{uploads_dir}/", f"{drop_dir}/")), dest
    assert secret_files >= 1
    assert plan.op("Private upload folder /").shell == [
        f"mkdir -p {uploads_dir}",
        f"chmod 700 {uploads_dir}",
        f"chown root:root {uploads_dir}",
    ]
    if sudo:
        assert plan.op("Private upload folder of the deploying account").shell == [
            f"mkdir -p {drop_dir}",
            f"chmod 700 {drop_dir}",
            f"chown {login}:{login} {drop_dir}",
        ]
    else:
        assert not [op for op in plan.ops if "of the deploying account" in op.name]


def test_diff_mode_is_refused(deploy: Callable[..., Plan]) -> None:
    with pytest.raises(FarmhandError) as refused:
        deploy("hub", "debian-12", diff=True)
    assert "--diff" in str(refused.value)
    assert "farmhand files" in str(refused.value)


def test_a_bundle_of_another_role_is_refused(
    tasks: Any, bundles: dict[str, Path], deploy: Callable[..., Plan]
) -> None:
    with pytest.raises(UsageError, match="worker bundle; this deploy needs a hub one"):
        deploy("hub", "debian-12", farmhand_bundle=str(bundles["worker"]))


def test_an_unsupported_distribution_is_refused(deploy: Callable[..., Plan]) -> None:
    OS_RELEASE["centos-7"] = ("CentOS Linux", "centos", "rhel fedora", "7")
    try:
        with pytest.raises(UsageError, match="unsupported distribution 'centos'"):
            deploy("hub", "centos-7")
    finally:
        del OS_RELEASE["centos-7"]


@pytest.fixture
def fresh_shell(tmp_path: Path) -> Callable[[str], subprocess.CompletedProcess[str]]:
    """A shell on a host that has none of the tools a deploy installs (only sh, cat, grep)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "cat", "grep", "ls"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(bin_dir / "sh"), "-c", command],
            env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=30,
        )

    return run


@pytest.mark.parametrize("distro", ["almalinux-9", "debian-12"])
def test_every_command_fact_succeeds_on_a_fresh_host(
    distro: str,
    deploy: Callable[..., Plan],
    fresh_shell: Callable[[str], subprocess.CompletedProcess[str]],
) -> None:
    """pyinfra fails a host whose fact command exits non-zero: a fact that asks firewalld or
    semanage before the deploy installed them must not."""
    commands = set()
    for role in ROLES:
        plan = deploy(role, distro)
        commands |= {kw["command"] for name, kw in plan.facts.asked if name == "Command"}
    assert commands
    for command in sorted(commands):
        assert os.path.basename(command.split()[0]) in {
            "grep",
            "cat",
            "ls",
            "firewall-cmd",
            "semanage",
        }
        result = fresh_shell(command)
        assert result.returncode == 0, f"{command}: exit {result.returncode} {result.stderr}"


def test_worker_pool_drops_certificates_the_bundle_no_longer_holds(
    deploy: Callable[..., Plan],
) -> None:
    """A revoked worker's key must not stay in the pool of hosts redeployed after the revoke."""
    facts = Facts(
        "debian-12", pool="worker0001.crt\nworker0001.key\nworker0999.crt\nworker0999.key"
    )
    stale = "/etc/nebula/farmhand/pool/worker0999.key"
    facts.files[("File", stale)] = {"mode": 600, "user": "root", "group": "root", "size": 90}
    plan = deploy("worker", "debian-12", facts)
    removal = plan.op(f"Remove {stale}")
    assert any("rm" in command and "worker0999.key" in command for command in removal.shell)
    plan.op("Remove /etc/nebula/farmhand/pool/worker0999.crt")
    assert not [op for op in plan.ops if "Remove" in op.name and "worker0001" in op.name]


# ------------------------------------------------------------------------------------------------
# The EL / Ubuntu matrix at a glance (issue #7), and Vagrant's forwarded SSH port
# ------------------------------------------------------------------------------------------------

# distro -> (installer prefix, host firewall unit, samba unit, sshd unit, SELinux labels)
MATRIX = {
    "almalinux-8": ("dnf install -y ", "firewalld", "smb", "sshd", True),
    "almalinux-9": ("dnf install -y ", "firewalld", "smb", "sshd", True),
    "rocky-9": ("dnf install -y ", "firewalld", "smb", "sshd", True),
    "ubuntu-22.04": (
        "DEBIAN_FRONTEND=noninteractive apt-get",
        "farmhand-firewall",
        "smbd",
        "ssh",
        False,
    ),
    "ubuntu-24.04": (
        "DEBIAN_FRONTEND=noninteractive apt-get",
        "farmhand-firewall",
        "smbd",
        "ssh",
        False,
    ),
}


@pytest.mark.parametrize("distro", sorted(MATRIX))
def test_el_and_ubuntu_matrix(distro: str, deploy: Callable[..., Plan]) -> None:
    installer, firewall_unit, samba_unit, ssh_unit, selinux = MATRIX[distro]
    hub, worker = deploy("hub", distro), deploy("worker", distro)
    for plan in (hub, worker):
        installs = [c for c in plan.shell if " install " in c]
        assert installs
        assert all(c.startswith(installer) for c in installs), installs
        assert plan.has(f"systemctl enable {firewall_unit}.service")
        other_firewall = "farmhand-firewall" if firewall_unit == "firewalld" else "firewalld"
        assert not plan.has(f"systemctl enable {other_firewall}.service")
        assert plan.has(f" {ssh_unit}.service")
        assert plan.has("systemctl enable farmhand-nebula.service")
    assert hub.has(f"systemctl enable {samba_unit}.service")
    assert hub.has(f"systemctl start {samba_unit}.service")
    assert not worker.has("smbpasswd")
    selinux_ops = [
        "semanage fcontext -a -t samba_share_t '/srv/farmhand(/.*)?'",
        "restorecon -R /srv/farmhand",
    ]
    assert [hub.has(c) for c in selinux_ops] == [selinux, selinux]
    assert not worker.has("semanage"), "workers serve no shares: nothing to label"
    # The SELinux labels come before Samba starts serving the shares.
    if selinux:
        order = hub.shell
        label = order.index(selinux_ops[0])
        assert (
            label
            < order.index(selinux_ops[1])
            < order.index(f"systemctl start {samba_unit}.service")
        )


@pytest.mark.parametrize("distro", ["almalinux-9", "ubuntu-24.04", "debian-12"])
def test_a_forwarded_ssh_port_keeps_the_guests_sshd_port_open(
    distro: str, deploy: Callable[..., Plan]
) -> None:
    """Vagrant (VirtualBox) forwards 127.0.0.1:2222 to the guest's 22: the deploy connects on
    2222, but the host firewall must keep 22 open or the VM locks Vagrant out."""
    plan = deploy("worker", distro, ssh_port=2222, farmhand_ssh_port=22)
    if distro in EL:
        opened = plan.op("Publicly only SSH and Nebula").shell
        assert "firewall-cmd --permanent --zone=public --add-port=22/tcp" in opened
        assert not plan.has("2222")
        return
    ruleset = plan.upload_bytes("/etc/farmhand/nftables.conf").decode()
    assert "tcp dport { 22 } accept" in ruleset
    assert "2222" not in ruleset
    # Without the hint the connection port is what stays open (a real sshd on 2222).
    direct = deploy("worker", distro, ssh_port=2222)
    assert (
        "tcp dport { 2222 } accept" in direct.upload_bytes("/etc/farmhand/nftables.conf").decode()
    )
