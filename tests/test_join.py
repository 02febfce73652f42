"""`farmhand join` without a lab: bad input leaves the config folder exactly as it was, the
service plans for macOS and Windows are the exact files and commands we would run there, and
the foreground mode stops cleanly on SIGINT/SIGTERM (real nebula in a network namespace of
the test's own, talking to nothing but its loopback).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import plistlib
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from farmhand.hostfiles import join_files
from farmhand.join import JoinError
from farmhand.join.admin import Elevation
from farmhand.join.commands import Action, Rename, Step, Write
from farmhand.join.flow import JoinOptions, join
from farmhand.join.leave import leave
from farmhand.join.mounts import (
    MountPlan,
    MountResult,
    mount_plan,
    mount_report,
    mount_share,
    should_mount,
    unmount_steps,
)
from farmhand.join.nebula import ReleaseDownload, fetch_release, locate
from farmhand.join.paths import JoinPaths
from farmhand.join.platforms import OS
from farmhand.join.probe import Probe
from farmhand.join.services import service_plan, service_removal
from farmhand.join.shares import share_hints
from farmhand.join.staging import windows_owner_only
from farmhand.join.state import Joined, JoinState, load_state, save_state
from farmhand.join.steps import system_files
from farmhand.join.system import (
    LAUNCHD_LABEL,
    LAUNCHD_LOG,
    LAUNCHD_PLIST,
    SYSTEMD_PATH,
    WRITE_SCRIPT,
    ServiceBinary,
    SystemPaths,
    first_changeable,
)
from farmhand.keystore.bundle import open_bundle
from farmhand.model.host import host_model
from farmhand.nebula.release import ARCHIVES, ReleaseArchive
from support.cli import (
    PASSPHRASE,
    WITH_PASSPHRASE,
    WITH_WRONG_PASSPHRASE,
    assert_cli_error,
    changed,
    run_cli,
    snapshot,
)
from support.session import SESSION_BOSS, Farm

BOSS_BUNDLE = f"boss-{SESSION_BOSS}.keybundle.age"
NETNS = "fhjoin-fg"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config folder that already holds something of the user's: it must survive."""
    root = tmp_path / "config"
    root.mkdir()
    (root / "keep.txt").write_text("the user's own file\n")
    return root


def _env(config: Path, **extra: str) -> dict[str, str]:
    return {**WITH_PASSPHRASE, "FARMHAND_CONFIG_DIR": str(config / "farmhand"), **extra}


# --- bad input: one line each, nothing half-configured ------------------------------------


def test_a_wrong_passphrase_is_one_line_and_writes_nothing(farm: Farm, config: Path) -> None:
    before = snapshot(config)
    result = run_cli(
        "join",
        "--bundle",
        farm.root / BOSS_BUNDLE,
        "--hub-address",
        "203.0.113.7",
        env={**_env(config), **WITH_WRONG_PASSPHRASE},
    )
    assert_cli_error(result, "wrong passphrase")
    assert snapshot(config) == before


def test_a_worker_bundle_is_refused(farm: Farm, config: Path) -> None:
    before = snapshot(config)
    result = run_cli(
        "join",
        "--bundle",
        farm.root / "workers.keybundle.age",
        "--hub-address",
        "203.0.113.7",
        env=_env(config),
    )
    assert_cli_error(result, "is the worker keybundle", "boss keybundle", code=2)
    assert snapshot(config) == before


def test_nebula_missing_and_not_installable(farm: Farm, config: Path, tmp_path: Path) -> None:
    empty = tmp_path / "bin"  # a PATH with no nebula, no apt-get
    empty.mkdir()
    before = snapshot(config)
    result = run_cli(
        "join",
        "--bundle",
        farm.root / BOSS_BUNDLE,
        "--hub-address",
        "203.0.113.7",
        env=_env(config, PATH=str(empty)),
    )
    assert_cli_error(result, "nebula is not installed", "--nebula PATH")
    assert snapshot(config) == before


def test_a_nebula_that_is_not_nebula_is_refused(farm: Farm, config: Path) -> None:
    before = snapshot(config)
    result = run_cli(
        "join",
        "--bundle",
        farm.root / BOSS_BUNDLE,
        "--hub-address",
        "203.0.113.7",
        "--nebula",
        "/bin/true",
        env=_env(config),
    )
    assert_cli_error(result, "does not run as nebula")
    assert snapshot(config) == before


def test_service_and_foreground_together_are_a_usage_error(config: Path) -> None:
    result = run_cli("join", "--service", "--foreground", env=_env(config))
    assert_cli_error(result, "choose one of --service and --foreground", code=2)


def test_status_before_joining_says_how_to_join(config: Path) -> None:
    result = run_cli("status", env=_env(config))
    assert_cli_error(result, "has not joined a farm", "farmhand join", code=2)


def test_leave_without_a_join_changes_nothing(config: Path) -> None:
    before = snapshot(config)
    result = run_cli("join", "--leave", env=_env(config))
    assert result.returncode == 0, result.stderr
    assert "nothing to leave" in result.stdout
    assert snapshot(config) == before


def _nobody() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        return None


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root")
@pytest.mark.parametrize("mode", ["--service", "--foreground"])
def test_no_admin_rights_is_one_line_naming_the_step(farm: Farm, mode: str) -> None:
    """An unprivileged user whom sudo will not help: refused before anything is written."""
    user = _nobody()
    if user is None:
        pytest.skip("no user 'nobody'")
    home = Path(f"/tmp/fhjoin-noadmin-{os.getpid()}")  # nobody cannot enter pytest's tmp
    shutil.rmtree(home, ignore_errors=True)
    try:
        (home / "config").mkdir(parents=True)
        (home / "config" / "keep.txt").write_text("the user's own file\n")
        shutil.copy(farm.root / BOSS_BUNDLE, home / BOSS_BUNDLE)
        for path in (home, home / "config", home / "config" / "keep.txt", home / BOSS_BUNDLE):
            os.chown(path, user.pw_uid, user.pw_gid)
        before = snapshot(home / "config")
        argv = [
            "setpriv",
            f"--reuid={user.pw_uid}",
            f"--regid={user.pw_gid}",
            "--clear-groups",
            sys.executable,
            "-m",
            "farmhand",
            "join",
            mode,
            "--bundle",
            str(home / BOSS_BUNDLE),
            "--hub-address",
            "203.0.113.7",
        ]
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(home),
            "FARMHAND_CONFIG_DIR": str(home / "config" / "farmhand"),
            "FARMHAND_PASSPHRASE": PASSPHRASE,
            "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"),
            "COLUMNS": "200",
        }
        result = subprocess.run(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        what = "installing nebula as the systemd unit" if mode == "--service" else "starting nebula"
        assert_cli_error(result, what, "needs administrator rights")
        assert snapshot(home / "config") == before
    finally:
        shutil.rmtree(home, ignore_errors=True)


# --- the service on each OS: everything it runs or reads is root's -------------------------

CONFIG = b"pki: the config\n"
CA, CERT, KEY = b"the CA\n", b"the certificate\n", b"the key\n"
SERVICE_FILES = [
    ("config.yml", CONFIG, 0o600),
    ("ca.crt", CA, 0o644),
    ("host.crt", CERT, 0o644),
    ("host.key", KEY, 0o600),
]
MAC_TOP = "/Library/Application Support/farmhand"
WIN_TOP = r"C:\ProgramData\farmhand"


def _argvs(actions: tuple[Action, ...]) -> list[tuple[str, ...]]:
    """Every action as words: a command's argv; a write or rename by farmhand itself as what
    it does and where."""
    out = []
    for action in actions:
        if isinstance(action, Write):
            out.append(("<write>", action.path))
        elif isinstance(action, Rename):
            out.append(("<rename>", action.source, action.target))
        else:
            out.append(action.argv)
    return out


def _writes(actions: tuple[Action, ...]) -> dict[str, bytes | None]:
    """What each write puts where: root's sh gets it on stdin, farmhand writes it itself."""
    out: dict[str, bytes | None] = {}
    for action in actions:
        if isinstance(action, Write):
            out[action.path] = action.content
        elif isinstance(action, Step) and action.argv[:3] == ("sh", "-c", WRITE_SCRIPT):
            out[action.argv[4]] = action.input
    return out


def _write(path: str, mode: str) -> tuple[str, ...]:
    return ("sh", "-c", WRITE_SCRIPT, "sh", path, mode)


def test_the_macos_launchd_plist_and_commands() -> None:
    system = SystemPaths.default(OS.MACOS)
    binary = ServiceBinary(files=(("nebula", b"nebula from the pinned release"),))
    plan = service_plan(
        OS.MACOS, system, files=SERVICE_FILES, binary=binary, farm="studio", boss="alice"
    )
    staging, final = f"{MAC_TOP}/.join.new", f"{MAC_TOP}/join"
    nebula, config = f"{MAC_TOP}/bin/nebula", f"{MAC_TOP}/join/config.yml"
    owned = ("-o", "root", "-g", "wheel")
    assert _argvs(plan.place) == [
        ("install", "-d", "-m", "0755", *owned, MAC_TOP),
        ("install", "-d", "-m", "0755", *owned, f"{MAC_TOP}/bin"),
        _write(f"{MAC_TOP}/bin/.nebula.new", "0755"),
        ("mv", "-f", f"{MAC_TOP}/bin/.nebula.new", nebula),
        ("rm", "-rf", staging),
        ("install", "-d", "-m", "0700", *owned, staging),
        _write(f"{staging}/config.yml", "0600"),
        _write(f"{staging}/ca.crt", "0644"),
        _write(f"{staging}/host.crt", "0644"),
        _write(f"{staging}/host.key", "0600"),
        _write(f"{staging}/farmhand.join.plist", "0644"),
        ("mv", staging, final),
    ]
    plist_file = _writes(plan.place)[f"{staging}/farmhand.join.plist"]
    assert plist_file is not None
    assert plistlib.loads(plist_file) == {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": [nebula, "-config", config],
        "RunAtLoad": True,
        "KeepAlive": True,
        "ThrottleInterval": 5,
        "StandardOutPath": LAUNCHD_LOG,
        "StandardErrorPath": LAUNCHD_LOG,
    }
    assert _writes(plan.place)[f"{staging}/host.key"] == KEY
    assert _writes(plan.place)[f"{MAC_TOP}/bin/.nebula.new"] == b"nebula from the pinned release"
    assert plan.check is not None
    assert plan.check.argv == (nebula, "-test", "-config", config)
    assert [s.argv for s in plan.start] == [
        ("install", "-m", "0644", *owned, f"{final}/farmhand.join.plist", LAUNCHD_PLIST),
        ("launchctl", "bootstrap", "system", LAUNCHD_PLIST),
    ]
    assert [s.argv for s in plan.remove] == [
        ("launchctl", "bootout", "system/farmhand.join"),
        ("rm", "-f", LAUNCHD_PLIST, LAUNCHD_LOG),
        ("rm", "-rf", final, staging),
        ("rm", "-f", nebula, f"{MAC_TOP}/bin/.nebula.new"),
        ("rmdir", f"{MAC_TOP}/bin"),
        ("rmdir", MAC_TOP),
    ]
    assert all(isinstance(s, Step) and s.admin for s in plan.install + plan.remove)
    assert LAUNCHD_PLIST == "/Library/LaunchDaemons/farmhand.join.plist"


def test_the_windows_service_commands_acls_and_key_acl() -> None:
    system = SystemPaths.default(OS.WINDOWS)
    binary = ServiceBinary(files=(("nebula.exe", b"nebula.exe"), ("wintun.dll", b"wintun")))
    plan = service_plan(
        OS.WINDOWS, system, files=SERVICE_FILES, binary=binary, farm="studio", boss="alice"
    )
    staging, final = rf"{WIN_TOP}\.join.new", rf"{WIN_TOP}\join"
    nebula, config = rf"{final}\nebula.exe", rf"{final}\config.yml"
    assert _argvs(plan.place) == [
        ("cmd", "/d", "/c", "mkdir", WIN_TOP),
        ("icacls", WIN_TOP, "/setowner", "*S-1-5-32-544"),
        ("icacls", WIN_TOP, "/reset"),
        (
            "icacls",
            WIN_TOP,
            "/inheritance:r",
            "/grant:r",
            "*S-1-5-18:(OI)(CI)F",
            "/grant:r",
            "*S-1-5-32-544:(OI)(CI)F",
        ),
        ("cmd", "/d", "/c", "rmdir", "/s", "/q", staging),
        ("cmd", "/d", "/c", "mkdir", staging),
        ("<write>", rf"{staging}\config.yml"),
        ("<write>", rf"{staging}\ca.crt"),
        ("<write>", rf"{staging}\host.crt"),
        ("<write>", rf"{staging}\host.key"),
        ("<write>", rf"{staging}\nebula.exe"),
        ("<write>", rf"{staging}\wintun.dll"),
        ("<rename>", staging, final),
    ]
    assert _writes(plan.place)[rf"{staging}\host.key"] == KEY
    assert plan.check is not None
    assert plan.check.argv == (nebula, "-test", "-config", config)
    assert [s.argv for s in plan.start] == [
        (nebula, "-service", "install", "-config", config),
        (nebula, "-service", "start"),
    ]
    assert [s.argv for s in plan.remove] == [
        (nebula, "-service", "stop"),
        (nebula, "-service", "uninstall"),
        ("cmd", "/d", "/c", "rmdir", "/s", "/q", final),
        ("cmd", "/d", "/c", "rmdir", "/s", "/q", staging),
        ("cmd", "/d", "/c", "rmdir", WIN_TOP),
    ]
    assert [s.check for s in plan.remove[:2]] == [False, True]
    # The user's own folder (foreground): an owner-only ACL on each secret file.
    key = r"C:\Users\alice\AppData\Local\farmhand\join\host.key"
    acl = windows_owner_only(key, r"LAPTOP\alice")
    assert acl.argv == (
        "icacls",
        key,
        "/inheritance:r",
        "/grant:r",
        r"LAPTOP\alice:F",
        "/grant:r",
        "*S-1-5-18:R",
    )
    assert acl.admin is False


def test_the_linux_unit_and_its_removal() -> None:
    system = SystemPaths.default(OS.LINUX)
    plan = service_plan(
        OS.LINUX,
        system,
        files=SERVICE_FILES,
        binary=ServiceBinary(path="/usr/bin/nebula"),  # root's own: run as it is
        farm="studio",
        boss="alice",
    )
    staging, final = "/etc/nebula/.farmhand-join.new", "/etc/nebula/farmhand-join"
    owned = ("-o", "root", "-g", "root")
    assert _argvs(plan.place) == [
        ("mkdir", "-p", "-m", "0755", "/etc/nebula"),
        ("rm", "-rf", staging),
        ("install", "-d", "-m", "0700", *owned, staging),
        _write(f"{staging}/config.yml", "0600"),
        _write(f"{staging}/ca.crt", "0644"),
        _write(f"{staging}/host.crt", "0644"),
        _write(f"{staging}/host.key", "0600"),
        _write(f"{staging}/farmhand-join.service", "0644"),
        ("mv", "-T", staging, final),
    ]
    unit = _writes(plan.place)[f"{staging}/farmhand-join.service"]
    assert unit is not None
    text = unit.decode()
    assert 'ExecStart="/usr/bin/nebula" -config "/etc/nebula/farmhand-join/config.yml"' in text
    assert "WantedBy=multi-user.target" in text
    assert [s.argv for s in plan.start] == [
        ("install", "-m", "0644", *owned, f"{final}/farmhand-join.service", SYSTEMD_PATH),
        ("systemctl", "daemon-reload"),
        ("systemctl", "enable", "--now", "farmhand-join.service"),
    ]
    assert ("rm", "-f", SYSTEMD_PATH) in [s.argv for s in plan.remove]
    assert ("rm", "-rf", final, staging) in [s.argv for s in plan.remove]
    # Removal follows from the OS and farmhand's places alone: nothing to record for leave.
    assert plan.remove == service_removal(OS.LINUX, SystemPaths.default(OS.LINUX))


@pytest.mark.interop
@pytest.mark.parametrize("os_", [OS.LINUX, OS.MACOS, OS.WINDOWS])
def test_no_service_step_touches_the_users_folder(farm: Farm, os_: OS) -> None:
    """With the real boss files: every path a service step names (and every path in the
    config root's nebula reads) is in root's place, or is an OS tool, on every OS."""
    model = host_model(open_bundle(farm.root / BOSS_BUNDLE, PASSPHRASE), hub_address="203.0.113.7")
    system = SystemPaths.default(os_)
    if os_ is OS.LINUX:
        binary = ServiceBinary(path="/usr/bin/nebula")
    else:
        names = ["nebula.exe", "wintun.dll"] if os_ is OS.WINDOWS else ["nebula"]
        binary = ServiceBinary(files=tuple((n, b"binary") for n in names))
    files = system_files(model, system)
    plan = service_plan(os_, system, files=files, binary=binary, farm="studio", boss="alice")
    roots = [p for p in (system.dir, system.staging, system.bin_dir, system.unit, system.log) if p]
    roots += [system.top or system.parent, "/usr/bin/nebula"]
    named = [w for argv in _argvs(plan.install + plan.remove) for w in argv]
    paths = [w for w in named if w.startswith("C:" if os_ is OS.WINDOWS else "/")]
    assert paths
    assert [p for p in paths if not any(p.startswith(r) for r in roots)] == []
    config = _writes(plan.place)[system.staging + os_.sep + "config.yml"]
    assert config is not None
    for key, name in (("ca", "ca.crt"), ("cert", "host.crt"), ("key", "host.key")):
        assert f"  {key}: {system.file(name)}\n" in config.decode()
    assert b"PRIVATE KEY" in (_writes(plan.place)[system.staging + os_.sep + "host.key"] or b"")
    if os_ is not OS.WINDOWS:  # root's files reach root's sh on stdin, never as an argument
        assert all(b"PRIVATE KEY" not in w.encode() for w in named)


@pytest.mark.interop
@pytest.mark.parametrize("os_", [OS.LINUX, OS.MACOS, OS.WINDOWS])
def test_the_boss_nebula_config_per_os(farm: Farm, tmp_path: Path, os_: OS) -> None:
    bundle = open_bundle(farm.root / BOSS_BUNDLE, PASSPHRASE)
    model = host_model(bundle, hub_address="203.0.113.7")
    folder = str(tmp_path) if os_ is not OS.WINDOWS else r"C:\Users\alice\farmhand\join"
    files = join_files(model, folder, sep=os_.sep, tun_dev=os_.tun_dev)
    by_name = {f.path.rsplit(os_.sep, 1)[-1]: f for f in files}
    assert set(by_name) == {"config.yml", "ca.crt", "host.crt", "host.key"}
    assert by_name["host.key"].mode == 0o600
    assert by_name["config.yml"].mode == 0o600
    text = by_name["config.yml"].text
    assert f"key: {folder}{os_.sep}host.key" in text
    assert f"dev: {'utun' if os_ is OS.MACOS else 'nebula1'}" in text
    assert '"10.87.0.1": ["203.0.113.7:42042"]' in text
    if os_ is not OS.WINDOWS:  # the real nebula accepts it (paths exist here)
        for f in files:
            Path(f.path).write_bytes(f.content)
        test = subprocess.run(
            ["nebula", "-test", "-config", str(tmp_path / "config.yml")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert test.returncode == 0, test.stdout + test.stderr


def test_share_hints_speak_each_os() -> None:
    assert share_hints(OS.MACOS, "10.87.0.1", "farmhand", ["farm"], "/p")[0].startswith(
        "farm: Finder > Go > Connect to Server: smb://farmhand@10.87.0.1/farm"
    )
    windows = share_hints(OS.WINDOWS, "10.87.0.1", "farmhand", ["farm"], "C:\\p")
    assert "\\\\10.87.0.1\\farm" in windows[0]
    assert "/user:farmhand" in windows[0]
    linux = share_hints(OS.LINUX, "10.87.0.1", "farmhand", ["farm", "queue"], "/p")
    assert "gio mount smb://farmhand@10.87.0.1/queue" in linux[1]
    assert "mount -t cifs //10.87.0.1/farm" in linux[0]
    assert linux[-1] == "SMB user farmhand; the password is in /p (readable only by you)"


# --- foreground: real nebula in a namespace of our own --------------------------------------


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nebula") is None:
        pytest.skip("needs root, ip and nebula")
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    subprocess.run(["ip", "-n", NETNS, "link", "set", "lo", "up"], check=True)
    try:
        yield NETNS
    finally:
        subprocess.run(["ip", "netns", "del", NETNS], check=False)


def _has_nebula1(ns: str) -> bool:
    shown = subprocess.run(["ip", "-n", ns, "link", "show", "nebula1"], capture_output=True)
    return shown.returncode == 0


def _nebula_pids(config_dir: Path) -> list[int]:
    """nebula processes running with a config under ``config_dir``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"nebula") and str(config_dir).encode() in b" ".join(argv):
                found.append(int(entry.name))
    return found


@pytest.mark.interop
@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "leave"])
def test_foreground_stops_cleanly_and_leaves_no_nebula(
    farm: Farm, config: Path, netns: str, how: str
) -> None:
    """Ctrl-C, a SIGTERM, or `farmhand join --leave` from another terminal."""
    signum = signal.SIGINT if how == "SIGINT" else signal.SIGTERM
    env = {**os.environ, **_env(config), "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    env = {k: v for k, v in env.items() if k != "FARMHAND_KEYS"}
    argv = [
        "ip",
        "netns",
        "exec",
        netns,
        sys.executable,
        "-m",
        "farmhand",
        "join",
        "--foreground",
        "--bundle",
        str(farm.root / BOSS_BUNDLE),
        "--hub-address",
        "127.0.0.1",
    ]
    child = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        lines = []
        nebula_pid = 0
        deadline = time.monotonic() + 60
        while not nebula_pid and time.monotonic() < deadline:
            line = child.stdout.readline()
            assert line, f"join ended early: {lines} {child.stderr.read() if child.stderr else ''}"
            lines.append(line)
            found = re.search(r"nebula started \(pid (\d+)\)", line)
            nebula_pid = int(found.group(1)) if found else 0
        assert nebula_pid, lines
        deadline = time.monotonic() + 20
        while not _has_nebula1(netns):
            assert time.monotonic() < deadline, "nebula never made its device"
            time.sleep(0.1)
        assert _nebula_pids(config) == [nebula_pid]
        waiting = child.stdout.readline()
        assert "waiting for the hub 10.87.0.1" in waiting  # the live status line (no tty)

        # status from the same namespace: the hub does not answer -> non-zero, still a report.
        status = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                netns,
                sys.executable,
                "-m",
                "farmhand",
                "status",
                "--json",
                "--timeout",
                "0.5",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 1, status.stderr
        assert '"reachable": false' in status.stdout
        assert "Traceback" not in status.stderr

        if how == "leave":
            left = run_cli("join", "--leave", env=_env(config))
            assert left.returncode == 0, left.stderr
            assert "removed the running foreground nebula" in left.stdout
        else:
            child.send_signal(signum)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, out + err
    assert f"nebula stopped (signal {signum})" in out
    assert "Traceback" not in err
    assert not Path(f"/proc/{nebula_pid}").exists()
    assert _nebula_pids(config) == []
    assert not _has_nebula1(netns)
    if how != "leave":
        # The config stays for the next `farmhand join`; --leave removes it, and only it.
        assert (config / "farmhand" / "join" / "host.key").stat().st_mode & 0o777 == 0o600
        assert not (config / "farmhand" / "join" / "foreground.pid").exists()
        left = run_cli("join", "--leave", env=_env(config))
        assert left.returncode == 0, left.stderr
    assert sorted(p.name for p in config.iterdir()) == ["keep.txt"]


# --- the Linux service for real, in a system root of the test's own --------------------------
# Every file-placing step runs as root for real; only systemctl and apt-get are stand-ins
# (they record their arguments), so this machine's own services and packages stay untouched.

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nebula") is None, reason="needs root and nebula"
)
LINUX_UNIT_STEPS = ["systemctl daemon-reload", "systemctl enable --now farmhand-join.service"]
LINUX_REMOVAL_STEPS = [
    "systemctl disable --now farmhand-join.service",
    "systemctl daemon-reload",
    "systemctl reset-failed farmhand-join.service",
]


def _others_can_change(path: Path) -> list[str]:
    """Whatever on the way to ``path`` (itself and every folder above it, links resolved) is
    not root's, or is group- or other-writable (a root-owned sticky folder like /tmp is fine
    above a file root owns). This test's own check, not farmhand's."""
    real = Path(os.path.realpath(path))
    bad = []
    for part in (real, *real.parents):
        info = part.stat()
        sticky = part != real and stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX
        if info.st_uid != 0 or (info.st_mode & 0o022 and not sticky):
            bad.append(f"{part} (uid {info.st_uid}, mode {stat.S_IMODE(info.st_mode):o})")
    return bad


@pytest.fixture
def standins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """systemctl and apt-get first on PATH, recording each call; the hub "answers"."""
    folder = tmp_path / "standins"
    folder.mkdir()
    log = tmp_path / "standins.log"
    for name in ("systemctl", "apt-get"):
        tool = folder / name
        tool.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\n')
        tool.chmod(0o755)
    monkeypatch.setenv(
        "PATH", f"{folder}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    )
    monkeypatch.setattr(
        "farmhand.join.hub.wait_for", lambda *_a, **_k: Probe("10.87.0.1", 445, "refused", 0.4)
    )
    return log


def _logged(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _system_root(tmp_path: Path) -> SystemPaths:
    root = tmp_path / "system"
    (root / "etc" / "systemd" / "system").mkdir(parents=True)  # as the machine has it
    return SystemPaths.default(OS.LINUX, under=str(root))


def _service_join(
    farm: Farm, config: Path, system: SystemPaths, nebula: Path | None = None
) -> tuple[Joined, list[str]]:
    said: list[str] = []
    options = JoinOptions(
        bundle=farm.root / BOSS_BUNDLE,
        hub_address="203.0.113.7",
        mode="service",
        nebula=nebula,
        wait=1,
    )
    joined = join(
        options,
        lambda: PASSPHRASE,
        os_=OS.LINUX,
        paths=JoinPaths(config / "farmhand"),
        say=said.append,
        interactive=False,
        system=system,
    )
    return joined, said


@pytest.mark.interop
@needs_root
@pytest.mark.parametrize("whose", ["root's", "the user's"])
def test_the_linux_service_runs_and_reads_only_files_only_root_can_change(
    farm: Farm, config: Path, tmp_path: Path, standins: Path, whose: str
) -> None:
    """A nebula only root can change runs as it is; one the user can change (here: owned by
    'nobody') gets root's own copy. Either way every file the unit runs or reads, and every
    folder above it, is root's alone, and the user's folder keeps no config and no key."""
    user_nebula = None
    if whose == "the user's":
        nobody = _nobody()
        if nobody is None:
            pytest.skip("no user 'nobody'")
        home = tmp_path / "home"
        (home / "bin").mkdir(parents=True)
        user_nebula = home / "bin" / "nebula"
        shutil.copy("/usr/bin/nebula", user_nebula)
        for path in (home, home / "bin", user_nebula):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
    system = _system_root(tmp_path)
    joined, _said = _service_join(farm, config, system, user_nebula)

    state = joined.state
    assert (state.mode, state.service_installed, joined.hub is not None) == ("service", True, True)
    unit = Path(system.unit)
    found = re.search(r'^ExecStart="([^"]+)" -config "([^"]+)"$', unit.read_text(), re.M)
    assert found is not None
    binary, config_yml = Path(found.group(1)), Path(found.group(2))
    if user_nebula is None:
        assert binary == Path(os.path.realpath(shutil.which("nebula") or ""))
    else:
        assert binary == Path(system.nebula)
        assert binary.read_bytes() == user_nebula.read_bytes()
        assert stat.S_IMODE(binary.stat().st_mode) == 0o755
    assert state.nebula == str(binary)
    assert config_yml == Path(system.config)
    pki = dict(re.findall(r"^  (ca|cert|key): (.+)$", config_yml.read_text(), re.M))
    assert pki == {
        k: system.file(n) for k, n in (("ca", "ca.crt"), ("cert", "host.crt"), ("key", "host.key"))
    }
    runs_or_reads = [unit, binary, config_yml, *(Path(p) for p in pki.values())]
    assert {str(p): _others_can_change(p) for p in runs_or_reads} == {
        str(p): [] for p in runs_or_reads
    }
    assert stat.S_IMODE(Path(system.dir).stat().st_mode) == 0o700
    assert stat.S_IMODE(Path(pki["key"]).stat().st_mode) == 0o600
    assert stat.S_IMODE(config_yml.stat().st_mode) == 0o600
    assert not Path(system.staging).exists()
    assert _logged(standins) == LINUX_UNIT_STEPS

    # The user's folder: the record and what the user reads (the job key is the user's own,
    # for `farmhand submit`), nothing the service uses.
    paths = JoinPaths(config / "farmhand")
    assert sorted(p.name for p in paths.dir.iterdir()) == [
        "ca.crt",
        "farm.json",
        "host.crt",
        "hub_known_hosts",
        "jobs.key",
        "join.json",
        "smb.password",
    ]
    assert stat.S_IMODE(paths.jobs_key.stat().st_mode) == 0o600
    key = Path(pki["key"]).read_bytes()
    assert all(key not in p.read_bytes() for p in paths.dir.iterdir())
    assert "argv" not in paths.state.read_text()

    removed = leave(
        os_=OS.LINUX, paths=paths, say=lambda _l: None, interactive=False, system=system
    )
    assert removed == ["systemd unit farmhand-join.service", str(paths.dir)]
    assert _logged(standins) == LINUX_UNIT_STEPS + LINUX_REMOVAL_STEPS
    for gone in (unit, Path(system.dir), Path(system.nebula), Path(system.bin_dir)):
        assert not gone.exists(), gone
    assert binary.exists() or user_nebula is not None  # root's own nebula is never removed
    assert sorted(p.name for p in config.iterdir()) == ["keep.txt"]


@pytest.mark.interop
@needs_root
def test_leave_runs_no_command_line_added_to_join_json(
    farm: Farm, config: Path, tmp_path: Path, standins: Path
) -> None:
    """join.json is the user's file: commands written into it (as format 1 held them, or a
    package name that is an apt option) are never run, with or without admin rights."""
    system = _system_root(tmp_path)
    _service_join(farm, config, system)
    paths = JoinPaths(config / "farmhand")
    marker = tmp_path / "ran-as-root"
    evil = {"what": "tidying up", "argv": ["touch", str(marker)], "admin": True, "check": True}
    data = json.loads(paths.state.read_text())
    data.update(
        format=1,
        install=[evil],
        remove=[evil],
        unmount=[evil],
        mounted=["smb://203.0.113.9/farm"],
        package=f"-oAPT::Update::Pre-Invoke::=touch {marker}",
    )
    paths.state.write_text(json.dumps(data))
    said: list[str] = []
    removed = leave(os_=OS.LINUX, paths=paths, say=said.append, interactive=False, system=system)
    assert not marker.exists()
    assert _logged(standins) == LINUX_UNIT_STEPS + LINUX_REMOVAL_STEPS  # no apt-get at all
    assert "systemd unit farmhand-join.service" in removed
    assert any("which farmhand never installs: left alone" in line for line in said)
    assert any("cannot unmount smb://203.0.113.9/farm" in line for line in said)
    assert not Path(system.dir).exists()
    assert not Path(system.unit).exists()
    assert sorted(p.name for p in config.iterdir()) == ["keep.txt"]


@pytest.mark.interop
@needs_root
def test_a_foreground_join_becomes_a_service_without_the_bundle(
    farm: Farm, config: Path, tmp_path: Path, standins: Path
) -> None:
    """`farmhand join --service` after a foreground join: root gets its own copy of the
    config (naming root's paths) and key; the user's folder then drops both."""
    system = _system_root(tmp_path)
    paths = JoinPaths(config / "farmhand")
    foreground = JoinOptions(bundle=farm.root / BOSS_BUNDLE, hub_address="203.0.113.7")
    join(foreground, lambda: PASSPHRASE, os_=OS.LINUX, paths=paths, say=print, system=system)
    key = paths.key.read_bytes()
    assert _logged(standins) == []

    def no_passphrase() -> str:
        raise AssertionError("asked for the passphrase")

    options = JoinOptions(mode="service", wait=1)
    joined = join(options, no_passphrase, os_=OS.LINUX, paths=paths, say=print, system=system)
    assert (joined.state.mode, joined.state.service_installed) == ("service", True)
    assert Path(system.file("host.key")).read_bytes() == key
    text = Path(system.config).read_text()
    assert f"  key: {system.file('host.key')}\n" in text
    assert str(paths.dir) not in text
    for path in (system.unit, system.config, system.file("host.key")):
        assert _others_can_change(Path(path)) == []
    assert not paths.key.exists()
    assert not paths.config.exists()
    assert _logged(standins) == LINUX_UNIT_STEPS
    leave(os_=OS.LINUX, paths=paths, say=print, interactive=False, system=system)
    assert not Path(system.dir).exists()
    assert sorted(p.name for p in config.iterdir()) == ["keep.txt"]


@pytest.mark.interop
@needs_root
def test_a_service_that_fails_to_start_leaves_nothing_behind(
    farm: Farm, config: Path, tmp_path: Path, standins: Path
) -> None:
    """The last step fails (systemctl cannot start the unit): root's files, the unit and the
    user's folder are all taken back, with the same derived removal steps as --leave."""
    systemctl = tmp_path / "standins" / "systemctl"
    systemctl.write_text(
        f'#!/bin/sh\necho "systemctl $*" >> "{standins}"\n'
        'if [ "$1" = enable ]; then echo "Job failed" >&2; exit 1; fi\n'
    )
    system = _system_root(tmp_path)
    root = tmp_path / "system"
    before, root_before = snapshot(config), snapshot(root)
    with pytest.raises(JoinError, match=r"starting farmhand-join\.service failed: Job failed"):
        _service_join(farm, config, system)
    assert _logged(standins) == LINUX_UNIT_STEPS + LINUX_REMOVAL_STEPS
    assert snapshot(config) == before
    # /etc/nebula stays (it may be the distribution's); nothing of the service is left in it.
    assert changed(root_before, snapshot(root)) == {"etc/nebula"}


@needs_root
@pytest.mark.parametrize("problem", ["a folder above it anyone can write", "a service there"])
def test_an_unsafe_or_taken_service_place_is_refused_before_anything_is_written(
    farm: Farm, config: Path, tmp_path: Path, standins: Path, problem: str
) -> None:
    system = _system_root(tmp_path)
    root = tmp_path / "system"
    if problem == "a service there":
        Path(system.dir).mkdir(parents=True)
        expected = f"{system.dir} exists: a farmhand join service is installed already"
    else:
        (root / "etc").chmod(0o777)
        expected = f"{root / 'etc'} can be changed by others than root"
    before, root_before = snapshot(config), snapshot(root)
    with pytest.raises(JoinError, match=re.escape(expected)):
        _service_join(farm, config, system)
    assert snapshot(config) == before
    assert snapshot(root) == root_before
    assert _logged(standins) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the files must be root's)")
def test_only_root_can_change_is_checked_all_the_way_up(tmp_path: Path) -> None:
    folder = tmp_path / "roots"
    folder.mkdir(mode=0o755)
    target = folder / "nebula"
    target.write_bytes(b"")
    target.chmod(0o755)
    assert first_changeable(str(target)) is None
    target.chmod(0o775)
    assert first_changeable(str(target)) == str(target)
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    (sticky / "file").write_bytes(b"")
    (sticky / "file").chmod(0o644)
    assert first_changeable(str(sticky / "file")) is None  # root's file under a sticky folder
    assert first_changeable(str(sticky)) == str(sticky)  # that folder itself: anyone's
    nobody = _nobody()
    if nobody is None:
        pytest.skip("no user 'nobody'")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "nebula").write_bytes(b"")
    os.chown(theirs, nobody.pw_uid, nobody.pw_gid)
    assert first_changeable(str(theirs / "nebula")) == str(theirs)
    (folder / "link").symlink_to(theirs / "nebula")  # root's link to the user's file
    assert first_changeable(str(folder / "link")) == str(theirs)


# --- the pinned upstream release (macOS, Windows; any OS given the archive) -----------------


def test_an_archive_that_is_not_the_pinned_release_is_refused(
    farm: Farm, config: Path, tmp_path: Path
) -> None:
    """Refused after the folder was staged: the rollback leaves the config folder as it was."""
    fake = tmp_path / "nebula-linux-amd64.tar.gz"
    with tarfile.open(fake, "w:gz") as tar:
        tar.add("/usr/bin/nebula", arcname="nebula")
    before = snapshot(config)
    result = run_cli(
        "join",
        "--bundle",
        farm.root / BOSS_BUNDLE,
        "--hub-address",
        "203.0.113.7",
        "--nebula",
        fake,
        env=_env(config),
    )
    assert_cli_error(result, "nebula-linux-amd64.tar.gz", "not the pinned", "refusing")
    assert snapshot(config) == before


@pytest.mark.interop
@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_a_verified_archive_is_unpacked_and_runs(tmp_path: Path, kind: str) -> None:
    """The unpack path with a real nebula inside (the pin is this archive's own sha256)."""
    archive = tmp_path / f"nebula-test.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as zipped:
            zipped.write("/usr/bin/nebula", "nebula")
            zipped.writestr("dist/windows/wintun/bin/arm64/wintun.dll", b"not this one")
    else:
        with tarfile.open(archive, "w:gz") as tar:
            tar.add("/usr/bin/nebula", arcname="nebula")
    pin = ReleaseArchive("test", archive.name, hashlib.sha256(archive.read_bytes()).hexdigest())
    os_ = OS.MACOS if kind == "zip" else OS.LINUX
    binary = fetch_release(ReleaseDownload(pin, str(archive)), tmp_path / "bin", os_)
    assert binary.path == str(tmp_path / "bin" / "nebula")
    assert re.fullmatch(r"\d+\.\d+\.\d+", binary.version)
    assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == ["nebula"]
    tampered = ReleaseArchive("test", archive.name, "0" * 64)
    with pytest.raises(JoinError, match="refusing to use it"):
        fetch_release(ReleaseDownload(tampered, str(archive)), tmp_path / "bin2", os_)
    assert not (tmp_path / "bin2").exists()


def test_macos_and_windows_fall_back_to_the_pinned_release(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    for os_, platform in ((OS.MACOS, "darwin"), (OS.WINDOWS, "windows-amd64")):
        choice = locate(os_)
        assert isinstance(choice, ReleaseDownload)
        assert choice.archive == ARCHIVES[platform]
        assert choice.source == ARCHIVES[platform].url
        assert choice.source.startswith("https://github.com/slackhq/nebula/releases/download/v")


# --- mounting the farm share: per-OS plans, the password only on stdin, --leave unmounts ----

SECRET = "s3cret-smb-pass word"


def _joined_here(config: Path, os_: OS = OS.LINUX) -> Joined:
    """A join.json and smb.password as join leaves them (no nebula needed to mount or leave)."""
    paths = JoinPaths(config / "farmhand")
    paths.dir.mkdir(parents=True, mode=0o700)
    fd = os.open(paths.smb_password, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{SECRET}\n")
    state = JoinState(
        os=os_,
        farm="studio",
        boss="alice",
        overlay_ip="10.87.0.100",
        hub_overlay_ip="10.87.0.1",
        smb_user="farmhand",
        shares=["farm", "queue"],
        nebula="/usr/bin/nebula",
        nebula_version="1.6.1",
        mode="foreground",
        service="systemd unit farmhand-join.service",
    )
    save_state(paths, state)
    return Joined(state, paths, Elevation())


def _every_argv(plan: MountPlan) -> list[tuple[str, ...]]:
    return [s.argv for s in plan.mount + plan.unmount]


def test_the_macos_mount_is_finder_opening_the_share() -> None:
    plan = mount_plan(OS.MACOS, hub="10.87.0.1", user="farmhand")
    assert _every_argv(plan) == [
        ("open", "smb://farmhand@10.87.0.1/farm"),
        ("diskutil", "unmount", "/Volumes/farm"),
    ]
    assert plan.password_on_stdin is False  # Finder asks for it; farmhand never handles it
    assert not any(s.admin for s in plan.mount + plan.unmount)
    assert [s.check for s in plan.unmount] == [False]


def test_the_windows_mount_is_net_use_asking_on_stdin() -> None:
    plan = mount_plan(OS.WINDOWS, hub="10.87.0.1", user="farmhand")
    assert _every_argv(plan) == [
        ("net", "use", r"\\10.87.0.1\farm", "*", "/user:farmhand", "/persistent:no"),
        ("net", "use", r"\\10.87.0.1\farm", "/delete", "/y"),
    ]
    assert plan.password_on_stdin is True
    assert plan.where == r"\\10.87.0.1\farm"


def test_the_linux_mount_is_gio_when_gio_is_here() -> None:
    plan = mount_plan(OS.LINUX, hub="10.87.0.1", user="farmhand", gio="/usr/bin/gio")
    url = "smb://FARMHAND;farmhand@10.87.0.1/farm"  # user and domain given: gvfs asks only
    assert _every_argv(plan) == [  # for the password, one line on stdin
        ("/usr/bin/gio", "mount", url),
        ("/usr/bin/gio", "mount", "-u", url),
    ]
    assert plan.password_on_stdin is True


def test_without_gio_linux_gets_the_packages_and_the_lines_not_an_error() -> None:
    plan = mount_plan(OS.LINUX, hub="10.87.0.1", user="farmhand", gio=None)
    assert not plan.automatic
    assert plan.mount == plan.unmount == ()
    text = "\n".join(plan.manual)
    assert "gvfs-backends" in text
    assert "cifs-utils" in text
    assert "gio mount 'smb://FARMHAND;farmhand@10.87.0.1/farm'" in text
    assert "mount -t cifs //10.87.0.1/farm /mnt/farm -o username=farmhand" in text
    report = mount_report(OS.LINUX, plan, MountResult(False), "/p")
    assert report == list(plan.manual)


def test_the_mount_offer_never_waits_without_a_terminal() -> None:
    def no_question(_q: str) -> bool:
        raise AssertionError("asked without a terminal")

    assert should_mount(None, interactive=False, ask=no_question) is False
    assert should_mount(True, interactive=False, ask=no_question) is True
    assert should_mount(False, interactive=True, ask=no_question) is False
    asked: list[str] = []
    assert should_mount(None, interactive=True, ask=lambda q: asked.append(q) or False) is False
    assert asked == ["Mount the farm share now?"]
    assert should_mount(None, interactive=True, ask=lambda _q: True) is True


def test_leave_takes_no_mount_option(config: Path) -> None:
    result = run_cli("join", "--leave", "--mount", env=_env(config))
    assert_cli_error(result, "--leave takes no other option", code=2)


def _recorder(tmp_path: Path) -> Path:
    """A stand-in for gio that records what it was given (argv, stdin) and succeeds: what the
    real gio receives, without a desktop session to mount into."""
    tool = tmp_path / "gio"
    log = tmp_path / "gio.log"
    tool.write_text(
        "#!/bin/sh\n"
        f'printf "argv:%s\\n" "$*" >> "{log}"\n'
        f'printf "stdin:%s\\n" "$(cat)" >> "{log}"\n'
        'echo "Password: "\n'
    )
    tool.chmod(0o755)
    return tool


def test_the_password_travels_on_stdin_and_leave_unmounts(config: Path, tmp_path: Path) -> None:
    joined = _joined_here(config)
    gio = _recorder(tmp_path)
    plan, result = mount_share(joined, gio=str(gio))
    assert result == MountResult(True)
    url = "smb://FARMHAND;farmhand@10.87.0.1/farm"
    log = (tmp_path / "gio.log").read_text()
    assert log == f"argv:mount {url}\nstdin:{SECRET}\n"
    assert all(SECRET not in arg for argv in _every_argv(plan) for arg in argv)
    # join.json records that it is mounted (never the password, never a command to run);
    # leave makes the unmount again from that; a second offer mounts nothing.
    recorded = (joined.paths.state).read_text()
    assert SECRET not in recorded
    assert "argv" not in recorded
    state = load_state(joined.paths)
    assert state.mounted == [url]
    unmount = unmount_steps(state, gio=str(gio))
    assert {where: [s.argv for s in steps] for where, steps in unmount.items()} == {
        url: [(str(gio), "mount", "-u", url)]
    }
    assert mount_share(joined, gio=str(gio))[1].reason == "already mounted by an earlier join"

    path = f"{gio.parent}{os.pathsep}{os.environ['PATH']}"  # leave finds this gio on PATH
    left = run_cli("join", "--leave", env=_env(config, PATH=path))
    assert left.returncode == 0, left.stderr
    assert f"removed the mount of {url}" in left.stdout
    assert SECRET not in left.stdout + left.stderr
    assert (tmp_path / "gio.log").read_text() == log + f"argv:mount -u {url}\nstdin:\n"
    assert sorted(p.name for p in config.iterdir()) == ["keep.txt"]


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("gio") is None, reason="needs gio (libglib2.0-bin)")
def test_a_failed_mount_is_a_reason_not_an_error(config: Path) -> None:
    """The real gio without a desktop session (no gvfs) cannot mount: join says why, keeps
    nothing to unmount, and the password is nowhere in what it says."""
    joined = _joined_here(config)
    plan, result = mount_share(joined, gio=shutil.which("gio"))
    assert result.mounted is False
    assert result.reason.startswith("mounting smb://FARMHAND;farmhand@10.87.0.1/farm failed: ")
    assert SECRET not in result.reason
    state = load_state(joined.paths)
    assert state.mounted == []
    assert unmount_steps(state, gio=shutil.which("gio")) == {}
    report = mount_report(OS.LINUX, plan, result, str(joined.paths.smb_password))
    assert report[0].startswith("could not mount farm: ")


def test_a_join_json_from_before_mounts_still_loads(config: Path) -> None:
    joined = _joined_here(config)
    data = json.loads(joined.paths.state.read_text())
    del data["mounted"]
    assert JoinState.from_json(data).mounted == []


# --- the package itself ---------------------------------------------------------------------


def test_the_join_package_has_no_import_cycle() -> None:
    """No module of farmhand.join imports one that imports it back, directly or not, and none
    hides such an import inside a function."""
    folder = Path(__file__).resolve().parents[1] / "src" / "farmhand" / "join"
    names = {f.stem for f in folder.glob("*.py")} - {"__init__"}
    graph: dict[str, set[str]] = {}
    for name in names:
        tree = ast.parse((folder / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                inner = [n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]
                assert not inner, f"{name}.{node.name} imports inside a function"
        graph[name] = {
            node.module.rsplit(".", 1)[-1]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("farmhand.join.")
        }

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(dep == goal or reaches(dep, goal, seen | {dep}) for dep in graph[start] - seen)

    assert [name for name in sorted(names) if reaches(name, name, set())] == []
