"""farmhand itself inside lab hosts: a wheelhouse built here, installed there without internet.

Lab containers have no internet, yet bootstrap, join and status run farmhand *on* the host.
``pip wheel`` on this machine (which reaches PyPI) builds farmhand's wheel and every dependency
once; hosts get the folder over ssh and install with ``--no-index``.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from farmhand.errors import LabError
from farmhand.lab.farm import LabFarm
from farmhand.lab.system import lab_root

REMOTE_WHEELHOUSE = "/var/cache/farmhand/wheelhouse"
REMOTE_VENV = "/opt/farmhand"
ON_PATH = "/usr/local/bin/farmhand"
_SOURCE_PARTS = ("pyproject.toml", "src", "deploys", "templates")


def _is_checkout(root: Path) -> bool:
    project = root / "pyproject.toml"
    return project.is_file() and 'name = "farmhand"' in project.read_text()


def project_root() -> Path:
    """The checkout farmhand runs from (the wheelhouse is built from source, not a wheel), or,
    for farmhand installed with ``pip install .`` (the README's first command), the checkout
    it is run in."""
    for root in (Path(__file__).resolve().parents[3], Path.cwd()):
        if _is_checkout(root):
            return root
    raise LabError(
        "farmhand lab builds farmhand for its hosts from a source checkout: run it from a clone"
        " of the farmhand repository"
    )


def source_digest(root: Path) -> str:
    """A hash of everything that goes into the wheel, so a changed tree gets a new wheel."""
    digest = hashlib.sha256()
    for part in _SOURCE_PARTS:
        path = root / part
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if "__pycache__" in file.parts:
                continue
            digest.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:12]


def build_wheelhouse(root: Path | None = None, cache: Path | None = None) -> Path:
    """A folder with farmhand's wheel and all its dependencies' wheels (cached by source hash)."""
    root = root or project_root()
    cache = cache or lab_root() / "wheelhouse"
    target = cache / source_digest(root)
    if (target / ".complete").exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two labs at once (parallel tests) build it once
        if (target / ".complete").exists():
            return target
        return _build(root, target)


def _build(root: Path, target: Path) -> Path:
    building = target.with_name(target.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
         "-w", str(building), str(root)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        reason = f": {detail[-1]}" if detail else ""
        raise LabError(f"building farmhand's wheelhouse failed{reason}")
    (building / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)
    building.rename(target)
    return target


def farmhand_wheel(wheelhouse: Path) -> Path:
    """farmhand's own wheel in ``wheelhouse``."""
    wheels = sorted(wheelhouse.glob("farmhand-*.whl"))
    if not wheels:
        raise LabError(f"{wheelhouse} holds no farmhand wheel")
    return wheels[-1]


def copy_wheelhouse(farm: LabFarm, name: str, wheelhouse: Path) -> str:
    """Copy ``wheelhouse`` to lab host ``name``; returns the folder there."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for wheel in sorted(wheelhouse.glob("*.whl")):
            tar.add(wheel, arcname=wheel.name)
    archive = f"{REMOTE_WHEELHOUSE}.tar"
    farm.exec(name, ["mkdir", "-p", REMOTE_WHEELHOUSE.rsplit("/", 1)[0]], check=True)
    farm.put(name, archive, raw.getvalue(), 0o644)
    where = REMOTE_WHEELHOUSE
    farm.exec(
        name,
        ["sh", "-c", f"rm -rf {where} && mkdir -p {where} && tar -x -C {where} -f {archive} "
         f"&& rm -f {archive}"],
        check=True,
    )  # fmt: skip
    return REMOTE_WHEELHOUSE


def install_farmhand(farm: LabFarm, name: str, wheelhouse: Path | None = None) -> str:
    """farmhand installed in a venv on lab host ``name`` from the wheelhouse; returns its path."""
    remote = copy_wheelhouse(farm, name, wheelhouse or build_wheelhouse())
    # From the image's seeded apt cache: lab hosts have no internet.
    farm.exec(
        name,
        ["sh", "-c", "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-download "
         "python3-venv >/dev/null"],
        check=True,
    )  # fmt: skip
    farm.exec(name, ["python3", "-m", "venv", REMOTE_VENV], check=True)
    farm.exec(
        name,
        [f"{REMOTE_VENV}/bin/pip", "install", "-q", "--disable-pip-version-check",
         "--no-index", "--find-links", remote, "farmhand"],
        check=True,
    )  # fmt: skip
    # On PATH, as `pip install` would put it on a laptop: `farmhand lab ssh boss1 farmhand ...`.
    farm.exec(name, ["ln", "-sfn", f"{REMOTE_VENV}/bin/farmhand", ON_PATH], check=True)
    return ON_PATH
