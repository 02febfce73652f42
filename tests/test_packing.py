"""Packing a scene with what it references (farmhand/jobs/packing.py), on scenes Debian's
Blender makes: a texture beside the scene keeps its relative place, one elsewhere moves under
_outside_project/ and the scene's path to it is rewritten; missing files stop it in one line;
the artist's files are never changed."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from farmhand.errors import UsageError
from farmhand.jobs import api, packing
from support import scenes
from support.cli import WITH_PASSPHRASE, run_cli
from support.session import SESSION_BOSS

pytestmark = pytest.mark.skipif(shutil.which("blender") is None, reason="needs blender")

SCENE = """
import bpy, sys
out, beside, elsewhere, gone = sys.argv[-4:]
material = bpy.data.materials.new("textured")
material.use_nodes = True
nodes = material.node_tree.nodes
for path, colour in ((beside, (1, 0, 0, 1)), (elsewhere, (0, 1, 0, 1))):
    made = bpy.data.images.new("made", 4, 4)
    made.pixels = list(colour) * 16
    made.filepath_raw = path
    made.file_format = "PNG"
    made.save()
    nodes.new("ShaderNodeTexImage").image = bpy.data.images.load(path, check_existing=False)
if gone != "-":  # an image whose file is not there
    missing = bpy.data.images.new("gone", 4, 4)
    missing.source = "FILE"
    missing.filepath = gone
    nodes.new("ShaderNodeTexImage").image = missing
bpy.data.objects["Cube"].data.materials.append(material)
bpy.ops.wm.save_as_mainfile(filepath=out)
"""

PATHS = """
import bpy
for image in bpy.data.images:
    if image.source == "FILE":
        print("PATH", image.filepath)
"""


def _scene(tmp_path: Path, gone: bool = False) -> Path:
    (tmp_path / "shot" / "tex").mkdir(parents=True)
    (tmp_path / "library").mkdir()
    scene = tmp_path / "shot" / "shot.blend"
    gone_path = str(tmp_path / "nowhere" / "blue.png") if gone else "-"
    scenes.blender(
        SCENE,
        str(scene),
        str(tmp_path / "shot" / "tex" / "red.png"),
        str(tmp_path / "library" / "green.png"),
        gone_path,
    )
    return scene


def _paths(scene: Path) -> list[str]:
    out = scenes.blender(PATHS, blend=scene)
    return sorted(ln.split(" ", 1)[1] for ln in out.splitlines() if ln.startswith("PATH "))


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_every_referenced_file_goes_with_the_scene_at_a_relative_path(tmp_path: Path) -> None:
    scene = _scene(tmp_path)
    before = _digests(tmp_path)
    with packing.packed(scene) as ready:
        paths = {f.path: f for f in ready.files}
        outside = next(p for p in paths if p.endswith("green.png"))
        assert set(paths) == {"tex/red.png", outside}
        assert outside.startswith("_outside_project/")
        assert outside.endswith(f"{tmp_path.relative_to('/')}/library/green.png")
        red = paths["tex/red.png"]
        assert (
            red.sha256 == hashlib.sha256((tmp_path / "shot/tex/red.png").read_bytes()).hexdigest()
        )
        assert red.size == (tmp_path / "shot/tex/red.png").stat().st_size
        assert ready.missing == ()
        assert ready.size == ready.scene.stat().st_size + sum(f.size for f in ready.files)
        # Blender itself reads the rewritten scene's paths as relative, inside the pack.
        assert _paths(ready.scene) == sorted(["//tex/red.png", f"//{outside}"])
        folder = ready.scene.parent
    assert not folder.exists()  # the temporary pack is gone afterwards
    assert _digests(tmp_path) == before  # the artist's files are untouched


def test_a_missing_file_stops_the_pack_in_one_line_unless_allowed(tmp_path: Path) -> None:
    scene = _scene(tmp_path, gone=True)
    with pytest.raises(UsageError) as refused, packing.packed(scene):
        pass
    text = str(refused.value)
    assert "\n" not in text
    assert "references 1 missing file(s)" in text
    assert "blue.png" in text
    assert "--allow-missing" in text
    with packing.packed(scene, allow_missing=True) as ready:
        assert [p.name for p in ready.missing] == ["blue.png"]
        assert len(ready.files) == 2


def test_without_packing_the_scene_goes_alone(tmp_path: Path) -> None:
    scene = _scene(tmp_path)
    with api.prepared(scene, pack=False) as ready:
        assert ready.scene == scene
        assert ready.files == ()


def test_a_blend_the_tracer_cannot_read_is_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.blend"
    broken.write_bytes(b"BLENDER-v304REND" + bytes(64))
    with (
        pytest.raises(UsageError, match=r"^cannot pack broken\.blend: ") as refused,
        packing.packed(broken),
    ):
        pass
    assert "\n" not in str(refused.value)
    assert str(tmp_path) not in str(refused.value)


def test_the_cli_says_what_is_missing_in_one_line(tmp_path: Path, farm_store: Path) -> None:
    scene = _scene(tmp_path, gone=True)
    bundle = farm_store / f"boss-{SESSION_BOSS}.keybundle.age"
    result = run_cli("submit", scene, "--frames", "1", "--bundle", bundle, env=WITH_PASSPHRASE)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "missing file(s)" in lines[0]
    assert "Traceback" not in result.stderr
