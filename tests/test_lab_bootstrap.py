"""End to end: bootstrap.sh turns fresh lab containers into a hub and workers (issue 4).

ONE lab (prefix ``fhboot``): a hub and two workers, all fresh clones of the base image. Nothing
is push-deployed: each host gets bootstrap.sh, its bundle and farmhand's wheelhouse (the lab has
no internet: PIP_NO_INDEX + PIP_FIND_LINKS, FARMHAND_SOURCE = the locally built wheel) and runs
the one-liner on itself. Before that, bad input on worker0002 must fail in one line and leave
the host without any farm part. Last, idle shutdown with short thresholds: worker0002 (idle)
powers off; worker0001 runs a stand-in render (a copy of ``sleep`` named ``blender``) and stays up
until that ends. Every wait is a poll with a deadline.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

import support.lab
from farmhand.keystore import pki
from farmhand.keystore.plan import new_plan
from farmhand.keystore.store import KeyStore
from farmhand.lab import LabFarm
from farmhand.lab.wheelhouse import build_wheelhouse, copy_wheelhouse, farmhand_wheel
from support.cli import wait_until

PREFIX = "fhboot"
HUB, W1, W2 = "hub", "worker0001", "worker0002"
PASSPHRASE = "lab bootstrap passphrase 4 tests"
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "/usr/local/share/farmhand-bootstrap.sh"  # readable by any user (the non-root run)
PASS_FILE = "/root/farm-passphrase"
WRONG_PASS_FILE = "/root/wrong-passphrase"
NO_SUCH_HOST = "198.18.87.250"  # on the lab underlay, nobody there

pytestmark = support.lab.lab_marks(support.lab.LAB_TOOLS_NO_NFT)


@dataclass
class Lab:
    farm: LabFarm
    overlay: dict[str, str]
    wheel: str
    wheelhouse: str

    def run(self, name: str, script: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return self.farm.host(name).exec(["sh", "-c", script], timeout=timeout)

    def sh(self, name: str, script: str) -> str:
        # run()'s 600 s timeout; a failure shows stdout and stderr.
        return support.lab.sh(self.farm, name, script, timeout=600, both_outputs=True)

    def bootstrap(self, name: str, args: str, user: str = "") -> subprocess.CompletedProcess[str]:
        """bootstrap.sh on ``name`` as the lab installs it: offline, from the local wheel."""
        env = (
            f"PIP_NO_INDEX=1 PIP_FIND_LINKS={self.wheelhouse} FARMHAND_SOURCE={self.wheel} "
            "COLUMNS=200 NO_COLOR=1"
        )
        runner = f"runuser -u {user} -- " if user else ""
        return self.run(name, f"env {env} {runner}sh {SCRIPT} {args}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    support.lab.require_lab(support.lab.LAB_TOOLS_NO_NFT)
    state = tmp_path_factory.mktemp("boot-state")
    farm = LabFarm(state, prefix=PREFIX, progress=print)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            wheels = pool.submit(build_wheelhouse)
            farm.up(workers=2, bosses=0)
            wheelhouse = wheels.result()
        keys = state / "keys"
        plan = new_plan(name="bootlab", hub_address=str(farm.address(HUB)))
        pki.create_farm(keys, plan, 2, [], PASSPHRASE)
        register = KeyStore.open(keys).register
        overlay = {n: str(register.get(n).ip) for n in (HUB, W1, W2)}  # type: ignore[union-attr]
        files = {
            SCRIPT: ((ROOT / "bootstrap.sh").read_bytes(), "644"),
            PASS_FILE: (PASSPHRASE.encode() + b"\n", "600"),
            WRONG_PASS_FILE: (b"not the passphrase\n", "600"),
            "/root/hub.keybundle.age": ((keys / "hub.keybundle.age").read_bytes(), "600"),
            "/root/workers.keybundle.age": ((keys / "workers.keybundle.age").read_bytes(), "600"),
        }

        def provision(name: str) -> str:
            remote = copy_wheelhouse(farm, name, wheelhouse)
            for path, (data, mode) in files.items():
                farm.put(name, path, data, int(mode, 8))
            return remote

        with ThreadPoolExecutor(max_workers=3) as pool:
            remote, *_ = list(pool.map(provision, (HUB, W1, W2)))
        wheel = f"{remote}/{farmhand_wheel(wheelhouse).name}"
        yield Lab(farm, overlay, wheel, remote)
    finally:
        farm.down()


def one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    output = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode != 0, output
    assert "Traceback" not in result.stdout + result.stderr, output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("error: "), output
    for fragment in fragments:
        assert fragment in lines[0], output
    return lines[0]


FARM_PARTS = (
    "/etc/systemd/system/farmhand-nebula.service",
    "/etc/systemd/system/farmhand-idle.timer",
    "/etc/nebula/farmhand",
    "/etc/farmhand",
    "/usr/local/lib/farmhand",
)


def farm_parts(lab: Lab, name: str) -> list[str]:
    """What of the farm is on ``name``: units, keys, config, the nebula package."""
    checks = " ".join(shlex.quote(p) for p in FARM_PARTS)
    found = lab.sh(name, f"for p in {checks}; do [ -e $p ] && echo $p; done; true").split()
    if (
        lab.run(name, "dpkg-query -W -f='${Status}' nebula | grep -q 'ok installed'").returncode
        == 0
    ):
        found.append("the nebula package")
    return found


# --- bad input: one line each, and nothing of the farm on the host ----------------------------


def test_bad_input_is_one_line_and_leaves_the_host_unchanged(lab: Lab) -> None:
    # Not root: refused before anything, farmhand not even installed.
    result = lab.bootstrap(W2, f"worker --bundle /tmp/none --passphrase-file {PASS_FILE}", "nobody")
    one_line_error(result, "must run as root")
    assert lab.run(W2, "test -e /opt/farmhand").returncode == 1

    # A hub bundle given to a worker (this run installs farmhand, then refuses).
    result = lab.bootstrap(
        W2, f"worker --bundle /root/hub.keybundle.age --passphrase-file {PASS_FILE}"
    )
    one_line_error(
        result, "/root/hub.keybundle.age is a hub bundle: 'farmhand bootstrap worker' needs"
    )
    assert "installing farmhand from" in result.stdout
    # ... and a workers bundle given to a hub.
    result = lab.bootstrap(
        W2, f"hub --bundle /root/workers.keybundle.age --passphrase-file {PASS_FILE}"
    )
    one_line_error(result, "is a worker bundle: 'farmhand bootstrap hub' needs the hub one")
    result = lab.bootstrap(
        W2, f"worker --bundle /root/workers.keybundle.age --passphrase-file {WRONG_PASS_FILE}"
    )
    one_line_error(result, "wrong passphrase for /root/workers.keybundle.age")
    url = f"https://{NO_SUCH_HOST}/workers.keybundle.age"
    result = lab.bootstrap(W2, f"worker --bundle {url} --passphrase-file {PASS_FILE}")
    one_line_error(result, f"cannot download the bundle from {url}:")
    # No passphrase and no terminal to ask on.
    result = lab.bootstrap(W2, "worker --bundle /root/workers.keybundle.age")
    one_line_error(result, "a passphrase is needed")
    # The installed CLI, run by an ordinary user.
    result = lab.run(
        W2,
        "cd / && runuser -u nobody -- env NO_COLOR=1 /usr/local/bin/farmhand bootstrap worker "
        "--bundle /root/workers.keybundle.age",
    )
    one_line_error(result, "must run as root (use sudo)")

    assert farm_parts(lab, W2) == []
    assert lab.run(W2, "ls /tmp | grep -c farmhand-bundle").stdout.strip() == "0"


# --- the one-liner makes a hub and workers ---------------------------------------------------


def pings(lab: Lab, source: str, address: str) -> bool:
    return lab.run(source, f"ping -c 1 -W 1 {address}").returncode == 0


def test_bootstrap_sh_makes_a_hub_and_workers_that_reach_it(lab: Lab) -> None:
    # Offline lab: seeded apt cache, no kernel CIFS, no render-queue installers.
    lab_flags = "--no-apt-update --no-mounts --no-queue"
    started = time.monotonic()
    hub = lab.bootstrap(
        HUB, f"hub --bundle /root/hub.keybundle.age --passphrase-file {PASS_FILE} {lab_flags}"
    )
    assert hub.returncode == 0, hub.stdout + hub.stderr
    print(f"hub bootstrapped in {time.monotonic() - started:.0f} s")
    started = time.monotonic()
    args = f"worker --bundle /root/workers.keybundle.age --passphrase-file {PASS_FILE} {lab_flags}"
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda n: lab.bootstrap(n, args), (W1, W2)))
    for result in results:
        assert result.returncode == 0, result.stdout + result.stderr
    print(f"2 workers bootstrapped in {time.monotonic() - started:.0f} s")

    for worker in (W1, W2):
        took = wait_until(
            f"{worker} pings the hub over the overlay",
            lambda w=worker: pings(lab, w, lab.overlay[HUB]),  # type: ignore[misc]
            60,
        )
        print(f"{worker} reached the hub {took:.1f} s after its bootstrap")
        # It chose its certificate by its hostname (pick-cert) and runs nebula with it.
        assert lab.overlay[worker] in lab.sh(worker, "ip -4 -o addr show nebula1")
        assert lab.sh(worker, "systemctl is-enabled farmhand-idle.timer") == "enabled"
    assert pings(lab, HUB, lab.overlay[W2])
    assert lab.sh(HUB, "systemctl is-active farmhand-nebula smbd") == "active\nactive"

    # Running the one-liner again is safe: nothing changes.
    again = lab.bootstrap(W1, args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "this worker: 0 changed" in again.stdout, again.stdout


# --- idle shutdown ----------------------------------------------------------------------------

FAST_IDLE = "IDLE_AFTER=8s\nIDLE_BOOT_GRACE=0\nIDLE_CPU_PERCENT=0\n"
# CPU is not checked here: a container's /proc/stat is the whole (busy, shared) machine's.
FAST_TIMER = (
    "[Timer]\nOnBootSec=\nOnBootSec=2s\nOnUnitActiveSec=\nOnUnitActiveSec=2s\nAccuracySec=1s\n"
)


def fast_idle(lab: Lab, name: str) -> None:
    """Per-worker overrides, as a user would write them: the local env file, a timer drop-in."""
    lab.farm.put(name, "/etc/farmhand/idle.local.env", FAST_IDLE.encode(), 0o644)
    lab.sh(name, "mkdir -p /etc/systemd/system/farmhand-idle.timer.d")
    dropin = "/etc/systemd/system/farmhand-idle.timer.d/fast.conf"
    lab.farm.put(name, dropin, FAST_TIMER.encode(), 0o644)
    lab.sh(name, "systemctl daemon-reload && systemctl restart farmhand-idle.timer")


def test_idle_shutdown_spares_a_rendering_worker_and_powers_off_an_idle_one(lab: Lab) -> None:
    # worker0001 renders (a stand-in: sleep under a renderer's name); worker0002 does nothing.
    lab.sh(W1, "cp /bin/sleep /usr/local/bin/blender")
    lab.sh(W1, "systemd-run --unit fake-render /usr/local/bin/blender 3600")
    for worker in (W1, W2):
        fast_idle(lab, worker)
    took = wait_until("the idle worker0002 powers off", lambda: not lab.farm.host(W2).running(), 90)
    print(f"worker0002 powered off {took:.0f} s after idle shutdown was set to 8 s")

    def journal() -> str:
        return lab.sh(W1, "journalctl --no-pager -o cat -t farmhand-idle")

    wait_until(
        "worker0001 logs three checks that keep it up for its render",
        lambda: journal().count("keep: busy: render blender (pid") >= 3,
        30,
    )
    assert lab.farm.host(W1).running()
    assert "poweroff" not in journal()

    # The render ends: now worker0001 is idle too and goes.
    lab.sh(W1, "systemctl stop fake-render")
    wait_until(
        "worker0001 powers off after its render", lambda: not lab.farm.host(W1).running(), 90
    )
