"""Least privilege on the farm's shared storage and in what farmhand runs (issue #11, item 3).

Checked on the session farm's bundles, their expanded host files (smb.conf through
``testparm``) and the hub's deploy against fact fixtures: Blender's Python auto-run is off
unless farm.toml turns it on; each role's bundle carries only its own Samba accounts; each
account writes as itself, into folders whose owners and modes keep workers from changing scenes,
the installers, the queue's code or another worker's renders. tests/test_lab_shares.py tries
the same with real smbd and smbclient.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from farmhand.errors import BundleError, UsageError
from farmhand.hostfiles import host_files
from farmhand.keystore.bundle import SMB_PASSWORD, Bundle, unpack
from farmhand.model.distro import DEBIAN_12
from farmhand.model.host import HostModel, host_model
from farmhand.model.paths import FLAMENCO_MANAGER_DIR, SMB_CREDENTIALS, SMB_WORKER_PASSWORDS
from farmhand.model.smb import (
    WORKER_SMB_KEY,
    WORKERS_GROUP,
    boss_account,
    share_folders,
    smb_account,
    worker_account,
)
from farmhand.onhost import leases
from support.pyinfra_harness import HUB_ADDRESS, Facts, Plan, open_bundles
from support.session import WORKER_NAMES, Farm

MANAGER_YAML = f"{FLAMENCO_MANAGER_DIR}/flamenco-manager.yaml"


@pytest.fixture(scope="module")
def opened(farm: Farm) -> dict[str, Bundle]:
    """The session farm's bundles, opened (``bundles`` is the deploy fixtures' paths)."""
    return open_bundles(farm)


def model_with(bundle: Bundle, **settings: Any) -> HostModel:
    plan = bundle.plan.with_settings(**settings)
    return host_model(
        dataclasses.replace(bundle, plan=plan), hub_address=HUB_ADDRESS, distro=DEBIAN_12
    )


def expanded(model: HostModel) -> dict[str, bytes]:
    return {f.path: f.content for f in host_files(model)}


def blender_args(model: HostModel) -> str:
    manager = yaml.safe_load(expanded(model)[MANAGER_YAML])
    (value,) = manager["variables"]["blenderArgs"]["values"]
    assert value["platform"] == "all"
    return str(value["value"])


def test_blender_python_autorun_is_off_by_default(opened: dict[str, Bundle]) -> None:
    args = blender_args(model_with(opened["hub"], render_manager="flamenco")).split()
    assert args == ["-b", "--disable-autoexec"]
    assert "-y" not in args


def test_blender_autorun_is_a_farm_setting(opened: dict[str, Bundle]) -> None:
    model = model_with(opened["hub"], render_manager="flamenco", blender_autorun=True)
    assert blender_args(model).split() == ["-b", "--enable-autoexec"]
    with pytest.raises(UsageError, match=r'^blender_autorun = "yes": expected true or false$'):
        model_with(opened["hub"], blender_autorun="yes")


def test_no_host_file_starts_blender_with_autorun(opened: dict[str, Bundle]) -> None:
    for manager in ("deadline", "flamenco"):
        for role in ("hub", "worker"):
            files = expanded(model_with(opened[role], render_manager=manager))
            for path, content in files.items():
                words = content.decode(errors="replace").split()
                if "blender" in " ".join(words):
                    assert not {"-y", "--enable-autoexec"} & set(words), path


# ------------------------------------------------------------------------------------------------
# Samba accounts per role
# ------------------------------------------------------------------------------------------------


def test_each_bundle_carries_only_its_roles_accounts(opened: dict[str, Bundle]) -> None:
    hub, worker, boss = opened["hub"], opened["worker"], opened["boss"]
    # Bosses: the farm user with the bosses' password; no worker account.
    assert smb_account(boss) == boss_account(hub)
    assert smb_account(boss).user == "farmhand"
    assert WORKER_SMB_KEY.name not in boss.extras
    with pytest.raises(BundleError, match="no worker share key"):
        worker_account(boss, "worker0001")
    # Workers: their own certificate's account; never the bosses' password.
    assert not worker.smb_password
    assert SMB_PASSWORD not in unpack(worker.to_tar(), "workers bundle")
    with pytest.raises(BundleError, match="no boss share password"):
        boss_account(worker)
    accounts = {name: smb_account(worker, name) for name in WORKER_NAMES}
    assert {a.user for a in accounts.values()} == set(WORKER_NAMES)
    assert len({a.password for a in accounts.values()}) == len(WORKER_NAMES)
    assert all(len(a.password) == 64 for a in accounts.values())
    assert boss.smb_password not in {a.password for a in accounts.values()}
    # The hub sets every one of them, and the same ones the workers use.
    assert {a.user: a for a in host_model(hub, distro=DEBIAN_12).worker_smb_accounts} == accounts


def test_a_worker_picks_its_share_login_at_boot_with_its_certificate(
    opened: dict[str, Bundle], tmp_path: Path
) -> None:
    """The picker's own step (onhost/leases.py) with the worker's expanded pool and config."""
    files = {f.path: f for f in host_files(model_with(opened["worker"]))}
    config = json.loads(files[leases.WORKER_CONFIG].content)
    assert config["smb_credentials"] == SMB_CREDENTIALS
    assert files[SMB_CREDENTIALS].at_boot
    pool = tmp_path / "pool"
    pool.mkdir()
    for path, item in files.items():
        if path.startswith(config["pool_dir"] + "/"):
            (pool / path.rsplit("/", 1)[1]).write_bytes(item.content)
    for key in ("cert", "key", "smb_credentials"):
        config[key] = str(tmp_path / key)
    config["pool_dir"] = str(pool)
    leases._install_certificate(config, "worker0003")
    own = worker_account(opened["worker"], "worker0003")
    credentials = tmp_path / "smb_credentials"
    assert credentials.read_text() == f"username=worker0003\npassword={own.password}\n"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600


def parsed_smb_conf(conf: bytes, tmp_path: Path) -> dict[str, dict[str, str]]:
    if not shutil.which("testparm"):
        pytest.skip("testparm is missing (Debian package samba-common-bin)")
    path = tmp_path / "smb.conf"
    path.write_bytes(conf)
    result = subprocess.run(
        ["testparm", "-s", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    sections: dict[str, dict[str, str]] = {}
    current = ""
    for line in result.stdout.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections[current] = {}
        elif "=" in line and current:
            key, _, value = line.partition("=")
            sections[current][key.strip()] = value.strip()
    return sections


def test_each_account_writes_as_itself_and_installers_are_read_only(
    opened: dict[str, Bundle], tmp_path: Path
) -> None:
    hub = host_model(opened["hub"], distro=DEBIAN_12)
    files = {f.path: f for f in host_files(hub)}
    sections = parsed_smb_conf(files["/etc/samba/smb.conf"].content, tmp_path)
    for name in ("farm", "queue", "installers"):
        share = sections[name]
        assert share["valid users"] == f"farmhand @{WORKERS_GROUP}", name
        # testparm lists only what differs from the defaults (no force user, no guests).
        assert "force user" not in share, f"{name}: each account writes as itself"
        assert "force group" not in share, name
        assert share.get("guest ok", "No") == "No", name
    assert sections["installers"].get("read only", "Yes") == "Yes"
    farm = sections["farm"]
    assert farm["read only"] == "No"
    # New files only their creator changes; new folders sticky (nobody removes another's).
    assert (farm["create mask"], farm["force create mode"]) == ("0644", "0644")
    assert farm["force directory mode"] == "01775"
    queue = sections["queue"]
    assert (queue["create mask"], queue["force directory mode"]) == ("0664", "02775")
    # The hub's list of worker passwords is root's and holds every live worker, once.
    listed = files[SMB_WORKER_PASSWORDS]
    assert (listed.mode, listed.secret) == (0o600, True)
    names = [line.split()[0] for line in listed.content.decode().splitlines()]
    assert names == list(WORKER_NAMES)


def test_share_folders_keep_workers_from_changing_scenes_code_and_others_renders() -> None:
    folders = {f.path: (f.user, f.group, f.mode) for f in share_folders("farmhand")}
    assert folders == {
        "/srv/farmhand/farm": ("root", "root", 0o755),
        "/srv/farmhand/farm/scenes": ("farmhand", "farmhand", 0o2755),
        "/srv/farmhand/farm/renders": ("farmhand", WORKERS_GROUP, 0o3775),
        "/srv/farmhand/queue": ("root", "root", 0o755),
        "/srv/farmhand/installers": ("root", "root", 0o755),
    }
    renders = folders["/srv/farmhand/farm/renders"][2]
    assert renders & stat.S_ISVTX, "sticky: a worker cannot remove or rename another's files"
    assert renders & stat.S_IWGRP, "the workers' group adds files"
    for path, (_, group, mode) in folders.items():
        if group != WORKERS_GROUP:
            assert not mode & (stat.S_IWGRP | stat.S_IWOTH), f"workers could write {path}"


def test_the_hub_deploy_makes_accounts_and_folders(deploy: Callable[..., Plan]) -> None:
    plan = deploy("hub", "debian-12")
    for folder in share_folders("farmhand"):
        op = plan.op(f"Share folder {folder.path} (")
        assert f"chmod {folder.mode:o} {folder.path}" in op.shell, op.shell
        assert f"chown {folder.user}:{folder.group} {folder.path}" in op.shell, op.shell
    assert plan.op(f"Group {WORKERS_GROUP}").shell
    (useradd,) = plan.op("Worker share accounts").shell
    assert useradd.startswith(f"for name in {' '.join(WORKER_NAMES)}; do ")
    assert f"--shell /usr/sbin/nologin --gid {WORKERS_GROUP}" in useradd
    set_passwords = plan.op("Samba passwords of").shell
    assert set_passwords[0].endswith(f"done < {SMB_WORKER_PASSWORDS}")
    assert "smbpasswd -s -a" in set_passwords[0]
    assert "smbpasswd -x" in set_passwords[1], "a revoked worker's account goes"
    assert SMB_WORKER_PASSWORDS in plan.uploads()
    assert not plan.has("force user")


def test_an_upgraded_hub_loses_the_old_setgid_bit_on_farm(deploy: Callable[..., Plan]) -> None:
    old = {("Directory", "/srv/farmhand/farm"): {"mode": 2775, "user": "farmhand", "group": "x"}}
    plan = deploy("hub", "debian-12", Facts("debian-12", files=old))
    assert plan.op("/srv/farmhand/farm: clear special bits").shell == [
        "chmod 00755 /srv/farmhand/farm"
    ]
    assert not deploy("hub", "debian-12").has("chmod 00755")
