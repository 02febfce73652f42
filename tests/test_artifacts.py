"""Pinned artifacts: checksums come from farm.toml, mismatches and gaps are one-line errors."""

from __future__ import annotations

import hashlib
import http.server
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from farmhand.errors import UsageError
from farmhand.hostfiles.base import expand_template
from farmhand.keystore.plan import new_plan
from farmhand.model.distro import DEBIAN_12, Distro, Family
from farmhand.queue import artifacts, needed

ALMA9 = Distro("almalinux", 9, Family.EL)


def plan_with(**settings: object):  # type: ignore[no-untyped-def]
    return new_plan("farm").with_settings(**settings)


def test_every_artifact_is_pinned_with_an_official_https_url() -> None:
    for artifact in (
        *needed(plan_with(), ALMA9),
        artifacts.FLAMENCO,
        artifacts.BELLA,
        artifacts.BLENDER,
    ):
        assert artifact.url.startswith("https://")
        assert artifact.url.endswith(artifact.filename)
        assert artifact.version in artifact.filename
        # The hub's cache is root's, outside the shares; workers read root's published copy.
        assert artifact.cached == f"/var/lib/farmhand/installers/{artifact.filename}"
        assert artifact.published == f"/srv/farmhand/installers/{artifact.filename}"
        assert artifact.local == f"/var/lib/farmhand/artifacts/{artifact.filename}"
        # A shipped checksum has two independent sources named; else it is the user's.
        assert bool(artifact.sha256) == (len(artifact.checksum_sources) >= 2), artifact.key
    assert artifacts.BLENDER.sha256  # two sources agree on the official Blender's
    assert artifacts.sha256_for(plan_with(), artifacts.BLENDER) == artifacts.BLENDER.sha256
    own = "cd" * 32  # farm.toml's wins: the user's own build of that file
    mine = plan_with(artifacts={"blender": {"sha256": own}})
    assert artifacts.sha256_for(mine, artifacts.BLENDER) == own


def test_deadline_is_supplied_by_the_user_who_is_told_where_to_get_it() -> None:
    assert artifacts.DEADLINE.url == ""
    with pytest.raises(artifacts.ArtifactError) as info:
        artifacts.source_for(artifacts.DEADLINE, None)
    message = str(info.value)
    assert "\n" not in message
    assert "AWS console" in message
    assert artifacts.DEADLINE.filename in message
    assert "--artifacts FOLDER" in message
    assert artifacts.source_for(artifacts.DEADLINE, "/x") == f"/x/{artifacts.DEADLINE.filename}"


def test_needed_follows_the_plan_and_the_distribution() -> None:
    # Slurm, the default, comes from the distribution: on Debian nothing to download at all.
    assert [x.key for x in needed(plan_with(), DEBIAN_12)] == []
    assert [x.key for x in needed(plan_with(), ALMA9)] == ["blender"]
    keys = [x.key for x in needed(plan_with(render_manager="deadline"), DEBIAN_12)]
    assert keys == ["deadline", "mongodb", "mongosh"]  # Blender from Debian's package
    assert [x.key for x in needed(plan_with(render_manager="flamenco"), ALMA9)] == [
        "flamenco",
        "blender",
    ]
    assert [x.key for x in needed(plan_with(renderer="bella"), DEBIAN_12)][-1] == "bella"
    assert "rhel90" in artifacts.mongodb(ALMA9).filename
    assert "ubuntu2204" in artifacts.mongodb(DEBIAN_12).filename


def test_a_missing_checksum_names_the_file_and_the_key() -> None:
    with pytest.raises(artifacts.ArtifactError) as info:
        artifacts.sha256_for(plan_with(), artifacts.DEADLINE)
    message = str(info.value)
    assert artifacts.DEADLINE.filename in message
    assert "[artifacts.deadline]" in message
    assert "farm.toml" in message
    assert "\n" not in message
    # A bad checksum is refused where farm.toml is read, before any deploy asks for it.
    with pytest.raises(UsageError, match=r'sha256 = "abc": expected a sha256: 64 hex digits'):
        artifacts.sha256_for(
            plan_with(artifacts={"deadline": {"sha256": "abc"}}), artifacts.DEADLINE
        )
    good = "ab" * 32
    assert artifacts.sha256_for(
        plan_with(artifacts={"deadline": {"sha256": good.upper()}}), artifacts.DEADLINE
    )


def test_sources_official_folder_or_url() -> None:
    assert artifacts.source_for(artifacts.FLAMENCO, None) == artifacts.FLAMENCO.url
    assert artifacts.source_for(artifacts.FLAMENCO, "/x") == f"/x/{artifacts.FLAMENCO.filename}"
    assert (
        artifacts.source_for(artifacts.FLAMENCO, "https://m/a/")
        == f"https://m/a/{artifacts.FLAMENCO.filename}"
    )


def test_local_files_are_checked(tmp_path: Path) -> None:
    path = tmp_path / artifacts.FLAMENCO.filename
    with pytest.raises(artifacts.ArtifactError, match="is missing: download"):
        artifacts.verify_local(artifacts.FLAMENCO, path, "0" * 64)
    path.write_bytes(b"stand-in")
    artifacts.verify_local(artifacts.FLAMENCO, path, hashlib.sha256(b"stand-in").hexdigest())
    with pytest.raises(artifacts.ArtifactError, match=r"does not match the sha256 .* --artifacts"):
        artifacts.verify_local(artifacts.FLAMENCO, path, "0" * 64)


# ------------------------------------------------------------------------------------------------
# The fetcher (templates/queue/fetch-artifact.py.j2), expanded and run for real
# ------------------------------------------------------------------------------------------------

GOOD = b"a stand-in installer\n"
GOOD_SHA = hashlib.sha256(GOOD).hexdigest()


@pytest.fixture(scope="module")
def fetcher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    script = tmp_path_factory.mktemp("fetcher") / "fetch-artifact"
    script.write_bytes(expand_template("queue/fetch-artifact.py.j2", etc="/etc/farmhand"))
    return script


def fetch(
    fetcher: Path, source: str, dest: Path, sha256: str = GOOD_SHA
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(fetcher), source, str(dest), sha256, "deadline"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A loopback HTTP server over ``tmp_path/www`` (the hub's download)."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "good.tar").write_bytes(GOOD)
    (root / "bad.tar").write_bytes(b"not what was pinned\n")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_the_fetcher_keeps_only_a_checked_copy_in_a_folder_of_its_own(
    fetcher: Path, served: str, tmp_path: Path
) -> None:
    dest = tmp_path / "cache" / "installer.tar"
    result = fetch(fetcher, f"{served}/good.tar", dest)
    assert result.returncode == 0, result.stderr
    assert dest.read_bytes() == GOOD
    # The folder it made is its own and nobody else's; the copy is its own, 0600.
    assert stat.S_IMODE(dest.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert dest.stat().st_uid == os.geteuid()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["installer.tar"]
    # A local source (the hub's --artifacts upload) goes the same way.
    local = tmp_path / "cache" / "local.tar"
    assert fetch(fetcher, str(tmp_path / "www" / "good.tar"), local).returncode == 0
    assert local.read_bytes() == GOOD


def test_the_fetcher_refuses_a_mismatch_and_leaves_nothing(
    fetcher: Path, served: str, tmp_path: Path
) -> None:
    dest = tmp_path / "cache" / "installer.tar"
    result = fetch(fetcher, f"{served}/bad.tar", dest)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "does not match the sha256 pinned as [artifacts.deadline]" in lines[0]
    assert list(dest.parent.iterdir()) == [], "no partial file, no copy"
    # A copy already in place that no longer matches is replaced by a checked one.
    dest.write_bytes(b"changed behind our back\n")
    assert fetch(fetcher, f"{served}/good.tar", dest).returncode == 0
    assert dest.read_bytes() == GOOD


def test_the_fetcher_refuses_a_folder_others_can_write(
    fetcher: Path, served: str, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # like the farm share's old installers folder: anyone could swap files
    result = fetch(fetcher, f"{served}/good.tar", shared / "installer.tar")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"farmhand: {shared} is not a folder only this user can write: refusing to fetch into it"
    )
    assert list(shared.iterdir()) == []


def test_the_fetcher_never_follows_a_planted_partial_file(
    fetcher: Path, served: str, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_bytes(b"root's other file\n")
    (cache / "installer.tar.part").symlink_to(victim)
    assert fetch(fetcher, f"{served}/good.tar", cache / "installer.tar").returncode == 0
    assert victim.read_bytes() == b"root's other file\n"
    assert (cache / "installer.tar").read_bytes() == GOOD
    assert not (cache / "installer.tar.part").exists()
