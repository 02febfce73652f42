"""End to end: a farm deployed through an ordinary sudo login, with no secret ever readable,
and what ``farmhand files`` shows for review is exactly what the deploy left on each host.

Hosts on rented machines and every Vagrant box are reached as ``ubuntu@``, ``admin@`` or
``vagrant@``: a user with passwordless sudo and a key login, not root. ONE lab for the module
(prefix ``fhsudo``): a hub, worker0001 and boss1, each with such a user, ``deployer``. Every role
is deployed as ``deployer@HOST`` for real; the hosts then reach each other over the overlay, and
a second run changes nothing.

While the first deploy runs, a reader running as ``nobody`` on every host tries to open each
secret file the deploy writes (the list comes from the same host model the deploy renders), in a
tight loop: a single successful read, however short the window, fails the test.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import support.lab
from farmhand.hostfiles import host_files
from farmhand.keystore.bundle import bundle_filename, open_bundle
from farmhand.keystore.plan import Role
from farmhand.lab import LabFarm
from farmhand.lab import provision as prov
from farmhand.model.distro import DEBIAN_12
from farmhand.model.host import host_model
from farmhand.queue import slurm

PREFIX = "fhsudo"
USER = "deployer"
HUB, W1, BOSS = "hub", "worker0001", "boss1"
ROLES = ((Role.HUB, HUB, ""), (Role.WORKER, W1, ""), (Role.BOSS, BOSS, "boss1"))

pytestmark = support.lab.MARKS

# Runs as nobody: tries every path until told to stop, prints each one it could read.
READER = r"""
import os, sys, time
paths = sys.argv[1:]
seen = set()
while not os.path.exists("/tmp/fh-reader.stop"):
    for path in paths:
        if path in seen:
            continue
        try:
            with open(path, "rb") as handle:
                handle.read(1)
        except OSError:
            continue
        seen.add(path)
        print(path, flush=True)
print("reader-done", flush=True)
"""


@dataclass
class Lab:
    farm: LabFarm
    first: dict[str, prov.DeployReport]
    leaks: dict[str, list[str]]
    secrets: dict[str, list[str]]


SECRET_OWNERS = {slurm.MUNGE_KEY: "munge"}
"""Secrets a service insists on owning (munge reads only a key it owns, mode 0400)."""


def secret_paths(farm: LabFarm, role: Role, name: str, bundle: str) -> list[str]:
    """Every secret file the deploy of ``role`` puts on ``name`` (and the folders around them)."""
    opened = open_bundle(
        prov.store_dir(farm) / bundle_filename(role, bundle), prov.lab_passphrase(farm)
    )
    model = host_model(opened, host="", hub_address="", distro=DEBIAN_12, key_logins_work=True)
    found = [f.path for f in host_files(model) if f.secret and not f.at_boot]
    assert found, f"the {role.value} deploy writes no secret: the reader would prove nothing"
    # Also the staging copies the deploy passes them through.
    return found + [f"{p.rsplit('/', 1)[0]}/.{p.rsplit('/', 1)[1]}.farmhand-new" for p in found]


def start_reader(farm: LabFarm, name: str, paths: list[str]) -> None:
    farm.put(name, "/tmp/fh-reader.py", READER.encode(), 0o644)
    quoted = " ".join(f"'{p}'" for p in paths)
    farm.exec(
        name,
        [
            "sh",
            "-c",
            "rm -f /tmp/fh-reader.stop /tmp/fh-reader.out; "
            "setsid runuser -u nobody -- python3 /tmp/fh-reader.py "
            f"{quoted} > /tmp/fh-reader.out 2>&1 < /dev/null &",
        ],
        check=True,
    )


def stop_reader(farm: LabFarm, name: str) -> list[str]:
    farm.exec(name, ["touch", "/tmp/fh-reader.stop"], check=True)
    out = ""
    for _ in range(50):
        out = farm.exec(name, ["cat", "/tmp/fh-reader.out"]).stdout
        if "reader-done" in out:
            break
        farm.exec(name, ["sleep", "0.2"])
    assert "reader-done" in out, f"the reader on {name} did not run: {out!r}"
    return [line for line in out.splitlines() if line and line != "reader-done"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    support.lab.require_lab()
    farm = LabFarm(tmp_path_factory.mktemp("sudo-state"), prefix=PREFIX, progress=print)
    try:
        farm.up(workers=1, bosses=1)
        prov.ensure_keys(farm, 1, print)
        secrets: dict[str, list[str]] = {}
        for role, name, bundle in ROLES:
            prov.add_sudo_user(farm, name, USER)
            secrets[name] = secret_paths(farm, role, name, bundle)
            start_reader(farm, name, secrets[name])
        first = {
            name: prov.deploy_role(farm, role, [name], bundle_filename(role, bundle), USER)
            for role, name, bundle in ROLES
        }
        leaks = {name: stop_reader(farm, name) for _, name, _ in ROLES}
        yield Lab(farm, first, leaks, secrets)
    finally:
        farm.down()


def test_every_role_converges_through_a_sudo_login(lab: Lab) -> None:
    for name, report in lab.first.items():
        assert report.ok, report.failure_message()
        assert report.hosts[name].changed > 0, f"the first deploy of {name} changed nothing"


def test_no_secret_is_ever_readable_by_another_user_during_the_first_deploy(lab: Lab) -> None:
    assert lab.leaks == {name: [] for name in lab.leaks}, "nobody read a secret mid-deploy"


def test_secrets_end_root_only_and_the_login_keeps_no_copy(lab: Lab) -> None:
    for name, paths in lab.secrets.items():
        finals = [p for p in paths if not p.endswith(".farmhand-new")]
        listing = lab.farm.exec(name, ["stat", "-c", "%n %U %a", *finals]).stdout.split("\n")
        for line in filter(None, listing):
            path, owner, mode = line.split()
            assert owner == SECRET_OWNERS.get(path, "root"), line
            assert int(mode, 8) & 0o007 == 0, f"{path} is open to others: {mode}"
        leftovers = lab.farm.exec(
            name, ["sh", "-c", f"ls -A /var/lib/farmhand/uploads /var/lib/farmhand/uploads-{USER}"]
        )
        assert leftovers.returncode == 0, leftovers.stderr
        assert leftovers.stdout.split() == [
            "/var/lib/farmhand/uploads:",
            f"/var/lib/farmhand/uploads-{USER}:",
        ], f"{name}: a staged secret was left behind: {leftovers.stdout}"


def test_folders_holding_secrets_are_not_listable_by_others(lab: Lab) -> None:
    """sshd's own host keys live in /etc/ssh by convention (0600 files in a 0755 folder): the
    lease host key sits beside them, so /etc/ssh is the one exception."""
    for name, paths in lab.secrets.items():
        folders = sorted({p.rsplit("/", 1)[0] for p in paths} - {"/etc/ssh"})
        listing = lab.farm.exec(name, ["stat", "-c", "%n %a", *folders]).stdout.split("\n")
        for line in filter(None, listing):
            folder, mode = line.split()
            assert int(mode, 8) & 0o004 == 0, f"{name}: {folder} is listable by others ({mode})"


def test_the_farm_deployed_through_sudo_reaches_itself_over_the_overlay(lab: Lab) -> None:
    hub = prov.overlay_ip(lab.farm, HUB)
    assert prov.ping(lab.farm, BOSS, hub), "boss1 cannot reach the hub"
    assert prov.ping(lab.farm, W1, hub), "worker0001 cannot reach the hub"
    assert prov.ping(lab.farm, BOSS, prov.overlay_ip(lab.farm, W1)), "boss1 cannot reach worker"


def test_a_second_sudo_deploy_changes_nothing(lab: Lab) -> None:
    for role, name, bundle in ROLES:
        report = prov.deploy_role(lab.farm, role, [name], bundle_filename(role, bundle), USER)
        result = report.hosts[name]
        assert result.changed == 0, f"{name}: {result.changed_ops}"
        assert result.unchanged == result.operations > 0, result


def test_the_login_user_has_no_key_of_its_own_afterwards(lab: Lab) -> None:
    """Nothing the deploy staged stays with the login: its folder is empty and 0700."""
    for name in lab.first:
        mode = lab.farm.exec(
            name, ["stat", "-c", "%U %a", f"/var/lib/farmhand/uploads-{USER}"]
        ).stdout.split()
        assert mode == [USER, "700"], f"{name}: {mode}"


# What the lab's deploys leave out on purpose (farmhand.lab.provision.LAB_DEPLOY_DATA): the
# render queue and the share mounts. Every other file `farmhand files` writes must be on the host.
LAB_SKIPS = (
    "/etc/farmhand/queue/",
    "/etc/systemd/system/farmhand-mongodb.",
    "/etc/systemd/system/farmhand-deadline-",
    "/etc/systemd/system/farmhand-flamenco",
    "/usr/local/lib/farmhand/fetch-artifact",
    "/etc/systemd/system/mnt-farmhand",
    "/etc/farmhand/smb-credentials",
)


def review_tree(lab: Lab, role: Role, name: str, bundle: str, out: Path) -> dict[str, Path]:
    """``farmhand files ROLE --out OUT --with-secrets`` as a user runs it: path on the host ->
    file written (secrets included: they are compared too)."""
    argv = [
        sys.executable, "-m", "farmhand", "files", role.value, "--out", str(out),
        "--bundle", str(prov.store_dir(lab.farm) / bundle_filename(role, bundle)),
        "--passphrase-file", str(prov.passphrase_file(lab.farm)), "--with-secrets",
    ]  # fmt: skip
    if role is Role.WORKER:
        argv += ["--host", name]  # the certificate this lab worker claims (its hostname)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARMHAND_")}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    return {"/" + p.relative_to(out).as_posix(): p for p in out.rglob("*") if p.is_file()}


def on_host(lab: Lab, name: str, paths: list[str]) -> dict[str, tuple[bytes, int]]:
    """Each path's bytes and mode on ``name``, read as root (secrets included)."""
    script = 'for f in "$@"; do [ -f "$f" ] && printf "%s %s " "$f" "$(stat -c %a "$f")" && '
    script += 'base64 -w0 "$f" && echo; done'
    out = lab.farm.exec(name, ["sh", "-c", script, "sh", *paths]).stdout
    found = {}
    for line in filter(None, out.split("\n")):
        path, mode, data = [*line.split(" ", 2), ""][:3]
        found[path] = (base64.b64decode(data), int(mode, 8))
    return found


@pytest.mark.parametrize(("role", "name", "bundle"), ROLES, ids=[r[1] for r in ROLES])
def test_the_files_farmhand_files_writes_are_the_files_the_deploy_left(
    lab: Lab, role: Role, name: str, bundle: str, tmp_path: Path
) -> None:
    review = review_tree(lab, role, name, bundle, tmp_path / name)
    assert len(review) >= 5, review
    landed = on_host(lab, name, sorted(review))
    expected = {p for p in review if not p.startswith(LAB_SKIPS)}
    assert set(landed) >= expected, f"not on {name}: {sorted(expected - set(landed))}"
    differ = [
        path
        for path in sorted(expected)
        if landed[path] != (review[path].read_bytes(), review[path].stat().st_mode & 0o7777)
    ]
    assert differ == [], f"{name}: review and host differ in {differ}"
