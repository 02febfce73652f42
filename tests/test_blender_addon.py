"""The Blender add-on as an artist installs it: the zip `farmhand addon` builds, installed and
enabled by Debian's real Blender from its preferences' operator; its operators, its panel and
where it looks for the API token. (It submitting through the API to a real farm:
tests/test_jobs_slurm.py.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from farmhand import blender_addon
from support.cli import run_cli

pytestmark = pytest.mark.skipif(shutil.which("blender") is None, reason="needs blender")

INSTALL = """
import bpy, json, sys
bpy.ops.preferences.addon_install(filepath=sys.argv[-1])
bpy.ops.preferences.addon_enable(module="farmhand_blender")
prefs = bpy.context.preferences.addons["farmhand_blender"].preferences
print("FARMHAND", json.dumps({
    "operators": sorted(n for n in dir(bpy.ops.farmhand) if not n.startswith("_")),
    "panel": hasattr(bpy.types, "FARMHAND_PT_farm"),
    "chunk": bpy.context.scene.farmhand_chunk,
    "url": prefs.url,
    "token_file": prefs.token_file,
    "poll_unsaved": bpy.ops.farmhand.render_on_farm.poll(),
}))
"""


def test_farmhand_addon_builds_a_zip_blender_installs_and_enables(tmp_path: Path) -> None:
    result = run_cli("addon", "--to", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    made = tmp_path / "out" / blender_addon.ZIP_NAME
    assert str(made) in result.stdout
    assert zipfile.ZipFile(made).namelist() == ["farmhand_blender/__init__.py"]
    env = {
        **os.environ,
        "BLENDER_USER_SCRIPTS": str(tmp_path / "scripts"),
        "BLENDER_USER_CONFIG": str(tmp_path / "blender-config"),
        "FARMHAND_CONFIG_DIR": str(tmp_path / "farmhand"),
    }
    out = subprocess.run(
        ["blender", "-b", "--factory-startup", "--python-expr", INSTALL, "--", str(made)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("FARMHAND "))
    seen = json.loads(line.split(" ", 1)[1])
    assert seen["operators"] == ["refresh_jobs", "render_on_farm"]
    assert seen["panel"] is True
    assert seen["chunk"] == 1
    assert seen["url"] == "http://127.0.0.1:8765"
    assert seen["token_file"] == str(tmp_path / "farmhand" / "api-token")
    assert seen["poll_unsaved"] is False  # an unsaved scene cannot go to the farm
    assert (tmp_path / "scripts" / "addons" / "farmhand_blender" / "__init__.py").is_file()
