"""The claim path through a real OpenSSH: the workers' claim key is accepted only for the forced
lease command, the hub is recognised only by its pinned ECDSA P-384 host key, and an
unreachable hub or a wrong host key come back as clear reasons, not as a guess.

A private sshd listens on loopback with the farm's lease host key listed after an ordinary
ed25519 host key (as the hub's drop-in does), so this also proves that a default client still
sees the ed25519 key while the worker's pinned client gets the P-384 one.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from farmhand.keystore import farm_secrets
from farmhand.keystore.plan import Role
from farmhand.onhost import leases

SSHD = shutil.which("sshd", path="/usr/sbin:/usr/bin:/sbin")
NEEDS = None if SSHD and shutil.which("ssh") and os.geteuid() == 0 else "needs root, sshd, ssh"
pytestmark = pytest.mark.skipif(NEEDS is not None, reason=NEEDS or "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Hub:
    def __init__(self, root: Path, port: int, process: subprocess.Popen[bytes]) -> None:
        self.root, self.port, self.process = root, port, process

    def config(self, known_hosts: Path | None = None) -> dict[str, Any]:
        return {
            "hub": "127.0.0.1",
            "hub_port": self.port,
            "user": "root",
            "claim_key": str(self.root / "claim.key"),
            "known_hosts": str(known_hosts or self.root / "known_hosts"),
            "connect_timeout": 5,
        }


def _write(path: Path, data: bytes, mode: int) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    root = tmp_path_factory.mktemp("lease-sshd")
    root.chmod(0o755)
    made = farm_secrets.completed({}, (farm_secrets.LEASE_CLAIM_KEY, farm_secrets.LEASE_HOST_KEY))
    hub_side = farm_secrets.for_role(Role.HUB, made)
    worker_side = farm_secrets.for_role(Role.WORKER, made)
    _write(root / "lease_host_key", hub_side["lease-host-key"], 0o600)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "ed25519_key")],
        check=True,
    )
    _write(root / "claim.key", worker_side["lease-claim-key"], 0o600)
    host_pub = worker_side["lease-host-key.pub"].decode().split()
    _write(
        root / "known_hosts",
        f"{leases.HOST_KEY_ALIAS} {host_pub[0]} {host_pub[1]}\n".encode(),
        0o644,
    )
    (root / "state").mkdir()
    (root / "lease-pool.json").write_text(
        json.dumps(
            {
                "ttl": 30,
                "pool": [{"name": "worker0001", "ip": "10.87.99.1", "not_after": 2**40}],
            }
        )
    )
    # The forced command: this module's serve(), with the table in the temporary folder.
    serve = root / "serve"
    src = str(Path(leases.__file__).parents[2])
    serve.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {src!r})\n"
        "from farmhand.onhost import leases\n"
        f"sys.exit(leases.serve(table_path={str(root / 'state/leases.json')!r}, "
        f"lock_path={str(root / 'state/lock')!r}, pool_path={str(root / 'lease-pool.json')!r}, "
        f"published_path={str(root / 'published.json')!r}))\n"
    )
    serve.chmod(0o755)
    claim_pub = hub_side["lease-claim-key.pub"].decode().strip()
    _write(
        root / "authorized_keys",
        f'restrict,command="{serve}" {claim_pub}\n'.encode(),
        0o600,
    )
    port = _free_port()
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\n"
        f"HostKey {root / 'ed25519_key'}\nHostKey {root / 'lease_host_key'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nPidFile none\n"
        "UsePAM no\nStrictModes no\nPasswordAuthentication no\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
    process = subprocess.Popen(
        [str(SSHD), "-D", "-e", "-f", str(root / "sshd_config")],
        stderr=open(root / "sshd.log", "wb"),  # noqa: SIM115 - closed with the process
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, (root / "sshd.log").read_text()
            time.sleep(0.1)
        yield Hub(root, port, process)
    finally:
        process.terminate()
        process.wait(10)


MACHINE = "ab" * 16
BOOT = "01" * 16


def test_a_worker_claims_through_the_forced_command(hub: Hub) -> None:
    answer = leases.ask_hub(
        hub.config(),
        {"op": "claim", "machine": MACHINE, "boot": BOOT, "hostname": "render", "name": ""},
    )
    assert answer["ok"], answer
    assert answer["lease"]["name"] == "worker0001"
    other = leases.ask_hub(
        hub.config(),
        {"op": "claim", "machine": "cd" * 16, "boot": BOOT, "hostname": "x", "name": ""},
    )
    assert other["reason"] == "exhausted"
    published = json.loads((hub.root / "published.json").read_text())
    assert [x["machine"] for x in published["leases"]] == [MACHINE]


def test_the_claim_key_runs_nothing_but_the_lease_command(hub: Hub) -> None:
    argv = leases.ssh_argv(hub.config())
    result = subprocess.run(
        [*argv, "touch", str(hub.root / "pwned")],
        input=json.dumps({"op": "release", "machine": MACHINE, "boot": BOOT, "name": "x"}).encode(),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True
    assert not (hub.root / "pwned").exists()
    # No port forwarding either (restrict).
    forward = subprocess.run(
        [*argv[:-1], "-N", "-o", "ExitOnForwardFailure=yes", "-W", "127.0.0.1:22", argv[-1]],
        capture_output=True,
        timeout=30,
    )
    assert forward.returncode != 0


def test_a_host_with_another_key_is_not_the_hub(hub: Hub, tmp_path: Path) -> None:
    made = farm_secrets.completed({}, (farm_secrets.LEASE_HOST_KEY,))
    pub = farm_secrets.for_role(Role.WORKER, made)["lease-host-key.pub"].decode().split()
    wrong = _write(
        tmp_path / "known_hosts", f"{leases.HOST_KEY_ALIAS} {pub[0]} {pub[1]}\n".encode(), 0o644
    )
    answer = leases.ask_hub(
        hub.config(wrong), {"op": "claim", "machine": MACHINE, "hostname": "r", "name": ""}
    )
    assert (answer["ok"], answer["reason"]) == (False, "hub-key")
    assert "not the hub" in answer["message"]


def test_an_unreachable_hub_is_reported_with_sshs_words(hub: Hub) -> None:
    config = {**hub.config(), "hub_port": _free_port()}
    answer = leases.ask_hub(config, {"op": "claim", "machine": MACHINE, "hostname": "r"})
    assert (answer["ok"], answer["reason"]) == (False, "unreachable")
    assert "Connection refused" in answer["message"]


def test_a_default_client_still_sees_the_hosts_own_key(hub: Hub) -> None:
    scan = subprocess.run(
        [
            "ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-v", "-p", str(hub.port), "root@127.0.0.1",
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )  # fmt: skip
    assert "Server host key: ssh-ed25519" in scan.stderr
