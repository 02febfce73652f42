"""``farmhand cloud-init``: the user-data passes cloud-init's own schema check, and the script
it carries runs: here with a stand-in ``curl`` that serves a stand-in bootstrap.sh."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from farmhand.model.paths import PASSPHRASE_PATH, RUNNER_PATH
from farmhand.provision.cloudinit import DEFAULT_SCRIPT_URL
from support.cli import PASSPHRASE, assert_cli_error, run_cli

BUNDLE = "https://www.dropbox.com/scl/fi/q7x2k9p0zz1abcd/workers.keybundle.age?rlkey=8j3n&dl=0"
SYSTEM_PYTHON = "/usr/bin/python3"  # cloud-init's, with PyYAML

needs_cloud_init = pytest.mark.skipif(
    shutil.which("cloud-init") is None, reason="the cloud-init package is not installed"
)


def schema_check(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "user-data.yaml"
    path.write_text(text)
    return subprocess.run(
        ["cloud-init", "schema", "--config-file", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def load_yaml(text: str) -> Any:
    parsed = subprocess.run(
        [
            SYSTEM_PYTHON,
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))",
        ],
        input=text,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(parsed.stdout)


def passphrase_file(tmp_path: Path, text: str = PASSPHRASE) -> Path:
    path = tmp_path / "pass.txt"
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


@needs_cloud_init
def test_user_data_with_the_passphrase_is_valid_and_says_the_risk(tmp_path: Path) -> None:
    odd = 'with "quotes", a #hash, a: colon\\ and ünïcode'
    result = run_cli(
        "cloud-init",
        "worker",
        "--bundle",
        BUNDLE,
        "--hub-address",
        "hub.example.net",
        "--passphrase-file",
        passphrase_file(tmp_path, odd),
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith("#cloud-config\n")
    checked = schema_check(text, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Valid cloud-config" in checked.stdout
    assert "Anyone who\n#   can read this machine's instance metadata" in text
    data = load_yaml(text)
    files = {f["path"]: f for f in data["write_files"]}
    assert files[PASSPHRASE_PATH]["content"] == odd + "\n"
    assert files[PASSPHRASE_PATH]["permissions"] == "0600"
    assert files[RUNNER_PATH]["permissions"] == "0700"
    assert data["runcmd"] == [[RUNNER_PATH]]
    assert "curl" in data["packages"]


@needs_cloud_init
def test_user_data_without_the_passphrase_waits_for_the_file(tmp_path: Path) -> None:
    result = run_cli(
        "cloud-init", "worker", "--bundle", BUNDLE, env={"FARMHAND_PASSPHRASE": PASSPHRASE}
    )
    assert result.returncode == 0, result.stderr
    assert PASSPHRASE not in result.stdout  # the environment is never put in user-data
    checked = schema_check(result.stdout, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "It is NOT in this user-data" in result.stdout
    data = load_yaml(result.stdout)
    assert [f["path"] for f in data["write_files"]] == [RUNNER_PATH]


def test_the_runner_waits_for_the_passphrase_bootstraps_and_deletes_it(tmp_path: Path) -> None:
    """The script in the user-data, run for real (sh) with curl and sleep stubbed."""
    result = run_cli(
        "cloud-init",
        "worker",
        "--bundle",
        BUNDLE,
        "--hub-address",
        "hub.example.net",
        "--source",
        "git+https://github.com/farmhand-dev/farmhand@main",
    )
    assert result.returncode == 0, result.stderr
    data = load_yaml(result.stdout)
    script = next(f["content"] for f in data["write_files"] if f["path"] == RUNNER_PATH)
    secret = tmp_path / "secret" / "passphrase"
    script = script.replace(PASSPHRASE_PATH, str(secret))
    runner = tmp_path / "runner"
    runner.write_text(script)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "bootstrap-args"
    # curl "downloads" a bootstrap.sh that records its arguments and environment.
    (bin_dir / "curl").write_text(
        "#!/bin/sh\n"
        'while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done\n'
        f"printf '%s\\n' '#!/bin/sh' 'for a in \"$@\"; do echo \"$a\"; done > {record}' "
        f"'echo \"SOURCE=$FARMHAND_SOURCE\" >> {record}' "
        f"'cat {secret} >> {record}' > \"$out\"\n"
    )
    # sleep: the passphrase "arrives" while the runner waits for it.
    (bin_dir / "sleep").write_text(
        f"#!/bin/sh\nmkdir -p {secret.parent}\necho '{PASSPHRASE}' > {secret}\n"
    )
    for tool in ("curl", "sleep"):
        (bin_dir / tool).chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    ran = subprocess.run(["sh", str(runner)], env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "waiting for the farm passphrase" in ran.stdout
    assert "this worker joined the farm" in ran.stdout
    assert record.read_text().splitlines() == [
        "worker",
        "--bundle",
        BUNDLE,
        "--passphrase-file",
        str(secret),
        "--hub-address",
        "hub.example.net",
        "SOURCE=git+https://github.com/farmhand-dev/farmhand@main",
        PASSPHRASE,
    ]
    assert not secret.exists(), "the passphrase must not stay on the machine"
    assert DEFAULT_SCRIPT_URL in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["worker", "--bundle", "http://example.net/w.age"], "must use https"),
        (["worker", "--bundle", "https://example.net/a b.age"], "one word of visible"),
        (["boss", "--bundle", "https://example.net/b.age"], "cloud-init is for hubs and workers"),
        (
            ["worker", "--bundle", "https://example.net/w.age", "--script-url", "http://x/b.sh"],
            "must come over https",
        ),
        (
            ["worker", "--bundle", "https://example.net/w.age", "--hub-address", "a b"],
            "invalid hub address",
        ),
    ],
)
def test_bad_input_is_one_line(args: list[str], message: str) -> None:
    assert_cli_error(run_cli("cloud-init", *args), message)


def test_a_world_readable_passphrase_file_is_refused(tmp_path: Path) -> None:
    path = passphrase_file(tmp_path)
    path.chmod(0o644)
    result = run_cli("cloud-init", "worker", "--bundle", BUNDLE, "--passphrase-file", path)
    assert_cli_error(result, "readable by other users")
