"""Pinned artifacts: checksums come from farm.toml, mismatches and gaps are one-line errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from farmhand import artifacts as a
from farmhand.distro import DEBIAN_12, Distro, Family
from farmhand.errors import UsageError
from farmhand.keystore.plan import new_plan

ALMA9 = Distro("almalinux", 9, Family.EL)


def plan_with(**settings: object):  # type: ignore[no-untyped-def]
    return new_plan("farm").with_settings(**settings)


def test_every_artifact_is_pinned_with_an_official_https_url() -> None:
    for artifact in (*a.needed(plan_with(), ALMA9), a.FLAMENCO, a.BELLA, a.BLENDER):
        assert artifact.url.startswith("https://")
        assert artifact.url.endswith(artifact.filename)
        assert artifact.version in artifact.filename
        assert artifact.cached == f"/srv/farmhand/farm/installers/{artifact.filename}"
        assert not artifact.sha256, "ship only checksums found published by the vendor"


def test_needed_follows_the_plan_and_the_distribution() -> None:
    keys = [x.key for x in a.needed(plan_with(), DEBIAN_12)]
    assert keys == ["deadline", "mongodb", "mongosh"]  # Blender from Debian's package
    assert [x.key for x in a.needed(plan_with(render_manager="flamenco"), ALMA9)] == [
        "flamenco",
        "blender",
    ]
    assert [x.key for x in a.needed(plan_with(renderer="bella"), DEBIAN_12)][-1] == "bella"
    assert "rhel90" in a.mongodb(ALMA9).filename
    assert "ubuntu2204" in a.mongodb(DEBIAN_12).filename


def test_a_missing_checksum_names_the_file_and_the_key() -> None:
    with pytest.raises(a.ArtifactError) as info:
        a.sha256_for(plan_with(), a.DEADLINE)
    message = str(info.value)
    assert a.DEADLINE.filename in message
    assert "[artifacts.deadline]" in message
    assert "farm.toml" in message
    assert "\n" not in message
    # A bad checksum is refused where farm.toml is read, before any deploy asks for it.
    with pytest.raises(UsageError, match=r'sha256 = "abc": expected a sha256: 64 hex digits'):
        a.sha256_for(plan_with(artifacts={"deadline": {"sha256": "abc"}}), a.DEADLINE)
    good = "ab" * 32
    assert a.sha256_for(plan_with(artifacts={"deadline": {"sha256": good.upper()}}), a.DEADLINE)


def test_sources_official_folder_or_url() -> None:
    assert a.source_for(a.FLAMENCO, None) == a.FLAMENCO.url
    assert a.source_for(a.FLAMENCO, "/x") == f"/x/{a.FLAMENCO.filename}"
    assert a.source_for(a.FLAMENCO, "https://m/a/") == f"https://m/a/{a.FLAMENCO.filename}"


def test_local_files_are_checked(tmp_path: Path) -> None:
    path = tmp_path / a.FLAMENCO.filename
    with pytest.raises(a.ArtifactError, match="is missing: download"):
        a.verify_local(a.FLAMENCO, path, "0" * 64)
    path.write_bytes(b"stand-in")
    a.verify_local(a.FLAMENCO, path, hashlib.sha256(b"stand-in").hexdigest())
    with pytest.raises(a.ArtifactError, match=r"does not match the sha256 .* --artifacts"):
        a.verify_local(a.FLAMENCO, path, "0" * 64)
