"""The lab's last proofs: boss1 as an artist's laptop, and the job an artist runs from it.

farmhand is installed on boss1 from a wheelhouse (lab hosts have no internet) and boss1 joins
the farm with ``farmhand join --service`` and its bundle, as the README tells a new user to do
on a laptop. Then boss1 runs ``farmhand submit``, ``farmhand job`` until the job is done, and
``farmhand collect``, with no extra arguments: ``farmhand lab ssh boss1 farmhand jobs`` works
the same afterwards. Bosses carry no Blender, so a worker's Blender makes the scene (a cube
moving across the frame, so that no two frames are alike).
"""

from __future__ import annotations

import base64
import json
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from farmhand.errors import LabError
from farmhand.join.paths import APP, JoinPaths
from farmhand.keystore.bundle import bundle_filename
from farmhand.keystore.plan import Role
from farmhand.lab.farm import LabFarm
from farmhand.lab.provision import Check, Say, lab_passphrase, store_dir
from farmhand.lab.wheelhouse import ON_PATH, install_farmhand

BOSS = "boss1"
BOSS_BUNDLE = "/root/boss1.keybundle.age"
"""Where boss1 keeps its bundle, as a person keeps theirs on a laptop."""
JOINED_STATE = str(JoinPaths(Path("/root/.config") / APP).state)
"""What ``farmhand join`` leaves on boss1 (root's config folder) once it joined."""
PASSFILE = "/root/.farmhand-join-passphrase"
SCENE = "/root/lab-animation.blend"
FRAMES_DIR = "/root/lab-frames"
FRAMES = 4
JOB_SECONDS = 600
"""How long the first job may take before the lab calls it failed (a few seconds per frame on
an idle 2-core machine; a busy one is much slower)."""

_SCENE_SCRIPT = """
import bpy, sys
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.samples = {samples}
scene.cycles.use_denoising = False  # Debian's Blender has no OpenImageDenoise
scene.render.resolution_x, scene.render.resolution_y = {width}, {height}
scene.render.resolution_percentage = 100
scene.render.image_settings.file_format = "PNG"
scene.frame_start, scene.frame_end = 1, {frames}
cube = bpy.data.objects["Cube"]
cube.location = (-3, 0, 0); cube.keyframe_insert("location", frame=1)
cube.location = (3, 0, 0); cube.keyframe_insert("location", frame={frames})
bpy.ops.wm.save_as_mainfile(filepath=sys.argv[-1])
"""


def scene_script(frames: int, samples: int = 1, size: tuple[int, int] = (48, 32)) -> str:
    """Blender Python that saves Blender's default cube, animated over ``frames`` frames, to
    the path given last on Blender's command line."""
    width, height = size
    return _SCENE_SCRIPT.format(frames=frames, samples=samples, width=width, height=height)


def make_scene(farm: LabFarm, worker: str, script: str, host: str, path: str) -> None:
    """The scene ``script`` saves, made by ``worker``'s Blender, put at ``path`` on ``host``."""
    made = "/tmp/farmhand-scene.blend"
    quoted = shlex.quote(script)
    farm.exec(
        worker,
        ["sh", "-c", f"blender -b --factory-startup --python-expr {quoted} -- {made} >/dev/null"],
        check=True,
    )
    encoded = farm.exec(worker, ["sh", "-c", f"base64 -w0 {made} && rm -f {made}"], check=True)
    data = base64.b64decode(encoded.stdout)
    if not data.startswith(b"BLENDER"):
        raise LabError(f"{worker}'s Blender saved no scene")
    farm.put(host, path, data)


def whole_pngs(farm: LabFarm, host: str, folder: str) -> dict[str, str]:
    """Each file in ``folder`` on ``host`` that is a whole PNG (signature and IEND chunk), by
    name, with its sha256."""
    script = (
        f'cd {folder} && for f in *; do sig=$(head -c 8 "$f" | od -An -tx1 | tr -d " \\n"); '
        f'end=$(tail -c 8 "$f" | head -c 4); '
        f'[ "$sig$end" = 89504e470d0a1a0aIEND ] && echo "$f $(sha256sum < "$f" | cut -c1-64)"; '
        "done; true"
    )
    listed = farm.exec(host, ["sh", "-c", script]).stdout.split("\n")
    return dict(line.split(" ", 1) for line in listed if " " in line)


def _farmhand(farm: LabFarm, *args: str, as_json: bool = True) -> Any:
    """``farmhand ARGS`` on boss1, as joined; the parsed ``--json`` answer (or the text)."""
    result = farm.exec(BOSS, [ON_PATH, *args, *(["--json"] if as_json else [])])
    if result.returncode != 0:
        reason = _last_line(result.stderr or result.stdout)
        raise LabError(f"farmhand {args[0]} on {BOSS}: {reason}")
    return json.loads(result.stdout) if as_json else result.stdout


def _last_line(output: str) -> str:
    lines = output.strip().splitlines()
    return lines[-1] if lines else "no output"


JOIN_CLAIM = f"{BOSS} has farmhand and joined the farm with farmhand join --service"
CLAIM = (
    f"{BOSS} submitted a {FRAMES}-frame animation with farmhand submit, the workers rendered "
    "it, and farmhand collect brought back every frame as a whole PNG"
)


def join_boss(farm: LabFarm, wheelhouse: Callable[[], Path], say: Say) -> Check:
    """farmhand installed on boss1 from ``wheelhouse()`` (built meanwhile, perhaps) and boss1
    joined with its bundle; a boss that already joined (a second ``lab up``) stays joined."""
    try:
        say(f"installing farmhand on {BOSS} from a wheelhouse")
        install_farmhand(farm, BOSS, wheelhouse())
        if farm.exec(BOSS, ["test", "-f", JOINED_STATE]).returncode == 0:
            return Check(JOIN_CLAIM, True, "already joined")
        store = store_dir(farm)
        farm.put(BOSS, BOSS_BUNDLE, (store / bundle_filename(Role.BOSS, BOSS)).read_bytes())
        say(f"{BOSS}: farmhand join --service --bundle {BOSS_BUNDLE}")
        # The passphrase in a 0600 file for the one command, then gone: join keeps what it
        # needs, and the job commands need no passphrase.
        farm.put(BOSS, PASSFILE, lab_passphrase(farm).encode() + b"\n")
        try:
            result = farm.exec(
                BOSS,
                [ON_PATH, "join", "--service", "--bundle", BOSS_BUNDLE, "--passphrase-file",
                 PASSFILE],
            )  # fmt: skip
        finally:
            farm.exec(BOSS, ["rm", "-f", PASSFILE])
        if result.returncode != 0:
            reason = _last_line(result.stderr or result.stdout)
            raise LabError(f"farmhand join on {BOSS}: {reason}")
        return Check(JOIN_CLAIM, True)
    except LabError as exc:
        return Check(JOIN_CLAIM, False, str(exc))


def render_a_job(farm: LabFarm, say: Say) -> Check:
    """boss1 (joined: :func:`join_boss`) submits an animation, the workers render it and
    boss1 collects the frames."""
    try:
        return _render_a_job(farm, say)
    except LabError as exc:
        return Check(CLAIM, False, str(exc))


def _render_a_job(farm: LabFarm, say: Say) -> Check:
    workers = [r.name for r in farm.records() if r.name.startswith("worker")]
    script = scene_script(FRAMES, samples=16, size=(320, 180))
    make_scene(farm, workers[0], script, BOSS, SCENE)
    say(f"{BOSS}: farmhand submit {SCENE} --frames 1-{FRAMES}")
    started = time.monotonic()
    job = str(_farmhand(farm, "submit", SCENE, "--frames", f"1-{FRAMES}")["job"])
    details = _farmhand(farm, "job", job)
    while details["done"] + details["failed"] < FRAMES:
        if time.monotonic() - started > JOB_SECONDS:
            raise LabError(f"job {job} was not done in {JOB_SECONDS} s: {details['done']} done")
        time.sleep(2)
        details = _farmhand(farm, "job", job)
    took = time.monotonic() - started
    frames = details["frame_states"]
    rendered_by = sorted({str(f.get("worker")) for f in frames if f["state"] == "done"})
    say(f"{BOSS}: farmhand collect {job} --to {FRAMES_DIR}")
    _farmhand(farm, "collect", job, "--to", FRAMES_DIR, as_json=False)
    pngs = whole_pngs(farm, BOSS, FRAMES_DIR)
    expected = [f"frame_{n:04d}.png" for n in range(1, FRAMES + 1)]
    passed = (
        all(f["state"] == "done" for f in frames)
        and sorted(pngs) == expected
        and len(set(pngs.values())) == FRAMES
    )
    detail = (
        f"job {job}: {details['done']} of {FRAMES} frames by {', '.join(rendered_by)} in "
        f"{took:.0f} s; on {BOSS} in {FRAMES_DIR}"
    )
    return Check(CLAIM, passed, detail)
