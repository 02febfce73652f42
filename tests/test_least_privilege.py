"""Least privilege on the farm's shared storage and in what farmhand runs (issue #11, item 3).

Checked on the expanded host files of the session farm's bundles: Blender's Python auto-run is
off unless farm.toml turns it on.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import yaml

from farmhand.errors import UsageError
from farmhand.hostfiles import host_files
from farmhand.keystore.bundle import Bundle
from farmhand.model.distro import DEBIAN_12
from farmhand.model.host import HostModel, host_model
from farmhand.model.paths import FLAMENCO_MANAGER_DIR
from support.pyinfra_harness import HUB_ADDRESS, open_bundles
from support.session import Farm

MANAGER_YAML = f"{FLAMENCO_MANAGER_DIR}/flamenco-manager.yaml"


@pytest.fixture(scope="module")
def bundles(farm: Farm) -> dict[str, Bundle]:
    return open_bundles(farm)


def model_with(bundle: Bundle, **settings: Any) -> HostModel:
    plan = bundle.plan.with_settings(**settings)
    return host_model(
        dataclasses.replace(bundle, plan=plan), hub_address=HUB_ADDRESS, distro=DEBIAN_12
    )


def expanded(model: HostModel) -> dict[str, bytes]:
    return {f.path: f.content for f in host_files(model)}


def blender_args(model: HostModel) -> str:
    manager = yaml.safe_load(expanded(model)[MANAGER_YAML])
    (value,) = manager["variables"]["blenderArgs"]["values"]
    assert value["platform"] == "all"
    return str(value["value"])


def test_blender_python_autorun_is_off_by_default(bundles: dict[str, Bundle]) -> None:
    args = blender_args(model_with(bundles["hub"], render_manager="flamenco")).split()
    assert args == ["-b", "--disable-autoexec"]
    assert "-y" not in args


def test_blender_autorun_is_a_farm_setting(bundles: dict[str, Bundle]) -> None:
    model = model_with(bundles["hub"], render_manager="flamenco", blender_autorun=True)
    assert blender_args(model).split() == ["-b", "--enable-autoexec"]
    with pytest.raises(UsageError, match=r'^blender_autorun = "yes": expected true or false$'):
        model_with(bundles["hub"], blender_autorun="yes")


def test_no_host_file_starts_blender_with_autorun(bundles: dict[str, Bundle]) -> None:
    for manager in ("deadline", "flamenco"):
        for role in ("hub", "worker"):
            files = expanded(model_with(bundles[role], render_manager=manager))
            for path, content in files.items():
                words = content.decode(errors="replace").split()
                if "blender" in " ".join(words):
                    assert not {"-y", "--enable-autoexec"} & set(words), path
