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


# --- a claim-key holder that is not a well-behaved worker ----------------------------------

POOL = [{"name": f"worker{i:04d}", "ip": f"10.87.99.{i}", "not_after": 2**40} for i in range(1, 7)]


@pytest.fixture
def six(hub: Hub) -> Iterator[Hub]:
    """The hub with six certificates, three per source address, and an empty table."""
    pool_file = hub.root / "lease-pool.json"
    before = pool_file.read_text()

    def clear() -> None:
        for path in (hub.root / "state").iterdir():
            if path.name != "lock":
                path.unlink()

    clear()
    pool_file.write_text(json.dumps({"ttl": 30, "per_source": 3, "pool": POOL}))
    try:
        yield hub
    finally:
        pool_file.write_text(before)
        clear()


def _ask(hub: Hub, request: dict[str, Any], source: str = "127.0.0.1") -> dict[str, Any]:
    """One request through sshd from the loopback address ``source`` (sshd tells the forced
    command in SSH_CONNECTION)."""
    argv = leases.ssh_argv(hub.config())
    result = subprocess.run(
        [*argv[:-1], "-o", f"BindAddress={source}", argv[-1]],
        input=json.dumps(request).encode(),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def _claim(machine: str, hostname: str = "render", name: str = "") -> dict[str, Any]:
    return {"op": "claim", "machine": machine, "boot": BOOT, "hostname": hostname, "name": name}


def test_random_machine_ids_from_one_address_hit_the_bound(six: Hub) -> None:
    randoms = [os.urandom(16).hex() for _ in range(5)]
    answers = [_ask(six, _claim(m, hostname=f"rnd{i}")) for i, m in enumerate(randoms)]
    assert [a["ok"] for a in answers] == [True, True, True, False, False]
    granted = [a["lease"]["name"] for a in answers[:3]]
    assert granted == ["worker0006", "worker0005", "worker0004"]
    for refused in answers[3:]:
        assert refused["reason"] == "limit"
        assert refused["message"].startswith(
            "this address 127.0.0.1 already holds 3 worker certificate(s), the most one address "
            "may hold at once"
        )
        text = refused["message"]
        assert not any(m[:12] in text or f"rnd{i}" in text for i, m in enumerate(randoms))
        assert not any(name in text for name in granted)
    # The pool still has free certificates for machines elsewhere.
    other = _ask(six, _claim("cd" * 16, hostname="elsewhere"), source="127.0.0.2")
    assert other["ok"], other
    assert other["lease"]["name"] == "worker0003"
    published = json.loads((six.root / "published.json").read_text())
    assert sorted(x["name"] for x in published["leases"]) == sorted([*granted, "worker0003"])
    assert "127.0.0" not in json.dumps(published), "the source is the hub's own business"


def test_a_worker_named_claim_does_not_evict_a_live_holder(six: Hub) -> None:
    holder = _ask(six, _claim("ab" * 16, hostname="render-a"), source="127.0.0.2")
    assert holder["lease"]["name"] == "worker0006"
    named = _ask(six, _claim("cd" * 16, hostname="worker0006", name="worker0006"))
    assert (named["ok"], named["reason"]) == (False, "taken")
    assert "worker0006 is held by another live machine" in named["message"]
    assert "abababababab" not in named["message"]
    assert "render-a" not in named["message"]
    renewal = {
        "op": "renew",
        "machine": "ab" * 16,
        "boot": BOOT,
        "hostname": "render-a",
        "name": "worker0006",
    }
    kept = _ask(six, renewal, source="127.0.0.2")
    assert kept["ok"], kept
    assert kept["lease"]["machine"] == "ab" * 16
    assert _ask(six, _claim("cd" * 16, "worker0006", "worker0006"))["reason"] == "taken"
    published = json.loads((six.root / "published.json").read_text())
    assert [(x["name"], x["hostname"]) for x in published["leases"]] == [("worker0006", "render-a")]
    # Someone else's lease is not theirs to renew, and the answer does not say whose it is.
    stolen = _ask(six, {**renewal, "machine": "cd" * 16, "hostname": "worker0006"})
    assert (stolen["ok"], stolen["reason"]) == (False, "lost")
    assert "abababababab" not in stolen["message"]
    assert "render-a" not in stolen["message"]


def test_a_session_that_sends_nothing_is_closed_within_the_time_limit(six: Hub) -> None:
    started = time.monotonic()
    silent = subprocess.Popen(
        leases.ssh_argv(six.config()),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:  # stdin stays open and empty: the hub, not the client, ends the session
        silent.wait(timeout=leases.SESSION_SECONDS + 20)
        elapsed = time.monotonic() - started
        out, err = silent.stdout.read(), silent.stderr.read()
    finally:
        silent.kill()
        silent.wait()
        for stream in (silent.stdin, silent.stdout, silent.stderr):
            stream.close()
    assert leases.SESSION_SECONDS - 1 <= elapsed <= leases.SESSION_SECONDS + 10, elapsed
    answer = json.loads(out)
    assert (answer["ok"], answer["reason"]) == (False, "timeout"), err
    assert answer["message"] == "no complete request within 10 s: the hub hangs up"
    # And one that sends too much is cut off at once.
    flood = subprocess.run(
        leases.ssh_argv(six.config()),
        input=b"{" * (leases.MAX_REQUEST + 1),
        capture_output=True,
        timeout=30,
    )
    assert json.loads(flood.stdout)["message"] == "request too long"
