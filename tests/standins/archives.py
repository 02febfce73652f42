"""Pack the stand-ins into archives with the real artifacts' file names (tests only)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

from farmhand.model.distro import DEBIAN_12
from farmhand.queue import artifacts, deadline

HERE = Path(__file__).parent


def _add(tar: tarfile.TarFile, name: str, source: str, mode: int = 0o755) -> None:
    data = (HERE / source).read_bytes()
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 1_700_000_000
    tar.addfile(info, io.BytesIO(data))


def _pack(path: Path, members: list[tuple[str, str]]) -> str:
    buffer = io.BytesIO()
    mode = "w:gz" if path.name.endswith(("gz", ".tgz")) else "w"
    with tarfile.open(fileobj=buffer, mode=mode) as tar:  # type: ignore[call-overload]
        for name, source in members:
            _add(tar, name, source)
    path.write_bytes(buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def build(folder: Path) -> dict[str, str]:
    """Stand-in Deadline, MongoDB, mongosh and Flamenco archives; returns key -> sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    mongo, shell = artifacts.mongodb(DEBIAN_12), artifacts.mongosh(DEBIAN_12)
    mtop, stop = mongo.filename.removesuffix(".tgz"), shell.filename.removesuffix(".tgz")
    ftop = artifacts.FLAMENCO.filename.removesuffix(".tar.gz")
    return {
        "deadline": _pack(
            folder / artifacts.DEADLINE.filename,
            [
                (deadline.REPOSITORY_INSTALLER, "standin_deadline_installer.py"),
                (deadline.CLIENT_INSTALLER, "standin_deadline_installer.py"),
                ("standin_common.py", "standin_common.py"),
                ("standin_daemon.py", "standin_daemon.py"),
            ],
        ),
        "mongodb": _pack(
            folder / mongo.filename,
            [
                (f"{mtop}/bin/mongod", "standin_mongod.py"),
                (f"{mtop}/bin/standin_common.py", "standin_common.py"),
            ],
        ),
        "mongosh": _pack(
            folder / shell.filename,
            [
                (f"{stop}/bin/mongosh", "standin_mongosh.py"),
                (f"{stop}/bin/standin_common.py", "standin_common.py"),
            ],
        ),
        "flamenco": _pack(
            folder / artifacts.FLAMENCO.filename,
            [
                (f"{ftop}/flamenco-manager", "standin_daemon.py"),
                (f"{ftop}/flamenco-worker", "standin_daemon.py"),
                (f"{ftop}/standin_common.py", "standin_common.py"),
            ],
        ),
    }
