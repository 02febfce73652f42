"""Pinned artifacts: checksums come from farm.toml, mismatches and gaps are one-line errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from farmhand.errors import UsageError
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
        assert artifact.cached == f"/srv/farmhand/farm/installers/{artifact.filename}"
        assert not artifact.sha256, "ship only checksums found published by the vendor"


def test_needed_follows_the_plan_and_the_distribution() -> None:
    keys = [x.key for x in needed(plan_with(), DEBIAN_12)]
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
