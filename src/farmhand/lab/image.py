"""The lab's base image: one Debian tree that every lab container boots as a copy-on-write clone.

Lab containers have no internet, so the image carries apt's lists and the .deb files of every
package our deploys install (``OFFLINE_PACKAGES``); ``apt-get install`` then works offline.
The image is built in a temporary folder and renamed into place only when complete, and its
name carries a hash of the recipe, so a changed package list builds a new image and an
interrupted build never leaves a half image that looks finished.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from farmhand.lab.system import (
    lab_root,
    pids_using,
    process_argv,
    remove_tree,
    require_host,
    run,
    send_signal,
    wait_gone,
)

Progress = Callable[[str], None]
"""Receives one short line per build step (for a spinner or a log)."""

RECIPE_VERSION = 3
"""Bump when the build steps change, so cached images built the old way are not reused."""

MARKER = ".farmhand-image.json"
"""Written last inside a finished image: its presence means the image is complete."""

BASE_PACKAGES: tuple[str, ...] = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "iproute2",
    "iputils-ping",
    "procps",
    "python3",
    "sudo",
    "ca-certificates",
    "less",
)
"""Installed in the image: a systemd host that pyinfra can reach over SSH."""

OFFLINE_PACKAGES: tuple[str, ...] = (
    "nebula",
    "samba",
    "smbclient",
    "cifs-utils",
    "nftables",
    "openssh-server",
    "iperf3",
    "python3-venv",
    "python3-pip",
    "blender",  # the render queue's default renderer (a real frame in the lab tests)
    "file",  # Deadline's worker needs it (oomerfarm found it missing)
    # Slurm, the default render manager: the hub's controller, the workers' node, munge.
    "slurmctld",
    "slurmd",
    "slurm-client",
    "munge",
)
"""Downloaded (with dependencies and recommends) but not installed: what deploys may install.

Extend it with ``ImageSpec().with_offline(...)``; the image name changes with the list.
"""

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"

_CHROOT_ENV = {
    "DEBIAN_FRONTEND": "noninteractive",
    "LC_ALL": "C",
    "LANG": "C",
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
}

_SSH_HOSTKEYS_DROPIN = """\
# farmhand lab: each clone of the image makes its own SSH host keys on first boot.
# They must exist before the unit's own `sshd -t` check, hence the reset.
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
"""

_APT_OFFLINE_CONF = """\
// farmhand lab: containers have no internet; fail fast instead of retrying.
Acquire::Retries "0";
Acquire::http::Timeout "3";
Acquire::https::Timeout "3";
"""

_MASKED_UNITS = (
    # Would prompt for a locale on the console at first boot (the machine-id is empty on
    # purpose) and hold up boot forever: nobody answers a container's console.
    "systemd-firstboot.service",
    # Nothing to do in a container without disks; saves boot time and log noise.
    "e2scrub_reap.service",
)


@dataclass(frozen=True)
class ImageSpec:
    """What goes into the base image; its hash names the cached image."""

    suite: str = "bookworm"
    mirror: str = DEFAULT_MIRROR
    security_mirror: str | None = DEFAULT_SECURITY_MIRROR
    base_packages: tuple[str, ...] = BASE_PACKAGES
    offline_packages: tuple[str, ...] = OFFLINE_PACKAGES
    recipe: int = field(default=RECIPE_VERSION)

    def with_offline(self, *packages: str) -> ImageSpec:
        """This spec with more packages pre-seeded for offline installs."""
        extra = tuple(p for p in packages if p not in self.offline_packages)
        return replace(self, offline_packages=self.offline_packages + extra)

    @property
    def digest(self) -> str:
        """A short hash of everything that shapes the image."""
        data = asdict(self)
        data["base_packages"] = sorted(set(self.base_packages))
        data["offline_packages"] = sorted(set(self.offline_packages))
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @property
    def name(self) -> str:
        """Folder name of the cached image, e.g. ``bookworm-1a2b3c4d5e6f``."""
        return f"{self.suite}-{self.digest}"

    def sources_list(self) -> str:
        """apt sources for the image (the same the containers use later)."""
        lines = [
            f"deb {self.mirror} {self.suite} main",
            f"deb {self.mirror} {self.suite}-updates main",
        ]
        if self.security_mirror:
            lines.append(f"deb {self.security_mirror} {self.suite}-security main")
        return "\n".join(lines) + "\n"


def default_images_dir() -> Path:
    """Where cached images live unless told otherwise."""
    return lab_root() / "images"


def image_path(spec: ImageSpec | None = None, images_dir: Path | None = None) -> Path:
    """Where the image for ``spec`` lives (whether or not it is built)."""
    return (images_dir or default_images_dir()) / (spec or ImageSpec()).name


def image_is_complete(path: Path) -> bool:
    """True when ``path`` holds a finished image (its marker is written last)."""
    return (path / MARKER).is_file()


@contextlib.contextmanager
def _build_lock(images_dir: Path) -> Iterator[None]:
    """One build at a time per cache folder (two `lab up` at once must not race)."""
    images_dir.mkdir(parents=True, exist_ok=True)
    with (images_dir / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_base_image(
    progress: Progress | None = None,
    *,
    spec: ImageSpec | None = None,
    images_dir: Path | None = None,
) -> Path:
    """Return the cached base image for ``spec``, building it first if needed (2-3 minutes)."""
    spec = spec or ImageSpec()
    say = progress or (lambda _line: None)
    final = image_path(spec, images_dir)
    if image_is_complete(final):
        return final
    require_host(["debootstrap", "chroot"])
    with _build_lock(final.parent):
        if image_is_complete(final):  # another process built it while we waited
            return final
        _remove_stale_builds(final.parent, spec)
        work = final.parent / f".{final.name}.tmp-{os.getpid()}"
        log = final.parent / f"{final.name}.build.log"
        log.write_text("", encoding="utf-8")
        try:
            _build(work, spec, say, log)
            if final.exists():  # a damaged leftover without marker
                remove_tree(final)
            work.rename(final)
        except BaseException:
            remove_tree(work)
            raise
    say(f"base image ready: {final}")
    return final


def _remove_stale_builds(images_dir: Path, spec: ImageSpec) -> None:
    """Delete temporary folders left by interrupted builds (we hold the lock: none is live).

    A build killed hard can leave dpkg running in its chroot and /proc mounted inside it.
    """
    for leftover in images_dir.glob(f".{spec.suite}-*.tmp-*"):
        orphans = pids_using(leftover)
        if orphans:
            send_signal(orphans, signal.SIGKILL)
            wait_gone(orphans, 10)
        remove_tree(leftover)


def _chroot(root: Path, *argv: str, what: str, log: Path, timeout: float = 900) -> None:
    run(
        ["chroot", str(root), *argv],
        what=what,
        env=_CHROOT_ENV,
        log=log,
        timeout=timeout,
        die_with_parent=True,
    )


def _build(root: Path, spec: ImageSpec, say: Progress, log: Path) -> None:
    started = time.monotonic()
    say(f"building the {spec.suite} base image (debootstrap, about a minute)")
    run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(spec.base_packages)}",
            "--components=main",
            spec.suite,
            str(root),
            spec.mirror,
        ],
        what="debootstrap of the lab base image",
        log=log,
        timeout=1800,
        die_with_parent=True,
    )
    etc = root / "etc"
    (etc / "apt" / "sources.list").write_text(spec.sources_list(), encoding="utf-8")
    # apt in the chroot resolves the mirror with the host's resolver; removed again below.
    resolv = etc / "resolv.conf"
    resolv.unlink(missing_ok=True)
    shutil.copyfile("/etc/resolv.conf", resolv)

    # Keep maintainer scripts from starting services (sshd…) inside the build chroot.
    policy = root / "usr/sbin/policy-rc.d"
    _write_executable(policy, "#!/bin/sh\nexit 101\n")
    proc = root / "proc"
    run(["mount", "-t", "proc", "proc", str(proc)], what="mounting /proc in the image")
    try:
        say("apt-get update and upgrade inside the image (security fixes)")
        _chroot(root, "apt-get", "update", what="apt-get update in the lab image", log=log)
        _chroot(root, "apt-get", "-y", "upgrade", what="apt-get upgrade in the lab image", log=log)
        _chroot(root, "apt-get", "clean", what="apt-get clean in the lab image", log=log)
        say(f"downloading {len(spec.offline_packages)} packages and their dependencies")
        _chroot(
            root,
            "apt-get",
            "install",
            "--download-only",
            "-y",
            *spec.offline_packages,
            what="pre-seeding the lab image's apt cache",
            log=log,
        )
    finally:
        run(["umount", "-l", str(proc)], what="unmounting /proc in the image", check=False)
    policy.unlink()

    say("configuring the image (sshd, machine-id, root login)")
    _configure(root, log)
    debs = sorted(p.name for p in (root / "var/cache/apt/archives").glob("*.deb"))
    marker = {
        "spec": asdict(spec),
        "built_at": int(time.time()),
        "build_seconds": round(time.monotonic() - started, 1),
        "cached_debs": debs,
    }
    (root / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def _write_executable(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)


def _configure(root: Path, log: Path) -> None:
    etc = root / "etc"
    _chroot(root, "systemctl", "enable", "ssh.service", what="enabling sshd", log=log)
    _chroot(root, "systemctl", "mask", *_MASKED_UNITS, what="masking first-boot units", log=log)
    dropin = etc / "systemd/system/ssh.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "farmhand-lab-hostkeys.conf").write_text(_SSH_HOSTKEYS_DROPIN, encoding="utf-8")
    for key in (etc / "ssh").glob("ssh_host_*"):
        key.unlink()  # shared host keys would make every clone the same SSH host
    _chroot(root, "passwd", "--lock", "root", what="locking root's password", log=log)

    # An empty machine-id makes every clone generate its own at first boot.
    (etc / "machine-id").write_text("", encoding="utf-8")
    dbus_id = root / "var/lib/dbus/machine-id"
    dbus_id.parent.mkdir(parents=True, exist_ok=True)
    dbus_id.unlink(missing_ok=True)
    dbus_id.symlink_to("/etc/machine-id")

    (etc / "hostname").write_text("farmhand-lab\n", encoding="utf-8")
    (etc / "hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n", "utf-8")
    # No resolver inside: containers have no internet and must not try the host's one.
    (etc / "resolv.conf").write_text("# farmhand lab: no DNS\n", encoding="utf-8")
    (etc / "apt/apt.conf.d/90farmhand-lab").write_text(_APT_OFFLINE_CONF, encoding="utf-8")


def _in_use(path: Path) -> bool:
    """A container booted from ``path`` (its path is in nspawn's --overlay) or a chroot in it."""
    needle = str(path.resolve())
    if pids_using(path):
        return True
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and any(needle in arg for arg in process_argv(int(entry.name))):
            return True
    return False


def prune_images(keep: ImageSpec | None = None, images_dir: Path | None = None) -> list[Path]:
    """Remove cached images other than ``keep``'s, except those a running container uses.

    Every change to the image recipe or package list makes a new ~0.5 GB image; old ones are
    never used again.
    """
    images_dir = images_dir or default_images_dir()
    spec = keep or ImageSpec()
    kept = image_path(spec, images_dir).name
    removed: list[Path] = []
    if not images_dir.is_dir():
        return removed
    with _build_lock(images_dir):
        for candidate in sorted(images_dir.iterdir()):
            name = candidate.name.removesuffix(".build.log")
            if name == kept or not name.startswith(f"{spec.suite}-"):
                continue
            if candidate.is_dir() and (not image_is_complete(candidate) or _in_use(candidate)):
                continue
            if candidate.is_dir():
                remove_tree(candidate)
            else:
                candidate.unlink()
            removed.append(candidate)
    return removed
