"""`farmhand keys ca-rollover`: the store's three steps, and the real ``nebula`` trusting them.

The mesh test runs three real nebula nodes (a lighthouse and two workers) in network namespaces
of their own, plugged into a bridge in another (the host's own namespace gets no address). Each
step "deploys" by restarting the nodes with what their bundles then hold; a node that is not
redeployed keeps its old files, as a host would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from farmhand.keystore import pki, rollover
from farmhand.keystore.bundle import open_bundle
from farmhand.keystore.plan import new_plan
from farmhand.keystore.store import KeyStore
from farmhand.lab.net import Underlay, netns_argv
from farmhand.nebula.cert import certificates_from_pem
from support.cli import PASSPHRASE, WITH_PASSPHRASE, assert_cli_error, run_cli, snapshot

HUB_UNDERLAY = IPv4Address("198.18.87.10")
PORT = 4242
HUB_OVERLAY = "10.87.0.1"
PROBE_PORT = 7777
LISTEN = (
    "import socket\n"
    "s = socket.socket()\n"
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    f"s.bind(('0.0.0.0', {PROBE_PORT}))\n"
    "s.listen()\n"
    "while True:\n"
    "    s.accept()[0].close()\n"
)
CONNECT = (
    "import socket, sys\n"
    f"socket.create_connection((sys.argv[1], {PROBE_PORT}), timeout=1).close()\n"
)
"""A TCP listener in every node's namespace and a probe that connects to it over the overlay
(the machine need not have ping)."""

needs_mesh = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nebula") is None or shutil.which("ip") is None,
    reason="needs root, iproute2 and nebula (Debian package 'nebula'; CI installs it)",
)


def make_store(root: Path, workers: int = 3) -> KeyStore:
    plan = new_plan(name="roll", hub_address=str(HUB_UNDERLAY), port=PORT)
    pki.create_farm(root, plan, workers, [], PASSPHRASE)
    return KeyStore.open(root)


@dataclass(frozen=True)
class HostFiles:
    """What a deployed host's Nebula runs with."""

    ca: bytes
    cert: bytes
    key: bytes

    @property
    def issuer(self) -> str:
        return str(certificates_from_pem(self.cert)[0].details.issuer.hex())


def deployed(root: Path, name: str) -> HostFiles:
    """The files a deploy of ``name`` would give it now, read from its role's bundle."""
    bundle_file = "hub.keybundle.age" if name == "hub" else "workers.keybundle.age"
    bundle = open_bundle(root / bundle_file, PASSPHRASE)
    [host] = [h for h in bundle.hosts if h.name == name]
    return HostFiles(bundle.ca_pem, host.cert_pem, host.key_pem)


# --------------------------------------------------------------------------------------------
# the store


def test_the_three_steps_move_every_certificate_to_the_new_ca(tmp_path: Path) -> None:
    store = make_store(tmp_path / "keys")
    old_ca = store.ca
    keys_before = {
        e.name: store.certificate(e.name).details.public_key for e in store.register.entries
    }
    rollover.begin(store, PASSPHRASE)
    store = KeyStore.open(store.root)
    assert store.cas[0].fingerprint == old_ca.fingerprint
    assert len(store.cas) == 2
    assert store.ca.fingerprint != old_ca.fingerprint  # the new one signs
    assert sorted(rollover.on_old_ca(store)) == sorted(e.name for e in store.register.entries)
    for name in ("hub.keybundle.age", "workers.keybundle.age"):
        bundle = open_bundle(store.root / name, PASSPHRASE)
        assert [c.fingerprint for c in certificates_from_pem(bundle.ca_pem)] == [
            c.fingerprint for c in store.cas
        ]
    # A worker added during the rollover is the new CA's; verify accepts both kinds.
    pki.add_workers(store, 1, PASSPHRASE)
    store = KeyStore.open(store.root)
    assert store.certificate("worker0004").details.issuer.hex() == store.ca.fingerprint
    findings = pki.verify_store(store)
    assert not [f for f in findings if f.level == "error"], findings
    assert any("rollover is under way" in f.message for f in findings)

    rollover.reissue(store, PASSPHRASE)
    store = KeyStore.open(store.root)
    assert rollover.on_old_ca(store) == []
    for entry in store.register.entries:
        cert = store.certificate(entry.name)
        assert cert.details.issuer.hex() == store.ca.fingerprint
        if entry.name in keys_before:  # same key, so a host needs no new key file
            assert cert.details.public_key == keys_before[entry.name]

    rollover.finish(store, PASSPHRASE)
    store = KeyStore.open(store.root)
    assert [c.fingerprint for c in store.cas] == [store.ca.fingerprint]
    bundle = open_bundle(store.root / "workers.keybundle.age", PASSPHRASE)
    assert len(certificates_from_pem(bundle.ca_pem)) == 1
    assert [f for f in pki.verify_store(store) if f.level != "ok"] == []


@pytest.mark.parametrize(
    ("steps", "step", "fragment"),
    [
        ((), "finish", "no CA rollover is under way"),
        ((), "reissue", "no CA rollover is under way"),
        (("begin",), "begin", "already under way"),
        (("begin",), "finish", "still the old CA's (hub, worker0001, worker0002, ...)"),
        (("begin", "reissue"), "reissue", "already signed by the new CA"),
        ((), "sideways", "no CA rollover step 'sideways'"),
    ],
)
def test_a_step_out_of_order_is_one_line_and_changes_nothing(
    tmp_path: Path, steps: tuple[str, ...], step: str, fragment: str
) -> None:
    root = tmp_path / "keys"
    make_store(root)
    for done in steps:
        getattr(rollover, done)(KeyStore.open(root), PASSPHRASE)
    before = snapshot(root)
    assert_cli_error(
        run_cli("keys", "ca-rollover", step, "--dir", root, env=WITH_PASSPHRASE), fragment
    )
    assert snapshot(root) == before


def test_the_cli_says_what_to_deploy_after_each_step(tmp_path: Path) -> None:
    root = tmp_path / "keys"
    make_store(root, workers=1)
    said = {}
    for step in ("begin", "reissue", "finish"):
        result = run_cli("keys", "ca-rollover", step, "--dir", root, env=WITH_PASSPHRASE)
        assert result.returncode == 0, result.stderr
        said[step] = " ".join(result.stdout.split())
    assert "each trusts both CAs" in said["begin"]
    assert said["begin"].count("trusted CAs: ") == 1
    assert "signed 2 certificates by the new CA" in said["reissue"]
    assert "only the new CA is trusted" in said["finish"]
    listed = json.loads(run_cli("keys", "list", "--json", "--dir", root).stdout)
    assert listed["ca"]["name"].startswith("roll farmhand CA ")


# --------------------------------------------------------------------------------------------
# real nebula across the steps


class Mesh:
    """Nebula nodes in namespaces of their own on a bridge."""

    def __init__(self, work: Path) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.underlay = Underlay(prefix=f"fhrl{os.getpid() % 10000}")
        self.addresses = {
            "hub": HUB_UNDERLAY,
            "worker0001": IPv4Address("198.18.87.11"),
            "worker0002": IPv4Address("198.18.87.12"),
            "worker0004": IPv4Address("198.18.87.14"),
        }
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        self.listeners: list[subprocess.Popen[bytes]] = []
        try:
            self.underlay.create()
            for name, address in self.addresses.items():
                self.underlay.add_host(name.replace("worker", "w"), address)
                self.listeners.append(
                    subprocess.Popen(
                        netns_argv(self.namespace(name), [sys.executable, "-c", LISTEN])
                    )
                )
        except BaseException:
            self.close()
            raise

    def namespace(self, name: str) -> str:
        return self.underlay.host_namespace(name.replace("worker", "w"))

    def start(self, name: str, files: HostFiles) -> None:
        self.stop(name)
        folder = self.work / name
        folder.mkdir(exist_ok=True)
        for part in ("ca", "cert", "key"):
            path = folder / f"{part}.pem"
            path.write_bytes(getattr(files, part))
            path.chmod(0o600)
        hub = name == "hub"
        config = {
            "pki": {k: str(folder / f"{k}.pem") for k in ("ca", "cert", "key")},
            "static_host_map": {} if hub else {HUB_OVERLAY: [f"{HUB_UNDERLAY}:{PORT}"]},
            "lighthouse": {
                "am_lighthouse": hub,
                "interval": 1,
                "hosts": [] if hub else [HUB_OVERLAY],
            },
            "listen": {"host": "0.0.0.0", "port": PORT if hub else 0},  # noqa: S104 - its own netns
            "punchy": {"punch": True},
            "tun": {"dev": "nebula1", "mtu": 1300},
            "logging": {"level": "info"},
            "firewall": {
                "outbound": [{"port": "any", "proto": "any", "host": "any"}],
                "inbound": [{"port": PROBE_PORT, "proto": "tcp", "host": "any"}],
            },
        }
        path = folder / "config.yml"
        path.write_text(json.dumps(config))  # JSON is YAML
        log = (folder / "nebula.log").open("ab")
        self.nodes[name] = subprocess.Popen(
            netns_argv(self.namespace(name), ["nebula", "-config", str(path)]),
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def stop(self, name: str) -> None:
        node = self.nodes.pop(name, None)
        if node is not None:
            node.terminate()
            node.wait(10)

    def overlay(self, name: str) -> str:
        return HUB_OVERLAY if name == "hub" else f"10.87.99.{int(name[-4:])}"

    def reaches(self, source: str, target: str, within: float = 20) -> bool:
        """``source`` opens a TCP connection to ``target`` over the overlay within ``within``."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            argv = [sys.executable, "-c", CONNECT, self.overlay(target)]
            if (
                subprocess.run(
                    netns_argv(self.namespace(source), argv), capture_output=True
                ).returncode
                == 0
            ):
                return True
            time.sleep(0.5)
        return False

    def assert_all_talk(self, names: list[str], why: str) -> None:
        for i, source in enumerate(names):
            for target in names[i + 1 :]:
                assert self.reaches(source, target), f"{why}: {source} cannot reach {target}"

    def close(self) -> None:
        for name in list(self.nodes):
            self.stop(name)
        for listener in self.listeners:
            listener.kill()
            listener.wait(10)
        self.underlay.teardown()


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    built = Mesh(tmp_path / "mesh")
    try:
        yield built
    finally:
        built.close()


@needs_mesh
def test_hosts_on_the_old_and_the_new_ca_talk_at_every_step(tmp_path: Path, mesh: Mesh) -> None:
    root = tmp_path / "keys"
    store = make_store(root)
    old_ca = store.ca.fingerprint
    before = {name: deployed(root, name) for name in ("hub", "worker0001", "worker0002")}

    # Step 1: every host is redeployed and trusts both CAs; a worker added now is the new CA's.
    rollover.begin(store, PASSPHRASE)
    pki.add_workers(KeyStore.open(root), 1, PASSPHRASE)
    step1 = {n: deployed(root, n) for n in ("hub", "worker0001", "worker0004")}
    assert step1["worker0001"].issuer == old_ca
    assert step1["worker0004"].issuer != old_ca
    for name, files in step1.items():
        mesh.start(name, files)
    mesh.assert_all_talk(["hub", "worker0001", "worker0004"], "step 1 (old and new certificates)")

    # Step 2: the hub and worker0004 are redeployed; worker0001 still runs its old certificate.
    rollover.reissue(KeyStore.open(root), PASSPHRASE)
    for name in ("hub", "worker0004"):
        mesh.start(name, deployed(root, name))
    assert deployed(root, "hub").issuer != old_ca
    mesh.assert_all_talk(["hub", "worker0001", "worker0004"], "step 2 (half reissued)")

    # Step 3: worker0001 is redeployed, then the old CA is dropped and everyone redeployed.
    mesh.start("worker0001", deployed(root, "worker0001"))
    mesh.assert_all_talk(["hub", "worker0001", "worker0004"], "step 3 (all reissued)")
    rollover.finish(KeyStore.open(root), PASSPHRASE)
    for name in ("hub", "worker0001", "worker0004"):
        mesh.start(name, deployed(root, name))
    mesh.assert_all_talk(["hub", "worker0001", "worker0004"], "after finish")
    # A host that kept its files from before the rollover is no longer trusted.
    mesh.start("worker0002", before["worker0002"])
    assert not mesh.reaches("worker0002", "hub", within=8)
    log = (tmp_path / "mesh" / "hub" / "nebula.log").read_text()
    assert (
        "could not find ca for the certificate" in log
        or "certificate validation failed" in log.lower()
    )
