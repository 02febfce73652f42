"""The lab farm: a hub, N workers and a boss as containers on one Linux machine.

``LabFarm`` wires the image, the underlay and the containers together and remembers what it
made in ``lab.json``, written before anything is created, so ``down()`` can always undo a
partial or failed ``up()``. ``down()`` also sweeps by name (namespaces ``fhlab-*``, the lab's
cgroups, nspawn processes bound to lab namespaces), so even a lost state file leaves nothing
behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Literal

from farmhand.errors import LabError
from farmhand.lab.image import ImageSpec, Progress, ensure_base_image
from farmhand.lab.net import (
    DESK_ADDRESS,
    NETNS_DIR,
    PREFIX,
    UNDERLAY,
    NatRouter,
    Underlay,
    netns_argv,
)
from farmhand.lab.nspawn import NspawnHost, ensure_lab_key
from farmhand.lab.system import (
    all_lab_cgroups,
    cgroup_pids,
    lab_root,
    process_argv,
    remove_lab_cgroup_group,
    remove_tree,
    require_host,
    send_signal,
    terminate,
    wait_gone,
)

Role = Literal["hub", "worker", "boss"]

STATE_VERSION = 1
HUB_ADDRESS = UNDERLAY.network_address + 10
BOSS_BASE = UNDERLAY.network_address + 20
WORKER_BASE = UNDERLAY.network_address + 100
MAX_WORKERS = 150
MAX_BOSSES = 9
_KEPT_ON_DOWN = frozenset({"ssh", ".lock"})
_UP_TOOLS = ("debootstrap", "chroot", "systemd-nspawn", "ip", "ssh")


def worker_name(number: int) -> str:
    """``worker0007``: the name (and certificate) of the 7th worker."""
    return f"worker{number:04d}"


@dataclass(frozen=True)
class HostRecord:
    """What the lab knows about one host; persisted in lab.json."""

    name: str
    role: Role
    address: IPv4Address
    """Underlay address the desk reaches it on (a NATed host's router WAN address)."""
    pid: int | None = None
    nat_lan: int | None = None
    """Index of the NAT router LAN it sits behind, or None when plugged straight in."""
    hostname: str = ""
    """Its hostname when that is not its lab name (clones: several may share one)."""
    clone_of: str = ""
    """The (stopped) host whose disk this one boots as a copy-on-write clone."""

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        data = asdict(self)
        data["address"] = str(self.address)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HostRecord:
        """Inverse of ``to_json``."""
        return cls(
            name=str(data["name"]),
            role=data["role"],
            address=IPv4Address(data["address"]),
            pid=data.get("pid"),
            nat_lan=data.get("nat_lan"),
            hostname=str(data.get("hostname") or ""),
            clone_of=str(data.get("clone_of") or ""),
        )


@dataclass(frozen=True)
class HostStatus:
    """One line of ``lab status``."""

    name: str
    role: Role
    address: IPv4Address
    pid: int | None
    running: bool
    ssh: bool
    behind_nat: bool


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
        self._state: dict[str, Any] | None = None

    # state ------------------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        """The lab's record of what it created."""
        return self.state_dir / "lab.json"

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
        return self.state_file.is_file()

    def _load(self) -> dict[str, Any]:
        if self._state is None:
            if not self.exists():
                raise LabError("no lab is up: run `farmhand lab up` first")
            try:
                self._state = json.loads(self.state_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise LabError(f"cannot read the lab state {self.state_file}: {exc}") from exc
        return self._state

    def _save(self) -> None:
        state = self._load()
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.state_file)

    def records(self) -> list[HostRecord]:
        """Every host of the lab, hub first, then workers, then bosses."""
        return [HostRecord.from_json(h) for h in self._load()["hosts"]]

    def record(self, name: str) -> HostRecord:
        """The record of host ``name``."""
        for rec in self.records():
            if rec.name == name:
                return rec
        raise LabError(f"the lab has no host {name!r}")

    def _update(self, rec: HostRecord) -> None:
        state = self._load()
        state["hosts"] = [rec.to_json() if h["name"] == rec.name else h for h in state["hosts"]]
        self._save()

    def _host(self, rec: HostRecord, image: Path | None = None) -> NspawnHost:
        layers = (self.state_dir / "hosts" / rec.clone_of / "upper",) if rec.clone_of else ()
        return NspawnHost(
            hostname=rec.hostname,
            layers=layers,
            name=rec.name,
            address=rec.address,
            namespace=self.underlay.host_namespace(rec.name),
            image=image or Path(self._load()["image"]),
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

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """One up/down at a time on this machine."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with (self.state_dir / ".lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # plan -------------------------------------------------------------------------------

    @staticmethod
    def plan(workers: int, bosses: int, behind_nat: Sequence[str]) -> list[HostRecord]:
        """Names, roles and addresses of a lab with ``workers`` workers and ``bosses`` bosses."""
        if not 0 <= workers <= MAX_WORKERS:
            raise LabError(f"the lab runs 0 to {MAX_WORKERS} workers, not {workers}")
        if not 0 <= bosses <= MAX_BOSSES:
            raise LabError(f"the lab runs 0 to {MAX_BOSSES} bosses, not {bosses}")
        hosts = [HostRecord("hub", "hub", HUB_ADDRESS)]
        hosts += [
            HostRecord(worker_name(n), "worker", WORKER_BASE + n) for n in range(1, workers + 1)
        ]
        hosts += [HostRecord(f"boss{n}", "boss", BOSS_BASE + n - 1) for n in range(1, bosses + 1)]
        names = [h.name for h in hosts]
        for index, name in enumerate(behind_nat):
            if name not in names:
                raise LabError(f"cannot put {name!r} behind NAT: the lab has no such host")
            if name == "hub":
                raise LabError("the hub cannot sit behind NAT: it is the farm's public address")
            hosts[names.index(name)] = HostRecord(
                name, hosts[names.index(name)].role, hosts[names.index(name)].address, None, index
            )
        return hosts

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
        with self._lock():
            if self.exists():
                names = ", ".join(r.name for r in self.records())
                raise LabError(f"a lab is already up ({names}): run `farmhand lab down` first")
            if self._leftovers():
                self.progress("removing what an earlier lab left behind")
                self._sweep()
            image = ensure_base_image(self.progress, spec=self.spec, images_dir=self.images_dir)
            ensure_lab_key(self.key_path.parent)
            self._state = {
                "version": STATE_VERSION,
                "image": str(image),
                "key": str(self.key_path),
                "desk": {"namespace": self.desk_namespace, "address": str(DESK_ADDRESS)},
                "created_at": int(time.time()),
                "hosts": [r.to_json() for r in records],
            }
            self._save()

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
                self._update(replace(rec, pid=host.pid))
                hosts.append(host)
            with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
                for future in [pool.submit(h.wait_for_ssh, boot_timeout) for h in hosts]:
                    future.result()
            self.progress(f"all {len(hosts)} hosts answer ssh ({time.monotonic() - started:.1f} s)")
            return self.records()

    def _plug(self, rec: HostRecord) -> NatRouter | None:
        if rec.nat_lan is None:
            self.underlay.add_host(rec.name, rec.address)
            return None
        hub = self.record("hub").address
        return self.underlay.put_behind_nat(
            rec.name, rec.address, lan_index=rec.nat_lan, allow_udp_with=[hub]
        )

    def put_behind_nat(self, name: str) -> NatRouter:
        """Move a (running) host behind its own NAT router; see ``Underlay.put_behind_nat``."""
        require_host(["ip", "nft"])
        rec = self.record(name)
        if rec.role == "hub":
            raise LabError("the hub cannot sit behind NAT: it is the farm's public address")
        if rec.nat_lan is None:
            used = {r.nat_lan for r in self.records() if r.nat_lan is not None}
            lan = min(set(range(len(used) + 1)) - used)
            rec = replace(rec, nat_lan=lan)
            self._update(rec)
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
        self._update(replace(rec, pid=None))
        host.start()
        self._update(replace(rec, pid=host.pid))
        host.wait_for_ssh(timeout)

    def reset(self, name: str, timeout: float = 120) -> None:
        """Throw away everything host ``name`` changed and boot it as a fresh clone."""
        rec = self.record(name)
        host = self._host(rec)
        host.stop()
        self._update(replace(rec, pid=None))
        host.wipe()
        self.start(name, timeout)

    def stop(self, name: str) -> None:
        """Power host ``name`` off (its disk stays; ``start`` boots it again)."""
        rec = self.record(name)
        self._host(rec).stop()
        self._update(replace(rec, pid=None))

    def start(self, name: str, timeout: float = 120) -> None:
        """Boot a stopped host ``name``; wait for ssh."""
        rec = self.record(name)
        host = self._host(rec)
        host.start()
        self._update(replace(rec, pid=host.pid))
        host.wait_for_ssh(timeout)

    def poweroff(self, name: str, timeout: float = 60) -> None:
        """Shut host ``name`` down cleanly from inside and wait until it is off."""
        rec = self.record(name)
        self._host(rec).poweroff(timeout)
        self._update(replace(rec, pid=None))

    def kill(self, name: str) -> None:
        """Pull the plug on host ``name``: no clean shutdown (a terminated spot instance)."""
        rec = self.record(name)
        self._host(rec).kill()
        self._update(replace(rec, pid=None))

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
        with self._lock():
            state = self._load()
            taken = {r.name for r in self.records()}
            used = {int(r.address) for r in self.records()}
            records = []
            for name, hostname in clones:
                if name in taken:
                    raise LabError(f"the lab already has a host {name!r}")
                address = next(
                    a
                    for a in range(int(WORKER_BASE) + 1, int(UNDERLAY.broadcast_address))
                    if a not in used
                )
                used.add(address)
                records.append(
                    HostRecord(
                        name, base.role, IPv4Address(address), hostname=hostname, clone_of=source
                    )
                )
            state["hosts"] += [r.to_json() for r in records]
            self._save()
            for rec in records:
                self._plug(rec)
            started: dict[str, float] = {}
            hosts = []
            for rec in records:
                host = self._host(rec)
                started[rec.name] = time.monotonic()
                host.start()
                self._update(replace(rec, pid=host.pid))
                hosts.append(host)
        if wait:
            with ThreadPoolExecutor(max_workers=min(16, len(hosts) or 1)) as pool:
                for future in [pool.submit(h.wait_for_ssh, boot_timeout) for h in hosts]:
                    future.result()
        return started

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
        return netns_argv(self.desk_namespace, argv)

    def run_in_desk(
        self, argv: Sequence[str], *, timeout: float | None = None, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the desk namespace with captured text output (never raises on exit)."""
        return subprocess.run(
            self.desk_argv(argv),
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ssh_data(self) -> dict[str, Any]:
        """Host data for pyinfra's @ssh connector to log in to any lab host."""
        return {
            "ssh_user": "root",
            "ssh_key": str(self.key_path),
            "ssh_known_hosts_file": "/dev/null",
            "ssh_strict_host_key_checking": "off",
        }

    def inventory_hosts(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(name, underlay address, pyinfra ssh data) for every lab host."""
        return [(r.name, str(r.address), self.ssh_data()) for r in self.records()]

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

    # down -------------------------------------------------------------------------------

    def down(self, timeout: float = 30) -> None:
        """Stop every host, delete the namespaces and all state; keep the image and the SSH key.

        Works after a partial or failed ``up`` and without a state file at all.
        """
        require_host(["ip"])
        with self._lock():
            hosts: list[NspawnHost] = []
            if self.exists():
                with contextlib.suppress(LabError):
                    image = Path(self._load()["image"])
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
            self._state = None
            self.progress("lab removed")

    def _stray_nspawns(self) -> list[int]:
        """systemd-nspawn processes attached to a lab namespace (found even without state)."""
        marker = f"--network-namespace-path={NETNS_DIR}/{self.underlay.prefix}-"
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                argv = process_argv(int(entry.name))
                if any(a.startswith(marker) for a in argv) and any(
                    "systemd-nspawn" in a for a in argv
                ):
                    found.append(int(entry.name))
        return found

    def _leftovers(self) -> bool:
        return bool(
            self.underlay.namespaces()
            or all_lab_cgroups(self.cgroup_group)
            or self._stray_nspawns()
        )

    def _sweep(self) -> None:
        """Remove every trace of a lab: stray containers, cgroups, namespaces, nspawn dirs."""
        terminate(self._stray_nspawns(), 20)
        leftovers = cgroup_pids(all_lab_cgroups(self.cgroup_group))
        if leftovers:
            send_signal(leftovers, signal.SIGKILL)
            wait_gone(leftovers, 10)
        remove_lab_cgroup_group(self.cgroup_group)
        self.underlay.teardown()
        # nspawn leaves an empty propagation folder per machine when it is killed.
        for folder in Path("/run/systemd/nspawn/propagate").glob(f"{self.prefix}-*"):
            with contextlib.suppress(OSError):
                folder.rmdir()
