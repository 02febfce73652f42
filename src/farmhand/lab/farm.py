"""The lab farm: a hub, N workers and a boss as containers on one Linux machine.

``LabFarm`` wires the image, the underlay and the containers together and runs their
lifecycle (up, down, start, stop, reboot, reset, kill, poweroff, clones). It composes the
concerns kept in their own modules: lab.json and the lock (state.py), the host records and the
plan (records.py), NAT placement (nat.py), the desk namespace (desk.py) and the sweep by name
that makes ``down()`` work even without a state file (sweep.py).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from farmhand.errors import LabError
from farmhand.lab import desk, nat
from farmhand.lab.image import ImageSpec, Progress, ensure_base_image
from farmhand.lab.net import DESK_ADDRESS, PREFIX, UNDERLAY, NatRouter, Underlay
from farmhand.lab.nspawn import NspawnHost, ensure_lab_key
from farmhand.lab.records import (
    BOSS_BASE,
    HUB_ADDRESS,
    MAX_BOSSES,
    MAX_WORKERS,
    WORKER_BASE,
    HostRecord,
    HostStatus,
    Role,
    clone_records,
    plan_hosts,
    worker_name,
)
from farmhand.lab.state import STATE_VERSION, LabState
from farmhand.lab.sweep import leftovers, stray_nspawns, sweep
from farmhand.lab.system import lab_root, remove_tree, require_host

_KEPT_ON_DOWN = frozenset({"ssh", ".lock"})
_UP_TOOLS = ("debootstrap", "chroot", "systemd-nspawn", "ip", "ssh")


class LabFarm:
    """The lab on this machine; its state lives in ``state_dir`` (default: lab_root()/state)."""

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        images_dir: Path | None = None,
        spec: ImageSpec | None = None,
        progress: Progress | None = None,
        prefix: str = PREFIX,
    ) -> None:
        self.state_dir = state_dir or lab_root() / "state"
        self.images_dir = images_dir
        self.spec = spec or ImageSpec()
        self.progress: Progress = progress or (lambda _line: None)
        self.underlay = Underlay(prefix)
        self.prefix = prefix
        self.cgroup_group = f"farmhand-{prefix}"
        self.state = LabState(self.state_dir)

    # state (state.py) -------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        """The lab's record of what it created."""
        return self.state.file

    @property
    def key_path(self) -> Path:
        """Private half of the lab SSH key (root on every lab host accepts it)."""
        return self.state_dir / "ssh" / "id_ed25519"

    @property
    def desk_namespace(self) -> str:
        """Network namespace of the user's desktop: run pyinfra and ssh there."""
        return self.underlay.desk_namespace

    @property
    def desk_address(self) -> IPv4Address:
        """The desk's underlay address."""
        return DESK_ADDRESS

    def exists(self) -> bool:
        """True when a lab (maybe partial) is recorded here."""
        return self.state.exists()

    def records(self) -> list[HostRecord]:
        """Every host of the lab, hub first, then workers, then bosses."""
        return self.state.records()

    def record(self, name: str) -> HostRecord:
        """The record of host ``name``."""
        return self.state.record(name)

    def _host(self, rec: HostRecord, image: Path | None = None) -> NspawnHost:
        layers = (self.state_dir / "hosts" / rec.clone_of / "upper",) if rec.clone_of else ()
        return NspawnHost(
            hostname=rec.hostname,
            layers=layers,
            name=rec.name,
            address=rec.address,
            namespace=self.underlay.host_namespace(rec.name),
            image=image or self.state.image,
            state_dir=self.state_dir / "hosts" / rec.name,
            key=self.key_path,
            desk_namespace=self.desk_namespace,
            machine=f"{self.prefix}-{rec.name}",
            cgroup_group=self.cgroup_group,
            pid=rec.pid,
        )

    def host(self, name: str) -> NspawnHost:
        """The container of host ``name`` (exec, ssh_argv, running…)."""
        return self._host(self.record(name))

    def address(self, name: str) -> IPv4Address:
        """Underlay address of host ``name`` as seen from the desk and the other hosts."""
        return self.record(name).address

    # plan (records.py) ------------------------------------------------------------------

    @staticmethod
    def plan(workers: int, bosses: int, behind_nat: Sequence[str]) -> list[HostRecord]:
        """Names, roles and addresses of a lab with ``workers`` workers and ``bosses`` bosses."""
        return plan_hosts(workers, bosses, behind_nat)

    # up ---------------------------------------------------------------------------------

    def up(
        self,
        workers: int = 2,
        *,
        bosses: int = 1,
        behind_nat: Sequence[str] = (),
        boot_timeout: float = 120,
    ) -> list[HostRecord]:
        """Build (or reuse) the image, then the network, then boot every host and wait for ssh.

        On failure everything made so far stays recorded: ``down()`` removes it.
        """
        require_host([*_UP_TOOLS, *(["nft"] if behind_nat else [])])
        records = self.plan(workers, bosses, behind_nat)
        with self.state.lock():
            if self.exists():
                names = ", ".join(r.name for r in self.records())
                raise LabError(f"a lab is already up ({names}): run `farmhand lab down` first")
            if leftovers(self.underlay, self.cgroup_group):
                self.progress("removing what an earlier lab left behind")
                self._sweep()
            image = ensure_base_image(self.progress, spec=self.spec, images_dir=self.images_dir)
            ensure_lab_key(self.key_path.parent)
            self.state.create(
                {
                    "version": STATE_VERSION,
                    "image": str(image),
                    "key": str(self.key_path),
                    "desk": {"namespace": self.desk_namespace, "address": str(DESK_ADDRESS)},
                    "created_at": int(time.time()),
                    "hosts": [r.to_json() for r in records],
                }
            )

            self.progress(f"creating the underlay {UNDERLAY} in network namespaces")
            self.underlay.create()
            for rec in records:
                self._plug(rec)

            started = time.monotonic()
            self.progress(f"booting {len(records)} containers")
            hosts = []
            for rec in records:
                host = self._host(rec, image)
                host.start()
                self.state.update(replace(rec, pid=host.pid))
                hosts.append(host)
            with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
                for future in [pool.submit(h.wait_for_ssh, boot_timeout) for h in hosts]:
                    future.result()
            self.progress(f"all {len(hosts)} hosts answer ssh ({time.monotonic() - started:.1f} s)")
            return self.records()

    # NAT placement (nat.py) -------------------------------------------------------------

    def _plug(self, rec: HostRecord) -> NatRouter | None:
        return nat.plug(self.underlay, rec, lambda: self.address("hub"))

    def put_behind_nat(self, name: str) -> NatRouter:
        """Move a (running) host behind its own NAT router; see ``Underlay.put_behind_nat``."""
        require_host(["ip", "nft"])
        rec = self.record(name)
        if rec.role == "hub":
            raise LabError("the hub cannot sit behind NAT: it is the farm's public address")
        if rec.nat_lan is None:
            rec = replace(rec, nat_lan=nat.free_nat_lan(self.records()))
            self.state.update(rec)
        router = self._plug(rec)
        assert router is not None
        return router

    # operate ----------------------------------------------------------------------------

    def reboot(self, name: str, timeout: float = 120) -> None:
        """Power host ``name`` off and boot it again with its disk; wait for ssh."""
        require_host(["systemd-nspawn", "ssh"])
        rec = self.record(name)
        host = self._host(rec)
        host.stop()
        self.state.update(replace(rec, pid=None))
        host.start()
        self.state.update(replace(rec, pid=host.pid))
        host.wait_for_ssh(timeout)

    def reset(self, name: str, timeout: float = 120) -> None:
        """Throw away everything host ``name`` changed and boot it as a fresh clone."""
        rec = self.record(name)
        host = self._host(rec)
        host.stop()
        self.state.update(replace(rec, pid=None))
        host.wipe()
        self.start(name, timeout)

    def stop(self, name: str) -> None:
        """Power host ``name`` off (its disk stays; ``start`` boots it again)."""
        rec = self.record(name)
        self._host(rec).stop()
        self.state.update(replace(rec, pid=None))

    def start(self, name: str, timeout: float = 120) -> None:
        """Boot a stopped host ``name``; wait for ssh."""
        rec = self.record(name)
        host = self._host(rec)
        host.start()
        self.state.update(replace(rec, pid=host.pid))
        host.wait_for_ssh(timeout)

    def poweroff(self, name: str, timeout: float = 60) -> None:
        """Shut host ``name`` down cleanly from inside and wait until it is off."""
        rec = self.record(name)
        self._host(rec).poweroff(timeout)
        self.state.update(replace(rec, pid=None))

    def kill(self, name: str) -> None:
        """Pull the plug on host ``name``: no clean shutdown (a terminated spot instance)."""
        rec = self.record(name)
        self._host(rec).kill()
        self.state.update(replace(rec, pid=None))

    def add_clones(
        self,
        source: str,
        clones: Sequence[tuple[str, str]],
        *,
        wait: bool = True,
        boot_timeout: float = 120,
    ) -> dict[str, float]:
        """Boot ``clones`` (lab name, hostname) at once as copy-on-write clones of the disk of
        ``source`` (which must be powered off, as a snapshot's source is); returns each one's
        start time (time.monotonic()). Their network is their own, like a cloud clone's."""
        require_host(_UP_TOOLS)
        base = self.record(source)
        if self._host(base).running():
            raise LabError(f"stop {source} before cloning it: its disk must not change")
        with self.state.lock():
            records = clone_records(base, clones, self.records())
            self.state.add(records)
            for rec in records:
                self._plug(rec)
            started: dict[str, float] = {}
            hosts = []
            for rec in records:
                host = self._host(rec)
                started[rec.name] = time.monotonic()
                host.start()
                self.state.update(replace(rec, pid=host.pid))
                hosts.append(host)
        if wait:
            with ThreadPoolExecutor(max_workers=min(16, len(hosts) or 1)) as pool:
                for future in [pool.submit(h.wait_for_ssh, boot_timeout) for h in hosts]:
                    future.result()
        return started

    def status(self) -> list[HostStatus]:
        """Per host: is its container running, and does its sshd answer from the desk?"""
        if not self.exists():
            return []
        require_host(["ip", "ssh"])
        hosts = [(rec, self._host(rec)) for rec in self.records()]

        def check(item: tuple[HostRecord, NspawnHost]) -> HostStatus:
            rec, host = item
            running = host.running()
            ssh = running and host.ssh_ready()
            return HostStatus(
                rec.name, rec.role, rec.address, rec.pid, running, ssh, rec.nat_lan is not None
            )

        with ThreadPoolExecutor(max_workers=min(16, len(hosts) or 1)) as pool:
            return list(pool.map(check, hosts))

    # desk (desk.py) ---------------------------------------------------------------------

    def exec(
        self, name: str, argv: Sequence[str], *, input: str | None = None, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as root on host ``name`` over ssh from the desk."""
        return self.host(name).exec(argv, input=input, check=check)

    def put(self, name: str, path: str, data: bytes, mode: int = 0o600) -> None:
        """Write a file onto host ``name`` over ssh's stdin, with ``mode``."""
        self.host(name).put(path, data, mode)

    def desk_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` wrapped to run in the desk namespace (e.g. a pyinfra command line)."""
        return desk.desk_argv(self.desk_namespace, argv)

    def run_in_desk(
        self, argv: Sequence[str], *, timeout: float | None = None, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the desk namespace with captured text output (never raises on exit)."""
        return desk.run_in_desk(self.desk_namespace, argv, timeout=timeout, input=input)

    def ssh_data(self) -> dict[str, Any]:
        """Host data for pyinfra's @ssh connector to log in to any lab host."""
        return desk.ssh_data(self.key_path)

    def inventory_hosts(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(name, underlay address, pyinfra ssh data) for every lab host."""
        return [(r.name, str(r.address), self.ssh_data()) for r in self.records()]

    # down -------------------------------------------------------------------------------

    def down(self, timeout: float = 30) -> None:
        """Stop every host, delete the namespaces and all state; keep the image and the SSH key.

        Works after a partial or failed ``up`` and without a state file at all.
        """
        require_host(["ip"])
        with self.state.lock():
            hosts: list[NspawnHost] = []
            if self.exists():
                with contextlib.suppress(LabError):
                    image = self.state.image
                    hosts = [self._host(rec, image) for rec in self.records()]
            if hosts:
                self.progress(f"powering off {len(hosts)} containers")
            for host in hosts:
                host.request_stop()
            deadline = time.monotonic() + timeout
            for host in hosts:
                host.finish_stop(max(0.0, deadline - time.monotonic()))
            self._sweep()
            # Everything in the state folder goes (upper layers, logs, whatever provisioning
            # kept there) except the lab SSH key and the lock we hold.
            if self.state_dir.is_dir():
                for child in sorted(self.state_dir.iterdir()):
                    if child.name not in _KEPT_ON_DOWN:
                        remove_tree(child)
            self.state.forget()
            self.progress("lab removed")

    def _sweep(self) -> None:
        """Remove every trace of a lab: stray containers, cgroups, namespaces, nspawn dirs."""
        sweep(self.underlay, self.cgroup_group, self.prefix)


__all__ = [
    "BOSS_BASE",
    "HUB_ADDRESS",
    "MAX_BOSSES",
    "MAX_WORKERS",
    "STATE_VERSION",
    "WORKER_BASE",
    "HostRecord",
    "HostStatus",
    "LabFarm",
    "Role",
    "stray_nspawns",
    "worker_name",
]
