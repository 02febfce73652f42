"""sshd's effective settings (issue #11 item 4) with the real ``/usr/sbin/sshd -T``.

Each test builds a copy of ``/etc/ssh`` in a temporary folder (every ``/etc/ssh/`` in the files
rewritten to point there, throwaway host keys from ``ssh-keygen -A -f``): the distribution's
stock sshd_config (tests/fixtures/sshd/), the drop-ins a deploy uploads (from the fact harness,
support/pyinfra_harness.py) and a competing ``50-cloud-init.conf``. As root, sshd runs as nobody:
a root sshd's test mode insists on /run/sshd, which this machine need not have.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import testinfra

from farmhand.inspect import verify
from farmhand.model.paths import LEASE_DROPIN, OLD_SSHD_DROPIN, SSHD_CONFIG, SSHD_DROPIN
from farmhand.model.sshd import (
    DROPIN_INCLUDE,
    KEY_ONLY,
    directives,
    reads_dropins_first,
    setting_sources,
)
from farmhand.onhost import leases
from support.pyinfra_harness import DISTROS, Facts, Plan, stock_sshd_config

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "sshd"
KEYWORDS = [keyword for keyword, _ in KEY_ONLY]


def _tool(name: str, package: str) -> str:
    found = shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if found is None:
        pytest.skip(f"{name} is not installed (Debian package '{package}'; CI installs it)")
    return found


class Tree:
    """A stand-alone copy of /etc/ssh that the real sshd reads with ``-f``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.etc = root / "etc/ssh"
        (self.etc / "sshd_config.d").mkdir(parents=True)
        keygen = _tool("ssh-keygen", "openssh-client")
        subprocess.run([keygen, "-q", "-A", "-f", str(root)], check=True, timeout=120)
        subprocess.run(
            [
                keygen,
                "-q",
                "-t",
                "ecdsa",
                "-b",
                "384",
                "-N",
                "",
                "-f",
                self.here(leases.HUB_HOST_KEY),
            ],
            check=True,
            timeout=60,
        )
        self.kwargs: dict[str, Any] = {}
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            for key in self.etc.glob("*_key"):
                os.chown(key, nobody.pw_uid, nobody.pw_gid)
            self.kwargs = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}

    def here(self, path: str) -> str:
        """A host path (``/etc/ssh/...``) inside this tree."""
        return str(self.root) + path

    def rewrite(self, text: str) -> str:
        return text.replace("/etc/ssh/", f"{self.etc}/")

    def put(self, path: str, text: str | bytes) -> None:
        content = text.decode() if isinstance(text, bytes) else text
        Path(self.here(path)).write_text(self.rewrite(content))

    def sshd(self, flag: str) -> subprocess.CompletedProcess[str]:
        sshd = _tool("sshd", "openssh-server")
        listed = any("HostKey " in p.read_text() for p in self.etc.rglob("*conf*") if p.is_file())
        # Without a HostKey line sshd wants /etc/ssh's own keys: give it the tree's.
        keys = [] if listed else ["-h", str(self.etc / "ssh_host_ed25519_key")]
        return subprocess.run(
            [sshd, flag, "-f", self.here(SSHD_CONFIG), *keys],
            capture_output=True,
            text=True,
            timeout=60,
            **self.kwargs,
        )

    def effective(self) -> str:
        result = self.sshd("-T")
        assert result.returncode == 0, result.stderr
        return result.stdout

    def sources(self) -> dict[str, tuple[str, str]]:
        def read(path: str) -> str | None:
            file = Path(path)
            return file.read_text() if file.is_file() else None

        def expand(pattern: str) -> list[str]:
            base, _, glob = pattern.rpartition("/")
            return sorted(str(p) for p in Path(base).glob(glob))

        return setting_sources(KEYWORDS, read, expand, self.here(SSHD_CONFIG))


@pytest.fixture
def tree() -> Iterator[Tree]:
    with tempfile.TemporaryDirectory(prefix="farmhand-sshd-") as name:
        root = Path(name)
        root.chmod(0o755)
        yield Tree(root)


def values(effective: str) -> dict[str, str]:
    out = {}
    for line in effective.splitlines():
        keyword, _, value = line.partition(" ")
        out[keyword] = value
    return out


def hostkeys(effective: str) -> list[str]:
    return [ln.split(" ", 1)[1] for ln in effective.splitlines() if ln.startswith("hostkey ")]


@pytest.fixture
def ubuntu_hub(deploy: Callable[..., Plan]) -> Plan:
    return deploy("hub", "ubuntu-24.04")


def test_our_dropin_wins_over_cloud_init(tree: Tree, ubuntu_hub: Plan) -> None:
    """Ubuntu's cloud images: ``50-cloud-init.conf`` says yes; the deploy's 00- drop-in wins,
    and the hub's lease drop-in still lists the host's own keys first."""
    tree.put(SSHD_CONFIG, stock_sshd_config("ubuntu-24.04"))
    tree.put(SSHD_DROPIN, ubuntu_hub.upload_bytes(SSHD_DROPIN))
    tree.put(LEASE_DROPIN, ubuntu_hub.upload_bytes(LEASE_DROPIN))
    tree.put(
        "/etc/ssh/sshd_config.d/50-cloud-init.conf", (FIXTURES / "50-cloud-init.conf").read_text()
    )
    assert tree.sshd("-t").returncode == 0
    effective = tree.effective()
    shown = values(effective)
    assert shown["passwordauthentication"] == "no"
    assert shown["kbdinteractiveauthentication"] == "no"
    assert shown["permitrootlogin"] == "without-password"  # how sshd -T spells prohibit-password
    assert hostkeys(effective) == [
        tree.here(p)
        for p in (
            "/etc/ssh/ssh_host_rsa_key",
            "/etc/ssh/ssh_host_ecdsa_key",
            "/etc/ssh/ssh_host_ed25519_key",
            leases.HUB_HOST_KEY,
        )
    ]
    check = verify.key_only_check(effective, tree.sources())
    assert check.passed, check.detail


def test_the_old_name_loses_to_cloud_init_and_verify_names_the_winner(
    tree: Tree, ubuntu_hub: Plan
) -> None:
    """What older deploys left: ``50-farmhand.conf`` sorts after ``50-cloud-init.conf``."""
    tree.put(SSHD_CONFIG, stock_sshd_config("ubuntu-24.04"))
    tree.put(OLD_SSHD_DROPIN, ubuntu_hub.upload_bytes(SSHD_DROPIN))
    cloud_init = "/etc/ssh/sshd_config.d/50-cloud-init.conf"
    tree.put(cloud_init, (FIXTURES / "50-cloud-init.conf").read_text())
    effective = tree.effective()
    assert values(effective)["passwordauthentication"] == "yes"
    check = verify.key_only_check(effective, tree.sources())
    assert not check.passed
    assert check.name == verify.SSHD_CHECK
    assert check.detail == (
        f"passwordauthentication is yes (set in {tree.here(cloud_init)}; farmhand sets no)"
    )
    # verify reads the same answer from a host through testinfra (here: this machine).
    local = verify._Host(testinfra.get_host("local://"))
    assert verify.host_sources(local, tree.here(SSHD_CONFIG)) == tree.sources()


@pytest.mark.parametrize("role", ["hub", "worker"])
def test_el8_sshd_config_gets_the_include_first(
    role: str, tree: Tree, deploy: Callable[..., Plan]
) -> None:
    """EL 8's stock sshd_config has no Include (and says yes): our drop-in is never read until
    the deploy's own command puts the Include at the top; then a second deploy leaves it."""
    stock = stock_sshd_config("almalinux-8")
    assert not reads_dropins_first(stock)
    plan = deploy(role, "almalinux-8")
    tree.put(SSHD_CONFIG, stock)
    tree.put(SSHD_DROPIN, plan.upload_bytes(SSHD_DROPIN))
    before = tree.effective()
    assert values(before)["passwordauthentication"] == "yes"
    check = verify.key_only_check(before, tree.sources())
    assert not check.passed
    assert f"set in {tree.here(SSHD_CONFIG)}" in check.detail
    assert "permitrootlogin is yes" in check.detail
    # The deploy's command, run for real with sh and awk on the copy.
    fix = plan.op(f"{SSHD_CONFIG}: read /etc/ssh/sshd_config.d first")
    config = Path(tree.here(SSHD_CONFIG))
    config.chmod(0o600)  # EL's mode: kept
    for command in fix.shell:
        result = subprocess.run(
            ["sh", "-c", tree.rewrite(command)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
    fixed = config.read_text()
    assert config.stat().st_mode & 0o777 == 0o600
    assert fixed.endswith(tree.rewrite(stock)), "the stock file follows, unchanged"
    assert [k for k, _ in directives(fixed)][:2] == ["include", "hostkey"]
    if os.geteuid() == 0:
        config.chmod(0o644)  # sshd runs as nobody here
    after = tree.effective()
    assert values(after)["passwordauthentication"] == "no"
    assert values(after)["permitrootlogin"] == "without-password"
    assert verify.key_only_check(after, tree.sources()).passed
    # If sshd -t refused the result, the deploy would take the Include back out: the stock file.
    check_op = plan.op("Check the sshd configuration").shell[0]
    undo = [c for c in check_op.split("|| { ", 1)[1].split("; ") if c.startswith("sed -i")]
    scratch = config.with_name("undo-test")
    scratch.write_text(fixed)
    subprocess.run(["sh", "-c", undo[0].replace(SSHD_CONFIG, str(scratch))], check=True, timeout=30)
    assert scratch.read_text() == tree.rewrite(stock)
    # Converged: the fact now shows the Include first, and nothing is added again.
    host_text = fixed.replace(f"{tree.etc}/", "/etc/ssh/")
    assert reads_dropins_first(host_text)
    again = deploy(role, "almalinux-8", Facts("almalinux-8", sshd_config=host_text))
    assert not [op for op in again.ops if "read /etc/ssh/sshd_config.d first" in op.name]


@pytest.mark.parametrize("distro", DISTROS)
def test_which_stock_configs_read_the_dropins_first(distro: str) -> None:
    assert reads_dropins_first(stock_sshd_config(distro)) is (distro != "almalinux-8")


def test_reads_dropins_first_wants_the_include_before_any_setting() -> None:
    assert reads_dropins_first(f"# a comment\n\n{DROPIN_INCLUDE}\nPort 22\n")
    assert reads_dropins_first("include=/etc/ssh/sshd_config.d/*.conf\n")
    assert not reads_dropins_first(f"Port 2222\n{DROPIN_INCLUDE}\n")
    assert not reads_dropins_first("Include /etc/ssh/other.d/*.conf\n")
    assert not reads_dropins_first("")
    assert directives('PasswordAuthentication=no\nAcceptEnv "LANG" LC_* # why\n') == [
        ("passwordauthentication", ["no"]),
        ("acceptenv", ["LANG", "LC_*"]),
    ]


def test_a_setting_inside_match_is_not_global() -> None:
    files = {
        "/etc/ssh/sshd_config": "Include sshd_config.d/*.conf\nPasswordAuthentication no\n",
        "/etc/ssh/sshd_config.d/10-match.conf": "Match User bob\n  PasswordAuthentication yes\n",
    }

    def expand(pattern: str) -> list[str]:
        prefix = pattern.removesuffix("*.conf")
        return sorted(p for p in files if p.startswith(prefix) and p.endswith(".conf"))

    assert setting_sources(KEYWORDS, files.get, expand) == {
        "passwordauthentication": ("/etc/ssh/sshd_config", "no")
    }
