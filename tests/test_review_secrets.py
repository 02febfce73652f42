"""Secrets stay out of review trees and out of what a deploy runs (issue #11, item 9).

``farmhand files`` writes keys and passwords only with ``--with-secrets``, and then into a
folder of the caller's own, 0700. The deploy engine gets the passphrase on stdin: nothing it
runs (apt's maintainer scripts, installers on @local) sees it in its environment.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from farmhand.deploy import runner
from farmhand.deploy.tasks import context
from farmhand.passphrase import ENV_VAR
from support.cli import PASSPHRASE, WITH_PASSPHRASE, assert_cli_error, run_cli
from support.session import Farm

BUNDLE = "hub.keybundle.age"


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_review_tree_holds_no_secret_unless_asked(farm: Farm, tmp_path: Path) -> None:
    out = tmp_path / "review"
    result = run_cli("files", "hub", "--bundle", farm.root / BUNDLE, "--out", out,
                     env=WITH_PASSPHRASE)  # fmt: skip
    assert result.returncode == 0, result.stderr
    written = tree(out)
    assert written, "nothing was written"
    assert not any(b"PRIVATE KEY" in data for data in written.values())
    for secret in ("etc/nebula/farmhand/host.key", "etc/farmhand/smb.password"):
        assert secret not in written
        assert f"/{secret}" in result.stdout, "the table still lists what was left out"
    assert "not written (--with-secrets)" in result.stdout


def test_with_secrets_the_tree_is_a_private_folder(farm: Farm, tmp_path: Path) -> None:
    out = tmp_path / "shared" / "review"
    result = run_cli("files", "hub", "--bundle", farm.root / BUNDLE, "--out", out,
                     "--with-secrets", env=WITH_PASSPHRASE)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    key = out / "etc/nebula/farmhand/host.key"
    assert b"PRIVATE KEY" in key.read_bytes()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


@pytest.mark.skipif(os.getuid() != 0, reason="needs a folder owned by another user")
def test_with_secrets_refuses_a_folder_of_another_user(farm: Farm, tmp_path: Path) -> None:
    out = tmp_path / "theirs"
    out.mkdir(mode=0o755)
    os.chown(out, 65534, 65534)
    result = run_cli("files", "hub", "--bundle", farm.root / BUNDLE, "--out", out,
                     "--with-secrets", env=WITH_PASSPHRASE)  # fmt: skip
    assert_cli_error(result, "belongs to another user")
    assert list(out.iterdir()) == []


def test_the_deploy_engine_never_inherits_the_passphrase(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_VAR, "a passphrase from the environment")
    monkeypatch.setenv("FARMHAND_SOMETHING_ELSE", "kept")
    env = runner.engine_environment()
    assert ENV_VAR not in env
    assert env["FARMHAND_SOMETHING_ELSE"] == "kept"
    assert env["PATH"] == os.environ["PATH"]


def test_plain_pyinfra_runs_drop_the_passphrase_once_the_bundle_is_open(
    farm: Farm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``FARMHAND_PASSPHRASE=… pyinfra INVENTORY deploys/hub.py``: the deploy context reads it,
    opens the bundle, and takes it out of the environment before any operation runs."""

    class Data(dict[str, object]):
        def get(self, key: str, default: object = None) -> object:
            return super().get(key, default)

    class HostWithData:  # the one attribute of pyinfra's host the context reads here
        data = Data()

    monkeypatch.setattr(context, "host", HostWithData())
    monkeypatch.setattr(context, "_BUNDLES", {})  # no bundle opened by an earlier test
    monkeypatch.setenv(ENV_VAR, PASSPHRASE)
    opened = context._bundle(farm.root / BUNDLE)
    assert opened.role.value == "hub"
    assert ENV_VAR not in os.environ
