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
from farmhand.model import firewalld as firewalld_model
from farmhand.model.distro import Distro, Family
from farmhand.model.paths import (
    NEBULA_CERT,
    NEBULA_KEY,
    NEBULA_POOL,
    OLD_SSHD_DROPIN,
    SECRET_UPLOADS,
    SHARES_ROOT,
    SSHD_DROPIN,
)
from farmhand.nebula import release
from support import fixtures_deploy

# Also re-exported (hence the noqa) for tests that still import the harness from here, as this
# file held it (e.g. tests/test_deploy_ops.py, written in parallel): import it from support.
from support.pyinfra_harness import (  # noqa: F401
    BUNDLE_OF,
    DEBIAN_LIKE,
    DISTROS,
    EL,
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
    firewalld_listing,
    open_bundles,
    simulate,
    stock_sshd_config,
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


MESSY_HUB_CLEANUP = [
    "firewall-cmd --permanent --zone=home --add-port=22/tcp",
    "firewall-cmd --permanent --zone=home --add-port=42042/udp",
    "firewall-cmd --permanent --zone=home --remove-service=cockpit",
    "firewall-cmd --permanent --zone=home --remove-service=mdns",
    "firewall-cmd --permanent --zone=home --remove-service=samba-client",
    "firewall-cmd --permanent --zone=public --add-port=22/tcp",
    "firewall-cmd --permanent --zone=public --remove-port=8080/tcp",
    "firewall-cmd --permanent --zone=public --remove-service=cockpit",
    "firewall-cmd --permanent --zone=public --remove-source-port=5353/udp",
    "firewall-cmd --permanent --zone=public --remove-protocol=igmp",
    "firewall-cmd --permanent --zone=public --remove-forward-port="
    "port=2222:proto=tcp:toport=22:toaddr=",
    "firewall-cmd --permanent --zone=public --remove-rich-rule="
    '\'rule family="ipv4" source address="192.0.2.0/24" service name="http" accept\'',
    "firewall-cmd --permanent --zone=public --remove-rich-rule="
    '\'rule family="ipv4" port port="9090" protocol="tcp" accept\'',
    "firewall-cmd --permanent --zone=trusted --add-port=22/tcp",
    "firewall-cmd --permanent --zone=trusted --add-port=42042/udp",
    "firewall-cmd --permanent --zone=trusted --set-target=default",
]
"""What a hub deploy does to tests/fixtures/firewalld/el9-messy.*: every underlay zone (the
default one, one bound to an interface, one bound to a source), never farmhand-overlay."""


def _firewalld_ops(plan: Plan) -> list[str]:
    """The firewalld operations that changed something (the zone file, clean-up, reload)."""
    names = ("Publicly only", "Reload firewalld", "Install /etc/firewalld/")
    return [op.name for op in plan.ops if any(n in op.name for n in names) and op.commands]


@pytest.mark.parametrize("distro", EL)
def test_firewalld_fresh_host_closes_cockpit(distro: str, deploy: Callable[..., Plan]) -> None:
    running = deploy("hub", distro, Facts(distro, firewalld="el9-fresh"))
    assert running.op("Publicly only SSH and Nebula").shell == [
        "firewall-cmd --permanent --zone=public --add-port=22/tcp",
        "firewall-cmd --permanent --zone=public --add-port=42042/udp",
        "firewall-cmd --permanent --zone=public --remove-service=cockpit",
    ]
    assert running.op("Reload firewalld").shell == ["firewall-cmd --reload"]


@pytest.mark.parametrize("distro", EL)
def test_firewalld_every_underlay_zone_is_cleaned_and_then_left_alone(
    distro: str, deploy: Callable[..., Plan]
) -> None:
    messy = deploy("hub", distro, Facts(distro, firewalld="el9-messy"))
    cleanup = messy.op("Publicly only SSH and Nebula")
    assert cleanup.name.endswith("(home, public, trusted)")
    assert cleanup.shell == MESSY_HUB_CLEANUP
    assert not messy.has("--zone=farmhand-overlay")
    assert not messy.has("--zone=work"), "a zone nothing is bound to is not the underlay's"
    order = [op.name for op in messy.ops]
    assert order.index(cleanup.name) < order.index(messy.op("Reload firewalld").name)
    # Converged (the zone file in place too): no firewalld operation changes anything.
    zone_file = "/etc/firewalld/zones/farmhand-overlay.xml"
    content = messy.upload_bytes(zone_file)
    facts = Facts(distro, firewalld="el9-converged-hub")
    facts.files[("File", zone_file)] = {"mode": 644, "user": "root", "group": "root"}
    facts.files[("Directory", "/etc/firewalld/zones")] = {"mode": 755, "user": "root"}
    facts.files[("Sha1File", zone_file)] = hashlib.sha1(content).hexdigest()  # noqa: S324
    facts.files[("Sha256File", zone_file)] = hashlib.sha256(content).hexdigest()
    converged = deploy("hub", distro, facts)
    assert _firewalld_ops(converged) == []
    assert not [op for op in converged.ops if "Publicly only" in op.name]


class RuntimeOnlyExtras(Facts):
    """Permanent configuration clean, runtime still messy (added without --permanent)."""

    def command(self, command: str) -> str | None:
        if command.startswith("firewall-cmd --list-all-zones"):
            return firewalld_listing("el9-messy.runtime")
        return super().command(command)


def test_firewalld_runtime_only_extras_are_reloaded_away(deploy: Callable[..., Plan]) -> None:
    plan = deploy(
        "hub", "almalinux-9", RuntimeOnlyExtras("almalinux-9", firewalld="el9-converged-hub")
    )
    assert not [op for op in plan.ops if "Publicly only" in op.name]
    assert plan.op("Reload firewalld").shell == ["firewall-cmd --reload"]


def test_firewalld_listing_is_parsed_as_firewall_cmd_prints_it() -> None:
    zones = firewalld_model.parse_zones(firewalld_listing("el9-messy.runtime"))
    public = zones["public"]
    assert public.get("interfaces") == ["eth0"]
    assert public.get("forward-ports") == ["port=2222:proto=tcp:toport=22:toaddr="]
    assert len(public.get("rich rules")) == 2
    assert zones["trusted"].get("target") == ["ACCEPT"]
    assert zones["block"].get("rich rules") == []
    assert firewalld_model.underlay_zones("public", zones) == ["home", "public", "trusted"]


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
    labels = [c for op in plan.ops if "Samba shares | SELinux" in op.name for c in op.shell]
    if distro in EL:
        assert labels == [
            "semanage fcontext -a -t samba_share_t '/srv/farmhand(/.*)?'",
            "restorecon -R /srv/farmhand",
        ]
        assert plan.op("SELinux: /srv/farmhand(/.*)? is samba_share_t").named
        assert not plan.has("nmbd")
    else:
        assert labels == []
        assert not plan.has("semanage")
        assert not plan.has("restorecon")
        assert plan.op("nmbd stopped").name
    # The password goes from the uploaded root-only file through a pipe, never a command line.
    assert plan.has(
        "{ cat /etc/farmhand/smb.password; cat /etc/farmhand/smb.password; } "
        "| smbpasswd -s -a farmhand"
    )


def test_selinux_label_is_not_added_twice(deploy: Callable[..., Plan]) -> None:
    """An EL hub whose shares are already labelled samba_share_t: neither semanage nor a
    relabel; a mapping of another type is changed (-m) and relabelled."""
    target = "/srv/farmhand(/.*)?"
    plan = deploy("hub", "almalinux-9", Facts("almalinux-9", fcontexts={target: "samba_share_t"}))
    assert not plan.has("semanage")
    assert not plan.has("restorecon")
    assert not plan.op("SELinux: restorecon /srv/farmhand").ran
    other = deploy("hub", "almalinux-9", Facts("almalinux-9", fcontexts={target: "var_t"}))
    assert other.has(f"semanage fcontext -m -t samba_share_t '{target}'")
    assert other.has("restorecon -R /srv/farmhand")


def test_selinux_mapping_fact_finds_each_target_as_written(tasks: Any) -> None:
    """pyinfra's FileContextMapping greps ``^TARGET`` (a basic regular expression) in
    ``semanage fcontext -n -l`` and wants exactly one line: each target must find its own
    mapping line, as written by semanage, with the real grep."""
    render_queue = importlib.import_module("farmhand.deploy.tasks.render_queue")
    fact = importlib.import_module("pyinfra.facts.selinux").FileContextMapping()
    for distro in (Distro("almalinux", 8, Family.EL), Distro("almalinux", 9, Family.EL)):
        rules = [("/srv/farmhand(/.*)?", "samba_share_t"), *render_queue.selinux_rules(distro)]
        listing = "".join(
            f"{target:<60} all files          system_u:object_r:{se_type}:s0\n"
            for target, se_type in [*rules, ("/opt(/.*)?", "usr_t"), ("/srv/farm(/.*)?", "var_t")]
        )
        for target, se_type in rules:
            assert "[^" not in target, target
            command = fact.command(target).replace("semanage fcontext -n -l", "cat")
            found = subprocess.run(
                ["bash", "-c", command], input=listing, capture_output=True, text=True, timeout=30
            )
            lines = found.stdout.splitlines()
            assert fact.process(lines).get("type") == se_type, (target, lines)


@pytest.mark.parametrize("distro", DISTROS)
@pytest.mark.parametrize("role", ["hub", "worker"])
def test_ssh_service_and_key_only_logins(
    role: str, distro: str, deploy: Callable[..., Plan]
) -> None:
    plan = deploy(role, distro)
    assert SSHD_DROPIN == "/etc/ssh/sshd_config.d/00-farmhand.conf"
    assert b"PasswordAuthentication no" in plan.upload_bytes(SSHD_DROPIN)
    assert not plan.op(f"Remove {OLD_SSHD_DROPIN}").commands, "a fresh host has none"
    older = Facts(distro)
    older.files[("File", OLD_SSHD_DROPIN)] = {"mode": 644, "user": "root", "group": "root"}
    upgraded = deploy(role, distro, older)
    assert upgraded.op(f"Remove {OLD_SSHD_DROPIN}").shell == [f"rm -f {OLD_SSHD_DROPIN}"]
    undo = [f"rm -f {SSHD_DROPIN}"]
    if distro == "almalinux-8":  # the stock sshd_config has no Include: it gets one, first
        undo.append(
            "sed -i '/^# BEGIN farmhand: the drop-ins first, so that their settings count$/,"
            "/^# END farmhand: the drop-ins first, so that their settings count$/d' "
            "/etc/ssh/sshd_config"
        )
        undo.append("restorecon /etc/ssh/sshd_config")
        assert plan.op("/etc/ssh/sshd_config: read /etc/ssh/sshd_config.d first").shell
        assert plan.op("SELinux: restore the label of /etc/ssh/sshd_config").shell == [
            "restorecon /etc/ssh/sshd_config"
        ]
    else:
        assert not [op for op in plan.ops if "read /etc/ssh/sshd_config.d first" in op.name]
    assert plan.op("Check the sshd configuration").shell == [
        f"sshd -t || {{ {'; '.join(undo)}; exit 1; }}"
    ]
    service = "sshd" if distro in EL else "ssh"
    reload = plan.op("Reload sshd").shell
    assert reload
    assert all(f" {service}.service" in c for c in reload), reload
    order = [op.name for op in plan.ops]
    assert order.index(next(n for n in order if "Check the sshd" in n)) < order.index(
        next(n for n in order if "Reload sshd" in n)
    )
    # Without a working key login, password logins stay as they are (EL 8 still gets the
    # Include, for the hub's lease drop-in).
    no_key = deploy(role, distro, Facts(distro, key_login=False))
    assert SSHD_DROPIN not in no_key.uploads()
    assert not [op for op in no_key.ops if OLD_SSHD_DROPIN in op.name]
    checked = [op for op in no_key.ops if "Check the sshd configuration" in op.name]
    assert bool(checked) is (distro == "almalinux-8")


@pytest.mark.parametrize("distro", DISTROS)
@pytest.mark.parametrize("role", ["hub", "worker"])
def test_ssh_converged_host_changes_nothing(
    role: str, distro: str, deploy: Callable[..., Plan]
) -> None:
    """Once the Include is first and the drop-in in place, no operation changes sshd."""
    first = deploy(role, distro)
    text = stock_sshd_config(distro)
    if distro == "almalinux-8":
        text = (
            "# BEGIN farmhand: the drop-ins first, so that their settings count\n"
            "Include /etc/ssh/sshd_config.d/*.conf\n"
            "# END farmhand: the drop-ins first, so that their settings count\n" + text
        )
    facts = Facts(distro, sshd_config=text)
    content = first.upload_bytes(SSHD_DROPIN)
    facts.files[("File", SSHD_DROPIN)] = {"mode": 644, "user": "root", "group": "root"}
    facts.files[("Directory", "/etc/ssh/sshd_config.d")] = {"mode": 755, "user": "root"}
    facts.files[("Sha1File", SSHD_DROPIN)] = hashlib.sha1(content).hexdigest()  # noqa: S324
    facts.files[("Sha256File", SSHD_DROPIN)] = hashlib.sha256(content).hexdigest()
    again = deploy(role, distro, facts)
    sshd_ops = [op for op in again.ops if "SSH hardening" in op.name]
    assert sshd_ops
    changed = [op.name for op in sshd_ops if op.commands]
    assert changed == [], changed


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


# ------------------------------------------------------------------------------------------------
# Slurm, the default render manager (the deploys with the queue on: farmhand_queue=True)
# ------------------------------------------------------------------------------------------------


class SlurmFacts(Facts):
    """A host's Slurm facts: fresh (nothing installed, no overlay yet), or ``converged`` as a
    second deploy finds it (units masked, versions published and readable, CRB on)."""

    def __init__(self, distro: str, *, converged: bool = False, hub: str = "", node: str = ""):
        super().__init__(distro)
        self.converged = converged
        self.hub_version = hub or ("slurm 23.11.4" if converged else "")
        self.node_version = node or ("slurm 23.11.4" if converged else "")

    def command(self, command: str) -> str | None:
        if command.startswith("cat /var/lib/farmhand/"):
            return ""
        if command.startswith("systemd-detect-virt"):
            return "no"
        if command.startswith("dnf -q repolist"):
            return "crb  CentOS Stream 9 - CRB\npowertools PowerTools" if self.converged else ""
        if command.startswith("systemctl is-enabled slurmctld.service slurmd.service"):
            return "masked\nmasked" if self.converged else "enabled"
        if command.startswith("slurmctld -V"):
            return self.hub_version
        if command.startswith("cat /srv/farmhand/installers/slurm-version"):
            return self.hub_version
        if command.startswith("smbclient //"):
            return self.hub_version
        if command.startswith("stat -fc %T /sys/fs/cgroup"):
            return "cgroup2fs"
        if command.startswith("slurmd -V"):
            return self.node_version
        return super().command(command)


@pytest.fixture(scope="module")
def slurm_bundles(
    farm: Any, tasks: Any, artifacts: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Path]]:
    """Bundles (the default manager: Slurm) with stand-in renderer artifacts pinned, for the
    hub's cache and EL workers (no Blender package there)."""
    import dataclasses

    from farmhand.model.distro import distro_from_os_release
    from farmhand.queue import needed

    _, context = tasks
    folder = tmp_path_factory.mktemp("slurm-artifacts")
    shutil.copy(artifacts / "nebula-linux-amd64.tar.gz", folder)
    bundles = open_bundles(farm)
    el9 = distro_from_os_release({"ID": "almalinux", "VERSION_ID": "9.4"})
    sums = {}
    for artifact in needed(bundles["hub"].plan, el9):
        content = f"stand-in for {artifact.filename}\n".encode()
        (folder / artifact.filename).write_bytes(content)
        sums[artifact.key] = {"sha256": hashlib.sha256(content).hexdigest()}
    paths = {}
    for role, bundle in bundles.items():
        plan = bundle.plan.with_settings(nebula_sha256=NEBULA_SHA256, artifacts=sums)
        paths[role] = Path(shutil.copy(farm.root / BUNDLE_OF[role], folder / f"s-{role}.age"))
        context.preload(paths[role], dataclasses.replace(bundle, plan=plan))
    return folder, paths


def slurm_deploy(
    deploy: Callable[..., Plan], slurm_bundles: tuple[Path, dict[str, Path]], role: str,
    distro: str, facts: Facts,
) -> Plan:  # fmt: skip
    folder, paths = slurm_bundles
    return deploy(
        role, distro, facts, farmhand_queue=True, farmhand_bundle=str(paths[role]),
        farmhand_artifacts=str(folder),
    )  # fmt: skip


def slurm_ops(plan: Plan) -> list[str]:
    """The operations of Slurm's own that would change something (not the shared file and
    package operations, which the fixtures always see as on a fresh host)."""
    words = ("Slurm version", "Mask the distribution", "repository (EPEL", "slurmd's version")
    return [op.name for op in plan.ops if op.ran and any(w in op.name for w in words)]


@pytest.mark.parametrize(
    ("distro", "daemon", "time"),
    [
        ("almalinux-9", "slurm-slurmctld", "chrony"),
        ("almalinux-8", "slurm-slurmctld", "chrony"),
        ("ubuntu-24.04", "slurmctld", "systemd-timesyncd"),
    ],
)
def test_slurm_hub(
    distro: str, daemon: str, time: str, deploy: Callable[..., Plan], slurm_bundles: Any
) -> None:
    plan = slurm_deploy(deploy, slurm_bundles, "hub", distro, SlurmFacts(distro))
    text = plan.text()
    assert daemon in text
    assert "munge" in text
    assert time in text
    if distro in EL:
        assert "epel-release" in text
        repo = "crb" if distro.endswith("9") else "powertools"
        assert f"dnf config-manager --set-enabled {repo}" in text
    else:
        assert "epel" not in text
    # The slurm user has one uid everywhere, made before the packages would make it.
    names = [op.name.rsplit(" | ", 1)[-1] for op in plan.ops]
    user = names.index(next(n for n in names if n.startswith("User slurm (uid 64030")))
    assert user < names.index(next(n for n in names if n.startswith(f"Packages: {daemon}")))
    assert plan.has("systemctl mask --now slurmctld.service slurmd.service")
    uploads = plan.uploads()
    for path in ("/etc/slurm/slurm.conf", "/etc/systemd/system/farmhand-slurmctld.service"):
        assert path in uploads
    # munge's key: staged root-only, then its final owner and mode before it is moved in place.
    key = plan.op("Install /etc/munge/munge.key").shell
    assert any("chown munge:munge" in c and "chmod 400" in c and "umask 077" in c for c in key)
    assert plan.upload_bytes("/etc/munge/munge.key").strip().decode() not in text
    assert plan.has("slurmctld -V > /srv/farmhand/installers/slurm-version.new")


@pytest.mark.parametrize("distro", ["almalinux-9", "almalinux-8", "ubuntu-24.04"])
def test_slurm_worker_first_deploy_checks_versions_on_the_host(
    distro: str, deploy: Callable[..., Plan], slurm_bundles: Any
) -> None:
    plan = slurm_deploy(deploy, slurm_bundles, "worker", distro, SlurmFacts(distro))
    check = plan.op("slurmd's version fits the hub's slurmctld").shell[0]
    assert "smbclient //10.87.0.1/installers -A /etc/farmhand/smb-credentials" in check
    assert '"23.11 23.02"' in check
    assert '"22.05 23.11"' not in check
    names = [op.name.rsplit(" | ", 1)[-1] for op in plan.ops]
    start = names.index("farmhand-slurmd.service running and enabled")
    assert names.index("slurmd's version fits the hub's slurmctld (Slurm's rule)") < start
    # Its unit file is new, so it is enabled anew: the link that Nebula's start pulls it up by.
    assert plan.op("Re-enable farmhand-slurmd.service").shell == [
        "systemctl reenable farmhand-slurmd.service"
    ]
    assert "/usr/local/lib/farmhand/slurmd-start" in plan.uploads()


@pytest.mark.parametrize("distro", ["almalinux-9", "ubuntu-24.04"])
def test_slurm_second_deploy_changes_nothing_of_slurms(
    distro: str, deploy: Callable[..., Plan], slurm_bundles: Any
) -> None:
    for role in ("hub", "worker"):
        facts = SlurmFacts(distro, converged=True)
        plan = slurm_deploy(deploy, slurm_bundles, role, distro, facts)
        assert slurm_ops(plan) == [], role


def test_slurm_worker_newer_than_the_hub_stops_in_one_line(
    deploy: Callable[..., Plan], slurm_bundles: Any
) -> None:
    facts = SlurmFacts("ubuntu-24.04", hub="slurm 22.05.8", node="slurm 23.11.4")
    with pytest.raises(FarmhandError) as raised:
        slurm_deploy(deploy, slurm_bundles, "worker", "ubuntu-24.04", facts)
    message = str(raised.value)
    assert "\n" not in message
    assert "23.11" in message
    assert "22.05" in message
    assert "upgrade the hub" in message


@pytest.mark.parametrize("distro", ["almalinux-9", "ubuntu-24.04"])
def test_slurm_deploys_the_job_service_with_one_job_user_everywhere(
    distro: str, deploy: Callable[..., Plan], slurm_bundles: Any
) -> None:
    """The job service comes with Slurm: the same ``farmhand-jobs`` uid on hub and workers
    (Slurm runs a task as the uid that submitted it), the service and its config on both, and
    the job group made before the picker first runs, which hands it the worker's share login."""
    for role in ("hub", "worker"):
        plan = slurm_deploy(deploy, slurm_bundles, role, distro, SlurmFacts(distro))
        assert plan.op("User farmhand-jobs (uid 64031 on every host")
        uploads = plan.uploads()
        assert "/usr/local/lib/farmhand/jobs.py" in uploads, role
        config = "/etc/farmhand/jobs.json" if role == "hub" else "/etc/farmhand/jobs-worker.json"
        assert config in uploads, role
        names = [op.name.rsplit(" | ", 1)[-1] for op in plan.ops]
        if role == "worker":
            group = names.index(next(n for n in names if n.startswith("Group farmhand-jobs")))
            assert group < names.index("Claim this worker's certificate at every boot")
        if role == "hub":
            assert "/var/lib/farmhand-jobs/.ssh/authorized_keys" in uploads
