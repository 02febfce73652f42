"""Scenes with real dependencies, made by this machine's Blender, and reading a pixel back:
for the tests that pack a scene with its texture and check the frame has the texture's colour
(tests/test_jobs_slurm.py, tests/test_lab_join.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

TEXTURE = "tex/solid.png"
"""The texture, beside scenes/ in the artist's folder: outside the scene's own folder, so
packing moves it under _outside_project/ and rewrites the scene's path to it."""

TEXTURE_SCENE = """
import bpy, sys
out, tex, gone = sys.argv[-3], sys.argv[-2], sys.argv[-1] == "1"
image = bpy.data.images.new("solid", 8, 8)
image.pixels = [0.2, 0.6, 0.9, 1.0] * 64
image.filepath_raw = tex
image.file_format = "PNG"
image.save()
for ob in list(bpy.data.objects):
    bpy.data.objects.remove(ob)
bpy.ops.mesh.primitive_plane_add(size=4)
material = bpy.data.materials.new("textured")
material.use_nodes = True
nodes, links = material.node_tree.nodes, material.node_tree.links
nodes.clear()
texture = nodes.new("ShaderNodeTexImage")
texture.image = bpy.data.images.load(tex)
if gone:
    texture.image.filepath = tex + ".gone"
emission = nodes.new("ShaderNodeEmission")
output = nodes.new("ShaderNodeOutputMaterial")
links.new(texture.outputs["Color"], emission.inputs["Color"])
links.new(emission.outputs["Emission"], output.inputs["Surface"])
bpy.context.active_object.data.materials.append(material)
camera = bpy.data.cameras.new("camera")
camera.type, camera.ortho_scale = "ORTHO", 2
rig = bpy.data.objects.new("camera", camera)
rig.location = (0, 0, 5)
scene = bpy.context.scene
scene.collection.objects.link(rig)
scene.camera = rig
scene.render.engine = "CYCLES"
scene.cycles.samples = 1
scene.cycles.use_denoising = False
scene.view_settings.view_transform = "Standard"
scene.render.resolution_x = scene.render.resolution_y = 16
scene.render.resolution_percentage = 100
scene.render.image_settings.file_format = "PNG"
scene.frame_start = scene.frame_end = 1
bpy.ops.wm.save_as_mainfile(filepath=out)
"""

PIXEL = """
import bpy, sys
image = bpy.data.images.load(sys.argv[-1])
width, height = image.size
i = ((height // 2) * width + width // 2) * 4
print("PIXEL", *(round(v, 3) for v in image.pixels[i:i + 3]))
"""


def blender(script: str, *args: str, blend: Path | None = None) -> str:
    """Run this machine's Blender in the background on Python ``script`` (``args`` after its
    ``--``, ``blend`` opened first); its stdout. It must succeed."""
    opened = [str(blend)] if blend else []
    return subprocess.run(
        ["blender", "-b", "--factory-startup", *opened, "--python-expr", script, "--", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def textured(artist: Path, name: str, gone: bool = False) -> Path:
    """``artist/scenes/NAME``: an orthographic camera sees only a plane whose emission shows
    the image ``artist/TEXTURE`` (``gone``: the scene points at a file that is not there)."""
    (artist / "scenes").mkdir(parents=True, exist_ok=True)
    (artist / TEXTURE).parent.mkdir(parents=True, exist_ok=True)
    scene = artist / "scenes" / name
    blender(TEXTURE_SCENE, str(scene), str(artist / TEXTURE), "1" if gone else "0")
    return scene


def pixel(image: Path) -> list[float]:
    """The RGB of ``image``'s centre pixel, 0 to 1, as Blender reads the file."""
    out = blender(PIXEL, str(image))
    line = next(ln for ln in out.splitlines() if ln.startswith("PIXEL "))
    return [float(v) for v in line.split()[1:]]


def same_colour(a: list[float], b: list[float], tolerance: float = 0.02) -> bool:
    return all(abs(x - y) < tolerance for x, y in zip(a, b, strict=True))


ADDON_SUBMIT = """
import bpy, json, sys
zip_path, url, token_file = sys.argv[-3:]
bpy.ops.preferences.addon_install(filepath=zip_path)
bpy.ops.preferences.addon_enable(module="farmhand_blender")
from farmhand_blender import JOBS
prefs = bpy.context.preferences.addons["farmhand_blender"].preferences
prefs.url, prefs.token_file = url, token_file
scene = bpy.context.scene
scene.frame_start, scene.frame_end, scene.farmhand_chunk = 2, 5, 2
result = bpy.ops.farmhand.render_on_farm()
refreshed = bpy.ops.farmhand.refresh_jobs()
print("FARMHAND", json.dumps({"submit": sorted(result), "refresh": sorted(refreshed),
      "job": scene.farmhand_last_job, "jobs": JOBS}))
"""
"""Blender Python: install and enable the add-on from the zip, point it at the local API
(URL, token file: the last three arguments), set frames 2-5 in chunks of 2, press "Render on
farm" and "Refresh jobs", and print what came of it on a line starting ``FARMHAND``."""
