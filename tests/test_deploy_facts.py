"""The pyinfra deploys (issue #3) against fact fixtures, for distributions we cannot boot here.

The harness is support/pyinfra_harness.py: pyinfra's API builds each role's deploy in-process
for one ``@fake`` host whose facts come from fixtures (AlmaLinux 8 and 9, Rocky 9, Ubuntu 22.04
and 24.04, and Debian 12 for contrast), and the operations are then "run" in order. What it
would run is checked per distribution, and that no command carries a secret. The fixtures
(``deploy``, ``bundles``, ``secrets``…) are support/fixtures_deploy.py's.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from farmhand.errors import FarmhandError, UsageError
from farmhand.model.paths import NEBULA_CERT, NEBULA_KEY, NEBULA_POOL, SECRET_UPLOADS, SHARES_ROOT
from farmhand.nebula import release
from support import fixtures_deploy

# Also re-exported (hence the noqa) for tests that still import the harness from here, as this
# file held it (e.g. tests/test_deploy_ops.py, written in parallel): import it from support.
from support.pyinfra_harness import (  # noqa: F401
    BUNDLE_OF,
    DEBIAN_LIKE,
    DISTROS,
    EL,
    EL_PUBLIC_ZONE,
    FRESH_DEFAULTS,
    HUB_ADDRESS,
    NEBULA_ARCHIVE,
    NEBULA_PACKAGED,
    NEBULA_SHA256,
    OS_RELEASE,
    ROLES,
    TARGET,
    Facts,
    Op,
    Plan,
    open_bundles,
    simulate,
)


def __getattr__(name: str) -> Any:
    """The same for the harness's fixtures (``from test_deploy_facts import deploy``), without
    registering them in this module again: conftest.py registers them for every test module."""
    if name in ("tasks", "bundles", "secrets", "artifacts", "deploy"):
        return getattr(fixtures_deploy, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


ROOT_ONLY_FOLDER = {"mode": 700, "user": "root", "group": "root"}
"""The artifacts folder as a deploy leaves it: root's alone."""


def test_an_interrupted_unpack_is_redone_and_a_done_one_is_not(
    deploy: Callable[..., Plan], artifacts: Path
) -> None:
    archive = artifacts / "nebula-linux-amd64.tar.gz"
    uploaded = {
        ("Directory", os.path.dirname(NEBULA_ARCHIVE)): ROOT_ONLY_FOLDER,
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
    # Every default host key, then ours: the fixture has no RSA key, so ssh-keygen -A makes it.
    assert plan.op("Default sshd host keys").shell == ["ssh-keygen -A"]
    assert [ln for ln in dropin.splitlines() if ln.startswith("HostKey")] == [
        "HostKey /etc/ssh/ssh_host_rsa_key",
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
