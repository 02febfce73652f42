"""The Vagrant farm (issue #7): the Vagrantfile, and Vagrant machines as deploy targets.

``vagrant validate --ignore-provider`` runs the real Vagrant (Debian's package, no hypervisor
needed). No VM can boot here, so ``vagrant ssh-config`` outputs recorded from VirtualBox and
libvirt stand in for a running farm: the parser is checked on them directly, and end to end
through ``farmhand`` with a stand-in ``vagrant`` on PATH that prints them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from farmhand.deploy.target import Target
from farmhand.deploy.targets import parse_target
from farmhand.deploy.vagrant import (
    GUEST_SSH_PORT,
    VagrantError,
    parse_ssh_config,
    parse_status,
    resolve_target,
    ssh_configs,
)
from farmhand.errors import UsageError
from support.cli import assert_cli_error, run_cli

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "vagrant"
VAGRANT = shutil.which("vagrant")
needs_vagrant = pytest.mark.skipif(VAGRANT is None, reason="vagrant is not installed")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def machine_key(name: str, provider: str) -> str:
    return f"/home/alice/src/farmhand/.vagrant/machines/{name}/{provider}/private_key"


# What pyinfra gets for each recorded machine: exactly these host data, nothing else.
EXPECTED = {
    "ssh-config-virtualbox-hub.txt": (
        "@vagrant/hub",
        {
            "ssh_hostname": "127.0.0.1",
            "ssh_user": "vagrant",
            "ssh_port": 2222,
            "ssh_key": machine_key("hub", "virtualbox"),
            "ssh_known_hosts_file": "/dev/null",
            "ssh_strict_host_key_checking": "off",
            "_sudo": True,
            "farmhand_ssh_port": 22,
        },
    ),
    "ssh-config-virtualbox-worker0002.txt": (
        "@vagrant/worker0002",
        {
            "ssh_hostname": "127.0.0.1",
            "ssh_user": "vagrant",
            "ssh_port": 2201,
            "ssh_key": machine_key("worker0002", "virtualbox"),
            "ssh_known_hosts_file": "/dev/null",
            "ssh_strict_host_key_checking": "off",
            "_sudo": True,
            "farmhand_ssh_port": 22,
        },
    ),
    "ssh-config-libvirt-hub.txt": (
        "@vagrant/hub",
        {
            "ssh_hostname": "192.168.121.57",
            "ssh_user": "vagrant",
            "ssh_port": 22,
            "ssh_key": machine_key("hub", "libvirt"),
            "ssh_known_hosts_file": "/dev/null",
            "ssh_strict_host_key_checking": "off",
            "_sudo": True,
            "farmhand_ssh_port": 22,
        },
    ),
    "ssh-config-libvirt-worker0001.txt": (
        "@vagrant/worker0001",
        {
            "ssh_hostname": "192.168.121.203",
            "ssh_user": "vagrant",
            "ssh_port": 22,
            "ssh_key": machine_key("worker0001", "libvirt"),
            "ssh_known_hosts_file": "/dev/null",
            "ssh_strict_host_key_checking": "off",
            "_sudo": True,
            "farmhand_ssh_port": 22,
        },
    ),
    # Vagrant 2.4 before it replaced the insecure key, on a Mac home folder with a space: the
    # paths are quoted, and the first key (ed25519) is the one used.
    "ssh-config-virtualbox-insecure-key.txt": (
        "@vagrant/boss1",
        {
            "ssh_hostname": "127.0.0.1",
            "ssh_user": "vagrant",
            "ssh_port": 2203,
            "ssh_key": "/Users/Alice Smith/.vagrant.d/insecure_private_keys/vagrant.key.ed25519",
            "ssh_known_hosts_file": "/dev/null",
            "ssh_strict_host_key_checking": "off",
            "_sudo": True,
            "farmhand_ssh_port": 22,
        },
    ),
}


def replay(outputs: dict[tuple[str, ...], str]):  # type: ignore[no-untyped-def]
    """A runner answering vagrant command lines from recorded outputs."""
    calls: list[tuple[str, ...]] = []

    def run(argv: object) -> str:
        key = tuple(argv)  # type: ignore[call-overload]
        calls.append(key)
        if key not in outputs:
            raise VagrantError(f"vagrant {' '.join(key)} failed: not recorded")
        return outputs[key]

    run.calls = calls  # type: ignore[attr-defined]
    return run


# --- the parser --------------------------------------------------------------------------


@pytest.mark.parametrize("recorded", sorted(EXPECTED))
def test_recorded_ssh_config_gives_exact_pyinfra_host_data(recorded: str) -> None:
    (config,) = parse_ssh_config(fixture(recorded))
    assert config.target().inventory_entry() == EXPECTED[recorded]


def test_both_providers_keep_vagrants_options() -> None:
    (virtualbox,) = parse_ssh_config(fixture("ssh-config-virtualbox-hub.txt"))
    (libvirt,) = parse_ssh_config(fixture("ssh-config-libvirt-hub.txt"))
    for config in (virtualbox, libvirt):
        assert config.name == "hub"
        assert config.options["identitiesonly"] == "yes"
        assert config.options["passwordauthentication"] == "no"
    assert virtualbox.target() == Target(
        host="127.0.0.1",
        user="vagrant",
        port=2222,
        key=machine_key("hub", "virtualbox"),
        name="@vagrant/hub",
        known_hosts="/dev/null",
        strict_host_keys="off",
        sshd_port=GUEST_SSH_PORT,
    )
    (insecure,) = parse_ssh_config(fixture("ssh-config-virtualbox-insecure-key.txt"))
    assert insecure.identity_files == (
        "/Users/Alice Smith/.vagrant.d/insecure_private_keys/vagrant.key.ed25519",
        "/Users/Alice Smith/.vagrant.d/insecure_private_keys/vagrant.key.rsa",
    )


def test_several_machines_in_one_output_and_host_key_policies() -> None:
    text = fixture("ssh-config-virtualbox-hub.txt") + fixture("ssh-config-libvirt-worker0001.txt")
    assert [c.name for c in parse_ssh_config(text)] == ["hub", "worker0001"]
    strict = "Host w\n  HostName=10.0.0.5\n  StrictHostKeyChecking yes\n"
    (config,) = parse_ssh_config(strict)
    entry = config.target().inventory_entry()[1]
    assert entry["ssh_strict_host_key_checking"] == "yes"
    assert "ssh_known_hosts_file" not in entry  # no UserKnownHostsFile: the user's own
    assert entry["ssh_port"] == 22
    assert entry["ssh_user"] == "vagrant"
    assert "ssh_key" not in entry


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("HostName 10.0.0.5\n", "'hostname' before any Host"),
        ("Host hub\n  User vagrant\n", "ssh-config has no HostName"),
        ("Host hub\n  HostName 10.0.0.5\n  Port twenty\n", "bad Port 'twenty'"),
    ],
)
def test_broken_ssh_config_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(VagrantError, match=message):
        parse_ssh_config(text)


def test_a_machine_behind_a_proxy_command_is_refused() -> None:
    with pytest.raises(VagrantError) as refused:
        parse_ssh_config(fixture("ssh-config-libvirt-remote.txt"))
    assert "proxycommand" in str(refused.value)
    assert "USER@HOST:PORT" in str(refused.value)


def test_status_lists_running_machines_and_only_those_are_asked() -> None:
    states = parse_status(fixture("status-virtualbox.txt"))
    assert states == {
        "hub": "running",
        "worker0001": "running",
        "worker0002": "running",
        "boss1": "not_created",
    }
    run = replay(
        {
            ("status", "--machine-readable"): fixture("status-virtualbox.txt"),
            ("ssh-config", "hub"): fixture("ssh-config-virtualbox-hub.txt"),
            ("ssh-config", "worker0001"): fixture("ssh-config-libvirt-worker0001.txt"),
            ("ssh-config", "worker0002"): fixture("ssh-config-virtualbox-worker0002.txt"),
        }
    )
    assert [c.name for c in ssh_configs((), run)] == ["hub", "worker0001", "worker0002"]
    assert ("ssh-config", "boss1") not in run.calls  # type: ignore[attr-defined]


def test_no_running_machine_and_a_mismatched_answer_are_errors() -> None:
    stopped = fixture("status-virtualbox.txt").replace(",state,running", ",state,poweroff")
    with pytest.raises(VagrantError, match="no Vagrant machine is running"):
        ssh_configs((), replay({("status", "--machine-readable"): stopped}))
    other = replay({("ssh-config", "hub"): fixture("ssh-config-libvirt-worker0001.txt")})
    with pytest.raises(VagrantError, match="did not describe machine hub"):
        ssh_configs(["hub"], other)


@pytest.mark.parametrize("text", ["@vagrant/", "@vagrant/a/b", "@vagrant/-x", "@vagrantx/hub"])
def test_bad_vagrant_targets(text: str) -> None:
    with pytest.raises(UsageError):
        resolve_target(text, replay({}))


# --- end to end through the CLI, with recorded outputs ---------------------------------------


@pytest.fixture
def recorded_vagrant(tmp_path: Path) -> dict[str, str]:
    """A ``vagrant`` on PATH that answers ``status`` and ``ssh-config NAME`` from the fixtures
    (a VirtualBox farm: hub, worker0001 and worker0002 running, boss1 not created)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "vagrant"
    answers = {
        "hub": FIXTURES / "ssh-config-virtualbox-hub.txt",
        "worker0001": FIXTURES / "ssh-config-libvirt-worker0001.txt",
        "worker0002": FIXTURES / "ssh-config-virtualbox-worker0002.txt",
    }
    cases = "\n".join(f'  "ssh-config {n}") exec cat "{p}" ;;' for n, p in answers.items())
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$PWD $*" >> "{tmp_path}/calls"\n'
        'case "$*" in\n'
        f'  "status --machine-readable") exec cat "{FIXTURES / "status-virtualbox.txt"}" ;;\n'
        f"{cases}\n"
        "  *) echo \"The machine with the name '$2' was not found configured for\n"
        'this Vagrant environment." >&2; exit 1 ;;\n'
        "esac\n"
    )
    script.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_vagrant_inventory_prints_the_pyinfra_host_data(recorded_vagrant: dict[str, str]) -> None:
    result = run_cli("vagrant-inventory", "--json", env=recorded_vagrant)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "@vagrant/hub": EXPECTED["ssh-config-virtualbox-hub.txt"][1],
        "@vagrant/worker0001": EXPECTED["ssh-config-libvirt-worker0001.txt"][1],
        "@vagrant/worker0002": EXPECTED["ssh-config-virtualbox-worker0002.txt"][1],
    }
    table = run_cli("vagrant-inventory", "hub", env=recorded_vagrant)
    assert table.returncode == 0, table.stderr
    assert "@vagrant/hub" in table.stdout
    assert "vagrant@127.0.0.1:2222" in table.stdout
    assert "worker0001" not in table.stdout


def test_parse_target_resolves_vagrant_machines(
    recorded_vagrant: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", recorded_vagrant["PATH"])
    target = parse_target("@vagrant/worker0002", user="root", key="/ignored")
    assert target.inventory_entry() == EXPECTED["ssh-config-virtualbox-worker0002.txt"]


def test_an_unknown_machine_is_a_one_line_error(recorded_vagrant: dict[str, str]) -> None:
    result = run_cli("deploy", "hub", "@vagrant/boss9", env=recorded_vagrant)
    assert_cli_error(result, "vagrant ssh-config boss9 failed", "boss9", code=1)
    result = run_cli("verify", "worker", "@vagrant/boss9", env=recorded_vagrant)
    assert_cli_error(result, "vagrant ssh-config boss9 failed", code=1)


def test_no_vagrant_installed_is_a_one_line_error(tmp_path: Path) -> None:
    result = run_cli("vagrant-inventory", env={"PATH": str(tmp_path)})
    assert_cli_error(result, "vagrant is not installed", code=1)


# --- the real Vagrant ----------------------------------------------------------------------


def vagrant(
    folder: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Real ``vagrant ARGS`` in ``folder`` (its own VAGRANT_HOME, so nothing lands in ~)."""
    assert VAGRANT is not None
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("FARMHAND_", "VAGRANT_"))
    }
    environment.update(VAGRANT_HOME=str(folder / ".vagrant.d"), VAGRANT_CHECKPOINT_DISABLE="1")
    environment.update(env or {})
    return subprocess.run(
        [VAGRANT, *args], cwd=folder, env=environment, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the repository's Vagrantfile in a folder of its own."""
    folder = tmp_path / "farm"
    folder.mkdir()
    shutil.copy(ROOT / "Vagrantfile", folder / "Vagrantfile")
    return folder


@needs_vagrant
@pytest.mark.parametrize(
    "env",
    [
        {},
        {"FARMHAND_WORKERS": "3", "FARMHAND_BOSS": "1", "FARMHAND_VERIFY": "1"},
        {"FARMHAND_WORKERS": "0", "FARMHAND_DEPLOY": "0", "FARMHAND_HUB_BOX": "rockylinux/9"},
        {"FARMHAND_QUEUE": "0"},
    ],
)
def test_the_vagrantfile_validates(project: Path, env: dict[str, str]) -> None:
    result = vagrant(project, "validate", "--ignore-provider", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Vagrantfile validated successfully" in result.stdout
    machines = [ln.split()[1].rstrip(":") for ln in result.stdout.splitlines() if "==>" in ln]
    workers = int(env.get("FARMHAND_WORKERS", "2"))
    expected = ["hub", *(f"worker{n:04d}" for n in range(1, workers + 1))]
    expected += ["boss1"] if env.get("FARMHAND_BOSS") == "1" else []
    assert machines == expected


@needs_vagrant
@pytest.mark.parametrize(
    ("breakage", "said"),
    [
        (("hub.vm.box = HUB_BOX", "hub.vm.boxx = HUB_BOX"), "boxx"),
        (('hub.vm.hostname = "hub"', 'hub.vm.hostname = "hub'), "syntax error"),
        (("trigger.on_error = :halt", "trigger.on_error = :explode"), "on_error"),
    ],
)
def test_a_broken_vagrantfile_fails_validation(
    project: Path, breakage: tuple[str, str], said: str
) -> None:
    vagrantfile = project / "Vagrantfile"
    text = vagrantfile.read_text()
    assert breakage[0] in text
    vagrantfile.write_text(text.replace(breakage[0], breakage[1], 1))
    result = vagrant(project, "validate", "--ignore-provider")
    assert result.returncode != 0
    assert said in (result.stdout + result.stderr).lower()


@needs_vagrant
@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"FARMHAND_WORKERS": "many"}, 'FARMHAND_WORKERS="many" must be a whole number'),
        ({"FARMHAND_WORKER_MEMORY": "64"}, "FARMHAND_WORKER_MEMORY"),
        ({"FARMHAND_UNDERLAY": "10.0.0.0/8"}, "must be three octets"),
        ({"FARMHAND_QUEUE": "yes"}, 'FARMHAND_QUEUE="yes" must be a whole number'),
    ],
)
def test_bad_settings_are_refused_with_their_name(
    project: Path, env: dict[str, str], said: str
) -> None:
    result = vagrant(project, "validate", "--ignore-provider", env=env)
    assert result.returncode != 0
    assert said in result.stderr


@needs_vagrant
def test_deploying_to_a_machine_vagrant_cannot_reach_is_a_one_line_error(project: Path) -> None:
    """The real vagrant, with no hypervisor: farmhand reports what Vagrant said, in one line."""
    env = {"VAGRANT_HOME": str(project / ".vagrant.d"), "VAGRANT_CHECKPOINT_DISABLE": "1"}
    result = run_cli("deploy", "hub", "@vagrant/hub", env=env, cwd=project)
    assert_cli_error(result, "vagrant ssh-config hub failed", code=1)
