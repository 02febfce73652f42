"""Lab hosts: systemd-nspawn containers booted as copy-on-write clones of the base image.

Each host boots the image through ``--overlay=IMAGE:UPPER:/``: its own changes land in its upper
folder, the image is never written. The container joins the host's network namespace, so it
has exactly the underlay link ``net.py`` gave it. ssh from the desk namespace is the only way in,
as on a real farm, and is how we tell that a host is up.

On a host where systemd is not PID 1 (CI, many sandboxes) nspawn runs with ``--keep-unit`` and
would put every container in the same ``payload`` cgroup; each container's systemd would then
manage (and kill) the others' services. So each container gets its own cgroup, which also lets
``down`` find every process a container left.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from farmhand.errors import LabError
from farmhand.lab.net import NETNS_DIR, netns_argv
from farmhand.lab.system import (
    CGROUP_GROUP,
    cgroup_pids,
    lab_cgroups,
    log_tail,
    pid_alive,
    process_argv,
    remove_cgroup_tree,
    remove_tree,
    send_signal,
    systemd_is_init,
    terminate,
    wait_gone,
)

KEY_NAME = "id_ed25519"
# nspawn makes a folder here per machine and leaves it behind when it is killed.
PROPAGATION_ROOT = Path("/run/systemd/nspawn/propagate")
SSH_OPTIONS: tuple[str, ...] = (
    "-F", "/dev/null",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "GlobalKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
    "-o", "BatchMode=yes",
    "-o", "IdentitiesOnly=yes",
)  # fmt: skip
"""Lab hosts get fresh host keys on every `lab up`: never record or check them."""

_SUPERVISOR = """\
while [ "$1" != -- ]; do echo $$ > "$1/cgroup.procs" || exit 125; shift; done
shift
stop= child=
trap 'stop=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null' TERM INT
while :; do
    "$@" &
    child=$!
    while :; do
        wait "$child"; rc=$?
        kill -0 "$child" 2>/dev/null || break
    done
    if [ "$rc" -ne 133 ] || [ -n "$stop" ]; then
        echo "--- farmhand lab: systemd-nspawn exited with status $rc"
        exit "$rc"
    fi
    echo "--- farmhand lab: the container rebooted itself; booting it again"
done
"""
"""Runs systemd-nspawn for one host: joins the host's cgroups, passes SIGTERM on (a clean
poweroff) and boots again when the container reboots itself (nspawn exits 133 then, which is
what systemd-nspawn@.service's RestartForceExitStatus=133 does on a systemd host)."""


def ensure_lab_key(directory: Path) -> Path:
    """The lab's ed25519 SSH key (private key path), made once and kept 0600."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    private, public = directory / KEY_NAME, directory / f"{KEY_NAME}.pub"
    if private.is_file() and public.is_file():
        return private
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    openssh = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    tmp = directory / f".{KEY_NAME}.tmp"
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public.write_bytes(openssh + b" farmhand-lab\n")
    os.replace(tmp, private)
    return private


def _write(path: Path, text: str, mode: int) -> None:
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)


def _mkdir(path: Path, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)


@dataclass
class NspawnHost:
    """One lab container: how to boot, reach, stop and reboot it."""

    name: str
    address: IPv4Address
    """Where the desk reaches its sshd (for a NATed host: its router's WAN address)."""
    namespace: str
    image: Path
    state_dir: Path
    key: Path
    desk_namespace: str
    machine: str = ""
    """systemd-nspawn's machine name, unique on this machine (default: ``name``)."""
    cgroup_group: str = CGROUP_GROUP
    pid: int | None = None
    hostname: str = ""
    """Its hostname (default: ``name``); clones of one image may share one."""
    layers: tuple[Path, ...] = ()
    """Read-only layers between the image and the upper folder: a cloned host's disk."""

    def __post_init__(self) -> None:
        self.machine = self.machine or self.name
        self.hostname = self.hostname or self.name

    @property
    def upper(self) -> Path:
        """This host's copy-on-write layer: everything it changed since the image."""
        return self.state_dir / "upper"

    @property
    def log(self) -> Path:
        """The container's console output."""
        return self.state_dir / "console.log"

    # boot -------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Write the lab key and the hostname into the upper layer before boot."""
        public = self.key.with_name(self.key.name + ".pub").read_text(encoding="utf-8")
        _mkdir(self.state_dir, 0o700)
        _mkdir(self.upper, 0o755)
        _mkdir(self.upper / "root", 0o700)
        _mkdir(self.upper / "root/.ssh", 0o700)
        _write(self.upper / "root/.ssh/authorized_keys", public, 0o600)
        _mkdir(self.upper / "etc", 0o755)
        _write(self.upper / "etc/hostname", f"{self.hostname}\n", 0o644)
        hosts = (
            f"127.0.0.1\tlocalhost\n127.0.1.1\t{self.hostname}\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n"
        )
        _write(self.upper / "etc/hosts", hosts, 0o644)

    def nspawn_argv(self) -> list[str]:
        """The systemd-nspawn command line that boots this host."""
        for path in (self.image, *self.layers, self.upper):
            if ":" in str(path):
                raise LabError(f"lab paths cannot contain ':' (nspawn --overlay): {path}")
        argv = [
            "systemd-nspawn",
            "--quiet",
            "--boot",
            f"--directory={self.image}",
            f"--overlay={':'.join(map(str, (self.image, *self.layers, self.upper)))}:/",
            f"--machine={self.machine}",
            f"--hostname={self.hostname}",
            "--register=no",
            f"--network-namespace-path={NETNS_DIR / self.namespace}",
            "--bind=/dev/net/tun",
            # Nebula makes its tun device and the host firewall loads nft rules: both need
            # CAP_NET_ADMIN, which nspawn withholds for a namespace it did not create.
            "--capability=CAP_NET_ADMIN",
            "--console=read-only",
            "--resolv-conf=off",
            "--timezone=off",
            "--link-journal=no",
        ]
        if not systemd_is_init():
            argv.insert(argv.index("--register=no") + 1, "--keep-unit")
        return argv

    def _prepare_cgroups(self) -> list[Path]:
        if systemd_is_init():
            return []  # nspawn asks systemd for a scope of its own
        paths = lab_cgroups(self.machine, self.cgroup_group)
        leftovers = cgroup_pids(paths)
        if leftovers:
            send_signal(leftovers, signal.SIGKILL)
            wait_gone(leftovers, 10)
        for path in paths:
            remove_cgroup_tree(path)
            path.mkdir(parents=True, exist_ok=True)
        return paths

    def start(self) -> int:
        """Boot the container detached; return its supervisor's pid (does not wait for ssh)."""
        if self.running():
            return self.pid or 0
        self.prepare()
        self._remove_propagation_folder()
        cgroups = self._prepare_cgroups()
        argv = ["/bin/sh", "-c", _SUPERVISOR, "sh", *map(str, cgroups), "--", *self.nspawn_argv()]
        with self.log.open("ab") as log:
            log.write(f"\n--- farmhand lab: starting {self.name} at {time.ctime()}\n".encode())
            log.flush()
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        self.pid = process.pid
        (self.state_dir / "nspawn.pid").write_text(f"{process.pid}\n", encoding="utf-8")
        return process.pid

    def running(self) -> bool:
        """True while this host's supervisor (and so its container) is alive."""
        if not self.pid or not pid_alive(self.pid):
            return False
        argv = process_argv(self.pid)
        return f"--machine={self.machine}" in argv and any("systemd-nspawn" in a for a in argv)

    # stop -------------------------------------------------------------------------------

    def nspawn_pids(self) -> list[int]:
        """systemd-nspawn processes running this host's machine (found by command line)."""
        marker = f"--machine={self.machine}"
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                argv = process_argv(int(entry.name))
                if argv and argv[0].endswith("systemd-nspawn") and marker in argv:
                    found.append(int(entry.name))
        return found

    def request_stop(self) -> None:
        """Ask for a clean poweroff: systemd-nspawn turns SIGTERM into one for the container."""
        if self.running() and self.pid:
            send_signal([self.pid], signal.SIGTERM)

    def finish_stop(self, timeout: float = 30) -> None:
        """Wait for the poweroff; then kill whatever is left of the container."""
        if self.pid and self.running():
            terminate([self.pid], timeout)
        elif self.pid:
            wait_gone([self.pid], 0)  # reap a zombie child
        strays = self.nspawn_pids()  # the supervisor was killed, or never recorded
        if strays:
            send_signal(strays, signal.SIGKILL)
            wait_gone(strays, 10)
        cgroups = [] if systemd_is_init() else lab_cgroups(self.machine, self.cgroup_group)
        leftovers = cgroup_pids(cgroups)
        if leftovers:
            send_signal(leftovers, signal.SIGKILL)
            wait_gone(leftovers, 10)
        for path in cgroups:
            remove_cgroup_tree(path)
        self._remove_propagation_folder()
        self.pid = None
        (self.state_dir / "nspawn.pid").unlink(missing_ok=True)

    def _remove_propagation_folder(self) -> None:
        """Remove the folder nspawn leaves behind when it is killed: on a /run that is not tmpfs
        the next nspawn for this machine refuses to boot while it exists."""
        if self.nspawn_pids():
            return
        with contextlib.suppress(OSError):
            (PROPAGATION_ROOT / self.machine).rmdir()

    def poweroff(self, timeout: float = 60) -> None:
        """A clean poweroff from inside (``systemctl poweroff``), as a user or a provider's panel
        does it: every unit's stop runs, however long it takes. (``stop`` re-sends SIGTERM and
        nspawn takes a second one as "kill it now".)"""
        if not self.running():
            return
        try:
            self.exec(["systemctl", "poweroff", "--no-block"], timeout=30)
        except subprocess.TimeoutExpired:
            self.request_stop()
        deadline = time.monotonic() + timeout
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.2)
        self.finish_stop(5)

    def kill(self) -> None:
        """Pull the plug: SIGKILL the container at once, no shutdown runs inside it."""
        pids = [p for p in (self.pid,) if p and self.running()] + self.nspawn_pids()
        if pids:
            send_signal(pids, signal.SIGKILL)
        self.finish_stop(0)

    def stop(self, timeout: float = 30) -> None:
        """Power the container off (gracefully, then by force after ``timeout`` seconds).

        When its sshd answers, from inside (``poweroff``), so that every unit's stop runs to the
        end; otherwise (still booting) by signal."""
        if self.running() and self.ssh_ready():
            self.poweroff(timeout)
            return
        self.request_stop()
        self.finish_stop(timeout)

    def wipe(self) -> None:
        """Forget everything the (stopped) host changed: it boots next as a fresh clone."""
        if self.running():
            raise LabError(f"stop lab host {self.name} before wiping it")
        remove_tree(self.state_dir)

    def reboot(self, timeout: float = 90) -> None:
        """Power off and boot again with the same upper layer; wait until ssh answers."""
        self.stop()
        self.start()
        self.wait_for_ssh(timeout)

    # reach ------------------------------------------------------------------------------

    def ssh_argv(self, argv: Sequence[str], *, connect_timeout: int = 5) -> list[str]:
        """ssh from the desk namespace running ``argv`` (quoted for the remote shell) as root."""
        return netns_argv(
            self.desk_namespace,
            [
                "ssh", "-i", str(self.key), *SSH_OPTIONS,
                "-o", f"ConnectTimeout={connect_timeout}",
                f"root@{self.address}", "--", shlex.join(argv),
            ],
        )  # fmt: skip

    def exec(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout: float | None = 300,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` on the host over ssh from the desk; text output is captured."""
        result = subprocess.run(
            self.ssh_argv(argv),
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise LabError(
                f"{self.name}: `{' '.join(argv)}` failed (exit {result.returncode})"
                + (f": {detail[-1]}" if detail else "")
            )
        return result

    def put(self, path: str, data: bytes, mode: int = 0o600, timeout: float = 300) -> None:
        """Write ``data`` to ``path`` on the host through ssh's stdin (never in a command line:
        bundles and passphrases travel this way), created with ``mode`` from the start."""
        script = (
            f"umask 077 && cat > {shlex.quote(path)}.new && chmod {mode:o} {shlex.quote(path)}.new"
            f" && mv -f {shlex.quote(path)}.new {shlex.quote(path)}"
        )
        result = subprocess.run(
            self.ssh_argv(["sh", "-c", script]),
            input=data, capture_output=True, timeout=timeout, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise LabError(f"{self.name}: writing {path} failed: {result.stderr.decode().strip()}")

    def ssh_ready(self, timeout: float = 5) -> bool:
        """True when sshd answers and accepts the lab key."""
        try:
            result = subprocess.run(
                self.ssh_argv(["true"], connect_timeout=2),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False
        return result.returncode == 0

    def wait_for_ssh(self, timeout: float = 90) -> None:
        """Poll until sshd answers; fail with the end of the console log if it never does."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running():
                raise LabError(
                    f"lab host {self.name} stopped while booting; end of {self.log}:\n"
                    + log_tail(self.log)
                )
            if self.ssh_ready():
                return
            if time.monotonic() >= deadline:
                raise LabError(
                    f"lab host {self.name} did not answer ssh on {self.address} within "
                    f"{timeout:.0f} s; end of {self.log}:\n" + log_tail(self.log)
                )
            time.sleep(0.5)
