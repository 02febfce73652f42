"""farmhand's Blender add-on: "Render on farm" and the farm's jobs, in Properties > Output.

It talks to ``farmhand api`` on this machine (http://127.0.0.1:8765 by default) with the token
that command keeps in farmhand's config folder, so Blender never needs the farm's keys: the
add-on only sends the saved .blend's path, its frame range and the chunk. Built into a zip by
``farmhand addon``; install it in Blender from Edit > Preferences > Add-ons > Install.

Runs inside Blender only (it imports ``bpy``); standard library otherwise.
"""

import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

import bpy

bl_info = {
    "name": "farmhand: render on farm",
    "author": "farmhand developers",
    "version": (1, 0, 0),
    "blender": (2, 93, 0),
    "location": "Properties > Output > farmhand",
    "description": "Send the saved scene to your farmhand render farm and list its jobs",
    "category": "Render",
}

DEFAULT_URL = "http://127.0.0.1:8765"
JOBS: list[dict[str, Any]] = []  # the last GET /jobs, for the panel
COLUMNS = ("job", "name", "state", "done", "failed", "frames")


def default_token_file() -> str:
    """Where ``farmhand api`` keeps its token: farmhand's config folder, as farmhand finds it
    (FARMHAND_CONFIG_DIR, else the platform's user config folder)."""
    root = os.environ.get("FARMHAND_CONFIG_DIR", "").strip()
    if not root:
        home = os.path.expanduser("~")
        if sys.platform == "darwin":
            base = os.path.join(home, "Library", "Application Support")
        elif os.name == "nt":
            base = os.environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
        else:
            base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
        root = os.path.join(base, "farmhand")
    return os.path.join(root, "api-token")


class FarmhandPreferences(bpy.types.AddonPreferences):
    bl_idname = __name__

    url: bpy.props.StringProperty(name="API", default=DEFAULT_URL)
    token_file: bpy.props.StringProperty(
        name="Token file", default=default_token_file(), subtype="FILE_PATH"
    )

    def draw(self, context: Any) -> None:
        self.layout.prop(self, "url")
        self.layout.prop(self, "token_file")
        self.layout.label(text="Start the API with: farmhand api")


def _prefs(context: Any) -> Any:
    return context.preferences.addons[__name__].preferences


def call(context: Any, method: str, path: str, body: Any = None) -> tuple[Any, str]:
    """(data, message) from the farmhand API; raises RuntimeError with its one-line message."""
    prefs = _prefs(context)
    if not prefs.url.startswith(("http://127.0.0.1:", "http://localhost:")):
        raise RuntimeError("the farmhand API runs on this machine: http://127.0.0.1:PORT")
    try:
        with open(bpy.path.abspath(prefs.token_file), encoding="utf-8") as handle:
            token = handle.read().strip()
    except OSError as exc:
        raise RuntimeError(f"no farmhand API token ({exc}): run farmhand api") from None
    data = json.dumps(body).encode() if body is not None else None
    url = prefs.url.rstrip("/") + path  # http://127.0.0.1 or localhost only: checked above
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
    request.add_header("Authorization", "Bearer " + token)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=600) as answer:  # noqa: S310
            envelope = json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        try:
            envelope = json.loads(exc.read())
        except ValueError:
            raise RuntimeError(f"the farmhand API answered {exc.code}") from None
        raise RuntimeError(envelope.get("message") or str(exc.code)) from None
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"cannot reach the farmhand API ({exc}): run farmhand api") from None
    return envelope.get("data"), envelope.get("message", "")


class FARMHAND_OT_render_on_farm(bpy.types.Operator):
    """Save the scene and send it to the farm: its frame range, in chunks"""

    bl_idname = "farmhand.render_on_farm"
    bl_label = "Render on farm"

    @classmethod
    def poll(cls, context: Any) -> bool:
        return bool(bpy.data.filepath)

    def execute(self, context: Any) -> set[str]:
        if bpy.data.is_dirty:
            bpy.ops.wm.save_mainfile()
        scene = context.scene
        body = {
            "scene": bpy.data.filepath,
            "frames": f"{scene.frame_start}-{scene.frame_end}",
            "chunk": scene.farmhand_chunk,
            "name": bpy.path.display_name_from_filepath(bpy.data.filepath),
        }
        try:
            data, message = call(context, "POST", "/new_job", body)
        except RuntimeError as exc:
            self.report({"ERROR"}, f"farmhand: {exc}")
            return {"CANCELLED"}
        scene.farmhand_last_job = str(data.get("job", ""))
        self.report({"INFO"}, f"farmhand: {message}")
        return {"FINISHED"}


class FARMHAND_OT_refresh_jobs(bpy.types.Operator):
    """Ask the farm for its jobs"""

    bl_idname = "farmhand.refresh_jobs"
    bl_label = "Refresh jobs"

    def execute(self, context: Any) -> set[str]:
        try:
            data, _ = call(context, "GET", "/jobs")
        except RuntimeError as exc:
            self.report({"ERROR"}, f"farmhand: {exc}")
            return {"CANCELLED"}
        JOBS[:] = [{c: job.get(c) for c in COLUMNS} for job in (data or [])]
        return {"FINISHED"}


class FARMHAND_PT_farm(bpy.types.Panel):
    bl_label = "farmhand"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "output"

    def draw(self, context: Any) -> None:
        layout = self.layout
        scene = context.scene
        layout.label(text=f"Frames {scene.frame_start} to {scene.frame_end}")
        layout.prop(scene, "farmhand_chunk")
        row = layout.row()
        row.operator(FARMHAND_OT_render_on_farm.bl_idname, icon="RENDER_ANIMATION")
        row.operator(FARMHAND_OT_refresh_jobs.bl_idname, icon="FILE_REFRESH", text="")
        if scene.farmhand_last_job:
            layout.label(text=f"Last job: {scene.farmhand_last_job}")
        for job in JOBS[-10:]:
            layout.label(
                text="{job} {name}: {state}, {done}/{frames} done, {failed} failed".format(**job)
            )


CLASSES = (FarmhandPreferences, FARMHAND_OT_render_on_farm, FARMHAND_OT_refresh_jobs,
           FARMHAND_PT_farm)  # fmt: skip


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.farmhand_chunk = bpy.props.IntProperty(
        name="Frames per task", default=1, min=1, description="farmhand's --chunk"
    )
    bpy.types.Scene.farmhand_last_job = bpy.props.StringProperty(name="Last farmhand job")


def unregister() -> None:
    del bpy.types.Scene.farmhand_last_job
    del bpy.types.Scene.farmhand_chunk
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
