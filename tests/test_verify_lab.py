"""`farmhand verify` against a real deployed farm on the container lab (issue #7).

The lab is the shared standard farm (tests/support/standard_farm.py: hub, two workers and
boss1, provisioned with the real keygen and deploys). The real CLI, ``farmhand verify ROLE
root@ADDRESS``, runs in the lab's desk namespace (where the hosts are reachable) and must pass
for every role; then the farm is broken on purpose, one thing at a time, and verify must fail
naming exactly that check, and pass again once it is repaired (the farm is shared: every test
puts back what it broke).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest

import support.lab
from farmhand.inspect.verify import SSHD_CHECK
from farmhand.lab import LabFarm
from farmhand.onhost.jobs import JOBS_USER
from support.cli import clean_env
from support.standard_farm import BOSS, HUB, W1, StandardFarm

PREFIX = "fhvag"
"""Names this module's own test services on the hosts."""
ROLE_OF = {HUB: "hub", W1: "worker", BOSS: "boss"}

pytestmark = support.lab.MARKS


@dataclass
class Lab:
    farm: LabFarm
    overlay: dict[str, str]

    def sh(self, name: str, script: str) -> str:
        return support.lab.sh(self.farm, name, script)

    def verify(self, *names: str) -> subprocess.CompletedProcess[str]:
        """The real ``farmhand verify ROLE root@ADDRESS...`` from the desk namespace."""
        roles = {ROLE_OF[n] for n in names}
        assert len(roles) == 1
        argv = [sys.executable, "-m", "farmhand", "verify", roles.pop()]
        argv += [f"root@{self.farm.address(n)}" for n in names]
        argv += ["--ssh-key", str(self.farm.key_path), "--known-hosts", "/dev/null"]
        return subprocess.run(
            self.farm.desk_argv(argv),
            env=clean_env(None),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=180,
        )


@pytest.fixture(scope="module")
def lab(standard_farm: StandardFarm) -> Lab:
    return Lab(standard_farm.farm, standard_farm.overlay)


def rows(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """The verify table: check name -> 'ok' or 'FAIL' (rich's box lines stripped)."""
    found = {}
    for line in result.stdout.splitlines():
        cells = [c.strip() for c in line.replace("┃", "│").split("│")]
        cells = [c for c in cells if c]
        if len(cells) >= 2 and cells[0] in ("ok", "FAIL"):
            found[cells[1]] = cells[0]
    return found


def failed(result: subprocess.CompletedProcess[str]) -> list[str]:
    return sorted(name for name, mark in rows(result).items() if mark == "FAIL")


@pytest.mark.parametrize("name", [HUB, W1, BOSS])
def test_every_role_passes_verify(lab: Lab, name: str) -> None:
    result = lab.verify(name)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = rows(result)
    assert failed(result) == []
    assert "farmhand-nebula running and enabled" in checks
    assert "nebula config is valid (nebula -test)" in checks
    assert "/etc/nebula/farmhand is a folder 0700 root:root" in checks
    assert "/etc/nebula/farmhand/host.key is 0600 root:root" in checks
    if name == HUB:
        assert "smbd running and enabled" in checks
        assert f"SMB listens only on the overlay address ({lab.overlay[HUB]}:445)" in checks
        assert "nebula listens on udp 42042" in checks
        assert "/etc/farmhand/smb.password is 0600 root:root" in checks
    if name == W1:
        # The default manager (Slurm) runs render tasks as farmhand-jobs, which reads the login.
        assert f"/etc/farmhand/smb-credentials is 0640 root:{JOBS_USER}" in checks
        assert any(c.startswith("every key in /etc/nebula/farmhand/pool is 0600") for c in checks)
    if name != BOSS:
        assert "on the underlay only sshd (tcp) and nebula (udp) listen" in checks
        assert "farmhand-firewall running and enabled" in checks
        assert SSHD_CHECK in checks, "verify must judge sshd's effective settings (sshd -T)"
    else:
        assert not any("underlay" in c for c in checks), "a boss is a person's own machine"


def test_a_private_key_made_readable_fails_verify(lab: Lab) -> None:
    check = "/etc/nebula/farmhand/host.key is 0600 root:root"
    lab.sh(HUB, "chmod 0644 /etc/nebula/farmhand/host.key")
    try:
        result = lab.verify(HUB)
    finally:
        lab.sh(HUB, "chmod 0600 /etc/nebula/farmhand/host.key")
    assert result.returncode == 1
    assert failed(result) == [check]
    assert "mode 0644" in result.stdout
    assert result.stderr.startswith("error: 1 check(s) failed: ")
    assert check in result.stderr
    assert lab.verify(HUB).returncode == 0


def test_a_listener_on_the_underlay_fails_verify_but_one_on_the_overlay_does_not(
    lab: Lab,
) -> None:
    check = "on the underlay only sshd (tcp) and nebula (udp) listen"
    serve = "systemd-run --unit {unit} python3 -m http.server {port} --bind {address}"
    wait = "for i in $(seq 50); do ss -Hltn | grep -q ':{port} ' && exit 0; sleep 0.1; done; exit 1"
    # On the overlay address: Nebula's group firewall decides who reaches it. Allowed.
    lab.sh(W1, serve.format(unit=f"{PREFIX}-overlay", port=8081, address=lab.overlay[W1]))
    lab.sh(W1, wait.format(port=8081))
    lab.sh(W1, serve.format(unit=f"{PREFIX}-underlay", port=8080, address="0.0.0.0"))  # noqa: S104
    lab.sh(W1, wait.format(port=8080))
    try:
        result = lab.verify(W1)
    finally:
        lab.sh(W1, f"systemctl stop {PREFIX}-underlay {PREFIX}-overlay")
    assert result.returncode == 1, result.stdout
    assert failed(result) == [check]
    assert "tcp 0.0.0.0:8080 (python3)" in result.stdout
    assert "8081" not in result.stdout
    assert lab.verify(W1).returncode == 0


def test_a_stopped_host_firewall_and_a_stopped_nebula_fail_verify(lab: Lab) -> None:
    lab.sh(W1, "systemctl stop farmhand-firewall")
    try:
        result = lab.verify(W1)
    finally:
        lab.sh(W1, "systemctl start farmhand-firewall")
    assert failed(result) == [
        "farmhand-firewall running and enabled",
        "nftables table 'inet farmhand' is loaded (policy drop)",
    ]
    lab.sh(BOSS, "systemctl stop farmhand-nebula")
    try:
        result = lab.verify(BOSS)
    finally:
        lab.sh(BOSS, "systemctl start farmhand-nebula")
    assert failed(result) == [
        "farmhand-nebula running and enabled",
        "overlay interface nebula1 is up in the farm network",
    ]
    assert result.returncode == 1


def test_a_drop_in_that_turns_password_logins_back_on_fails_verify(lab: Lab) -> None:
    """sshd keeps the first value it reads: a drop-in sorting before farmhand's (as Ubuntu's
    50-cloud-init.conf did before 00-farmhand.conf) wins, and verify must say so and where."""
    rogue = "/etc/ssh/sshd_config.d/00-aaa-rogue.conf"
    lab.sh(W1, f"printf 'PasswordAuthentication yes\\n' > {rogue}")
    try:
        effective = lab.sh(W1, "sshd -T | grep -i '^passwordauthentication '")
        result = lab.verify(W1)
    finally:
        lab.sh(W1, f"rm -f {rogue}")
    assert effective.strip().lower() == "passwordauthentication yes"
    assert result.returncode == 1, result.stdout
    assert failed(result) == [SSHD_CHECK]
    assert f"passwordauthentication is yes (set in {rogue}" in result.stdout
    assert lab.verify(W1).returncode == 0
