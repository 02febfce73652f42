"""End to end: a boss joins the lab farm with `farmhand join --service` and checks it with
`farmhand status` (issue 6, "Tests that must exist").

ONE lab (prefix ``fhjoin``): hub, worker0001, worker0002 and boss1. Keys are made with a worker
price in farm.toml; the hub and workers get the real deploys, boss1 does NOT get the boss deploy:
farmhand is installed on it from a wheelhouse and joins by itself, the way a person's laptop
would (it even installs nebula from the distribution's package, offline from the image's cache).
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import support.lab
from farmhand.errors import LabError
from farmhand.keystore import pki
from farmhand.keystore.bundle import bundle_filename
from farmhand.keystore.plan import Role, new_plan
from farmhand.keystore.store import KeyStore
from farmhand.lab import LabFarm, first_job
from farmhand.lab import provision as prov
from farmhand.lab.wheelhouse import build_wheelhouse, install_farmhand
from support import scenes

PREFIX = "fhjoin"
HUB, W1, W2, BOSS = "hub", "worker0001", "worker0002", "boss1"
BOSS2 = "boss2"  # keys only: its bundle is used from boss1, then revoked
PRICE = 0.35
CONFIG_DIR = "/root/.config/farmhand"
UNIT = "/etc/systemd/system/farmhand-join.service"
SERVICE_DIR = "/etc/nebula/farmhand-join"
BUNDLE = "/root/boss1.keybundle.age"
PASSFILE = "/root/farm-passphrase"

pytestmark = support.lab.lab_marks(support.lab.LAB_TOOLS_NO_NFT)


@dataclass
class JoinLab:
    farm: LabFarm
    farmhand: str
    wheelhouse: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``farmhand ARGS`` on boss1 (as root, the way `sudo farmhand` would run)."""
        return self.farm.host(BOSS).exec([self.farmhand, *args])

    def sh(self, name: str, script: str, input: str | None = None) -> str:
        return support.lab.sh(self.farm, name, script, input=input)

    def status(self) -> tuple[int, dict[str, Any]]:
        result = self.run("status", "--json", "--timeout", "3")
        assert "Traceback" not in result.stderr, result.stderr
        return result.returncode, json.loads(result.stdout)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JoinLab]:
    support.lab.require_lab(support.lab.LAB_TOOLS_NO_NFT)
    farm = LabFarm(tmp_path_factory.mktemp("join-state"), prefix=PREFIX, progress=print)
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            wheels = pool.submit(build_wheelhouse)  # PyPI work while the containers boot
            farm.up(workers=2, bosses=1)
            wheelhouse = wheels.result()
        plan = new_plan(name=prov.LAB_FARM_NAME, hub_address=str(farm.address(HUB)))
        plan = plan.with_settings(worker_hourly_price=PRICE, currency="EUR")
        pki.create_farm(prov.store_dir(farm), plan, 2, [BOSS, BOSS2], prov.lab_passphrase(farm))

        def boss_setup() -> str:
            return install_farmhand(farm, BOSS, wheelhouse)

        with ThreadPoolExecutor(max_workers=3) as pool:
            hub = pool.submit(prov.deploy_role, farm, Role.HUB, [HUB])
            workers = pool.submit(prov.deploy_role, farm, Role.WORKER, [W1, W2])
            farmhand = pool.submit(boss_setup)
            hub.result()
            workers.result()
            path = farmhand.result()
        store = prov.store_dir(farm)
        farm.put(BOSS, BUNDLE, (store / bundle_filename(Role.BOSS, BOSS)).read_bytes())
        farm.put(BOSS, PASSFILE, prov.lab_passphrase(farm).encode() + b"\n")
        yield JoinLab(farm, path, wheelhouse)
    finally:
        farm.down()


def test_the_boss_joins_as_a_service_and_reaches_the_hub(lab: JoinLab) -> None:
    assert lab.sh(BOSS, "command -v nebula || echo none") == "none"  # join must install it
    result = lab.run("join", "--service", "--bundle", BUNDLE, "--passphrase-file", PASSFILE)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "joined farm 'lab' as boss1 (10.87.10.1)" in out
    assert "the hub 10.87.0.1 answers in" in out
    assert "gio mount smb://farmhand@10.87.0.1/farm" in out
    assert f"password is in {CONFIG_DIR}/join/smb.password" in out
    assert lab.sh(BOSS, "systemctl is-active farmhand-join.service") == "active"
    assert lab.sh(BOSS, "systemctl is-enabled farmhand-join.service") == "enabled"
    modes = lab.sh(BOSS, f"stat -c '%n %a' {CONFIG_DIR}/join/*").splitlines()
    modes_by_name = dict(line.rsplit(" ", 1) for line in modes)
    assert modes_by_name[f"{CONFIG_DIR}/join/smb.password"] == "600"
    assert f"{CONFIG_DIR}/join/host.key" not in modes_by_name  # the service has root's own
    assert f"{CONFIG_DIR}/join/config.yml" not in modes_by_name
    assert lab.sh(BOSS, f"stat -c %a {CONFIG_DIR}/join") == "700"
    # What the service runs and reads is root's alone: the package's nebula, root's config.
    owned = lab.sh(BOSS, f"stat -c '%n %a %U' {SERVICE_DIR} {SERVICE_DIR}/*").splitlines()
    owned_by_name = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in owned}
    assert owned_by_name[SERVICE_DIR] == "700 root"
    assert owned_by_name[f"{SERVICE_DIR}/host.key"] == "600 root"
    assert owned_by_name[f"{SERVICE_DIR}/config.yml"] == "600 root"
    exec_start = f'ExecStart="/usr/bin/nebula" -config "{SERVICE_DIR}/config.yml"'
    assert exec_start in lab.sh(BOSS, f"cat {UNIT}")
    # The password never leaves the 0600 file: not in the unit, the state or the output.
    password = lab.sh(BOSS, f"cat {CONFIG_DIR}/join/smb.password")
    assert password not in out + result.stderr
    assert password not in lab.sh(BOSS, f"cat {UNIT} {CONFIG_DIR}/join/join.json")
    assert lab.sh(BOSS, "ping -c 1 -W 2 10.87.0.1 >/dev/null && echo ok") == "ok"


SCENE = "/root/anim.blend"
FRAMES = 6
SCENE_SCRIPT = first_job.scene_script(FRAMES)


def _make_scene(lab: JoinLab, script: str, path: str) -> None:
    """The scene, made by Blender on a worker (bosses have none here), put on boss1."""
    first_job.make_scene(lab.farm, W1, script, BOSS, path)
    assert lab.sh(BOSS, f"head -c 7 {path}") == "BLENDER"


def _job(lab: JoinLab, job: str) -> dict[str, Any]:
    result = lab.run("job", job, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(json.loads(result.stdout))


def test_the_boss_submits_an_animation_both_workers_render_it_and_the_frames_come_back(
    lab: JoinLab,
) -> None:
    """The farm's job, from the joined laptop: submit, watch, collect (the README's commands)."""
    _make_scene(lab, SCENE_SCRIPT, SCENE)
    job = _submit(lab, SCENE, FRAMES)
    details = _wait_done(lab, job, FRAMES, 300)
    frames = details["frame_states"]
    assert [f["state"] for f in frames] == ["done"] * FRAMES, frames
    assert {f["worker"] for f in frames} == {W1, W2}, frames  # both workers took frames
    listed = lab.run("jobs", "--json")
    assert listed.returncode == 0, listed.stderr
    assert job in listed.stdout
    collected = lab.run("collect", job, "--to", "/root/frames")
    assert collected.returncode == 0, collected.stdout + collected.stderr
    names = lab.sh(BOSS, "ls /root/frames").split()
    assert names == [f"frame_{n:04d}.png" for n in range(1, FRAMES + 1)], names
    # Each is a whole PNG (signature and IEND), and the cube moves: no two frames alike.
    pngs = first_job.whole_pngs(lab.farm, BOSS, "/root/frames")
    assert sorted(pngs) == names
    assert len(set(pngs.values())) == FRAMES
    again = lab.run("collect", job, "--to", "/root/frames")  # resumable: nothing fetched twice
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_scene_with_an_external_texture_is_packed_and_rendered_in_its_colour(
    lab: JoinLab, tmp_path: Path
) -> None:
    """The texture lies outside the scene's folder on boss1: submit packs it, a worker renders
    the plane that shows it, and the frame's pixel has the texture's colour."""
    artist = tmp_path / "artist"
    made = scenes.textured(artist, "textured.blend")  # by this machine's Blender
    lab.sh(BOSS, "mkdir -p /root/artist/scenes /root/artist/tex")
    for path in (made, artist / scenes.TEXTURE):
        lab.farm.put(BOSS, f"/root/artist/{path.relative_to(artist)}", path.read_bytes(), 0o644)
    submitted = lab.run("submit", "/root/artist/scenes/textured.blend", "--frames", "1", "--json")
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job = str(json.loads(submitted.stdout)["job"])
    details = _wait_done(lab, job, 1, 300)
    assert details["frame_states"][0]["state"] == "done", details
    collected = lab.run("collect", job, "--to", "/root/textured")
    assert collected.returncode == 0, collected.stdout + collected.stderr
    frame = tmp_path / "frame.png"
    encoded = lab.farm.exec(BOSS, ["base64", "-w0", "/root/textured/frame_0001.png"], check=True)
    frame.write_bytes(base64.b64decode(encoded.stdout))
    colour, wanted = scenes.pixel(frame), scenes.pixel(artist / scenes.TEXTURE)
    assert scenes.same_colour(colour, wanted), (colour, wanted)


ADDON_DIR = "/root/addon"
API_URL = "http://127.0.0.1:8765"


def test_the_blender_addon_submits_the_open_scene_through_the_local_api(lab: JoinLab) -> None:
    """boss1 as an artist's laptop with Debian's Blender: `farmhand api` runs, the add-on zip
    `farmhand addon` builds is installed into Blender in background mode, and "Render on farm"
    sends the open scene (frames 2-5, chunks of 2) to the lab farm; the job is in `farmhand
    jobs` and renders."""
    lab.sh(BOSS, "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends"
                 f" blender >/dev/null && mkdir -p {ADDON_DIR}")  # fmt: skip
    _make_scene(lab, SCENE_SCRIPT, f"{ADDON_DIR}/shot.blend")
    built = lab.run("addon", "--to", ADDON_DIR)
    assert built.returncode == 0, built.stdout + built.stderr
    lab.sh(BOSS, f"systemd-run --unit farmhand-api-addon --collect --setenv HOME=/root "
                 f"{lab.farmhand} api >/dev/null 2>&1")  # fmt: skip
    try:
        probe = f"import urllib.request as u; u.urlopen('{API_URL}/openapi.json', timeout=2)"
        lab.sh(BOSS, f'for i in $(seq 100); do python3 -c "{probe}" 2>/dev/null && exit 0; '
                     "sleep 0.2; done; exit 1")  # fmt: skip
        script = shlex.quote(scenes.ADDON_SUBMIT)
        out = lab.sh(
            BOSS,
            f"HOME=/root blender -b --factory-startup {ADDON_DIR}/shot.blend --python-expr "
            f"{script} -- {ADDON_DIR}/farmhand_blender.zip {API_URL} "
            f"{CONFIG_DIR}/api-token 2>&1 | grep '^FARMHAND ' || true",
        )
    finally:  # the API's token is this test's: leave's test expects only the join's files
        lab.sh(BOSS, f"systemctl stop farmhand-api-addon || true; rm -f {CONFIG_DIR}/api-token")
    assert out.startswith("FARMHAND "), out
    seen = json.loads(out.split(" ", 1)[1])
    assert (seen["submit"], seen["refresh"]) == (["FINISHED"], ["FINISHED"]), seen
    job = str(seen["job"])
    assert job in [str(j["job"]) for j in seen["jobs"]]
    listed = lab.run("jobs", "--json")
    assert job in [str(j["job"]) for j in json.loads(listed.stdout)], listed.stdout
    details = _wait_done(lab, job, 4, 300)
    assert [(f["frame"], f["state"]) for f in details["frame_states"]] == [
        (n, "done") for n in range(2, 6)
    ], details


def test_the_job_farmhand_lab_up_ends_with_renders_on_both_workers(lab: JoinLab) -> None:
    """`farmhand lab up`'s last checks, as it runs them: farmhand on boss1's PATH and boss1
    joined (already, here: a second `lab up` keeps it), then submit, job and collect with no
    extra arguments; the frames come back whole and distinct."""
    lines: list[str] = []
    joined = first_job.join_boss(lab.farm, lambda: lab.wheelhouse, lines.append)
    assert joined.passed, joined
    assert joined.detail == "already joined"
    assert lab.sh(BOSS, "command -v farmhand") == "/usr/local/bin/farmhand"
    check = first_job.render_a_job(lab.farm, lines.append)
    assert check.passed, check
    assert f"{first_job.FRAMES} of {first_job.FRAMES} frames by {W1}, {W2}" in check.detail
    assert any("farmhand submit" in line for line in lines), lines
    names = lab.sh(BOSS, f"ls {first_job.FRAMES_DIR}").split()
    assert names == [f"frame_{n:04d}.png" for n in range(1, first_job.FRAMES + 1)]
    # What `farmhand lab ssh boss1 farmhand jobs` runs: the job is there, no bundle needed.
    listed = json.loads(lab.sh(BOSS, "farmhand jobs --json"))
    assert [j["done"] for j in listed][-1] == first_job.FRAMES, listed

    # A step that fails makes the check fail with its one-line reason (not a traceback).
    def no_wheelhouse() -> Path:
        raise LabError("building farmhand's wheelhouse failed: no network")

    failed = first_job.join_boss(lab.farm, no_wheelhouse, lines.append)
    assert not failed.passed
    assert failed.detail == "building farmhand's wheelhouse failed: no network"


def _wait_for_node(lab: JoinLab, node: str, state: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        found = lab.sh(HUB, f"sinfo -h -N -n {node} -o %T || true")
        if found.rstrip("*") == state:
            return
        assert time.monotonic() < deadline, f"{node} is {found!r}, not {state}"
        time.sleep(2)


def _submit(lab: JoinLab, scene: str, frames: int) -> str:
    # Each running worker's timer tells Slurm its Blender within seconds of it being there
    # (its first deploy installs Blender after slurmd starts).
    deadline = time.monotonic() + 60
    while "(null)" in lab.sh(HUB, "sinfo -h -N -t idle,alloc,mix -o %f || true"):
        assert time.monotonic() < deadline, lab.sh(HUB, "sinfo -h -N -o '%N %T %f'")
        time.sleep(2)
    submitted = lab.run("submit", scene, "--frames", f"1-{frames}", "--json")
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    answer = json.loads(submitted.stdout)
    # The workers' timers told Slurm their Blender: the job needs that one.
    assert re.fullmatch(r"\d+\.\d+\.\d+", answer["blender"]), answer
    return str(answer["job"])


def _running_on(lab: JoinLab, job: str, workers: set[str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        states = _job(lab, job)["frame_states"]
        if workers <= {f.get("worker") for f in states if f["state"] == "running"}:
            return
        assert time.monotonic() < deadline, states
        time.sleep(0.5)


def _wait_done(lab: JoinLab, job: str, frames: int, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    details = _job(lab, job)
    while details["done"] + details["failed"] < frames:
        assert time.monotonic() < deadline, details
        time.sleep(3)
        details = _job(lab, job)
    return details


def test_a_worker_killed_mid_frame_loses_nothing(lab: JoinLab) -> None:
    """12 frames on 2 workers; worker0001 is hard-killed while it renders one: Slurm gives
    that task to worker0002, every frame arrives, and the lost frame shows two attempts."""
    frames = 12
    scene = "/root/anim12.blend"
    # Frames of several seconds each (a 1-sample thumbnail renders in about one), so the
    # frame seen running on worker0001 is still running when the plug is pulled.
    script = first_job.scene_script(frames, samples=1024, size=(640, 480))
    _make_scene(lab, script, scene)
    try:
        _kill_a_worker_mid_frame(lab, scene, frames)
    finally:
        # Back for the tests after this one, pass or fail: the killed worker boots, takes
        # its certificate again and rejoins the cluster.
        if lab.farm.record(W1).pid is None:
            lab.farm.start(W1)
        _wait_for_node(lab, W1, "idle", 180)


def _kill_a_worker_mid_frame(lab: JoinLab, scene: str, frames: int) -> None:
    job = _submit(lab, scene, frames)
    deadline = time.monotonic() + 120
    while True:
        states = _job(lab, job)["frame_states"]
        victim = [f["frame"] for f in states if f["state"] == "running" and f.get("worker") == W1]
        if victim:
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.5)
    lab.farm.kill(W1)
    killed_at = time.monotonic()
    details = _wait_done(lab, job, frames, 600)
    took = time.monotonic() - killed_at
    print(f"frame {victim[0]} lost with {W1}: all {frames} frames done {took:.0f} s after")
    states = details["frame_states"]
    assert [f["state"] for f in states] == ["done"] * frames, states
    lost = next(f for f in states if f["frame"] == victim[0])
    assert lost["worker"] == W2, lost
    assert lost["attempts"] == 2, lost
    listing = lab.sh(HUB, f"ls -A /srv/farmhand/farm/renders/{job}")
    names = sorted(n for n in listing.split() if n.endswith(".png"))
    assert names == [f"frame_{n:04d}.png" for n in range(1, frames + 1)], listing


def test_cancel_stops_running_frames_and_frees_the_workers(lab: JoinLab) -> None:
    frames = 12
    scene = "/root/slow.blend"
    _make_scene(lab, first_job.scene_script(frames, samples=1024, size=(640, 480)), scene)
    job = _submit(lab, scene, frames)
    _running_on(lab, job, {W1, W2}, 120)
    cancelled = lab.run("cancel", job)
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    assert f"job {job} cancelled" in cancelled.stdout
    deadline = time.monotonic() + 60
    while lab.sh(HUB, "squeue -h -o %i") or any(
        lab.sh(w, "pgrep -x blender || true") for w in (W1, W2)
    ):
        assert time.monotonic() < deadline, "the cancelled job still runs"
        time.sleep(1)
    _wait_for_node(lab, W1, "idle", 60)
    _wait_for_node(lab, W2, "idle", 60)
    details = _job(lab, job)
    assert details["state"] == "cancelled", details
    assert details["running"] == details["queued"] == 0, details
    assert details["cancelled"] >= frames - details["done"] - 1, details


def test_a_hub_reboot_mid_job_and_the_job_still_finishes(lab: JoinLab) -> None:
    """The hub (Slurm's controller, the share, the job service) reboots while both workers
    render, and the job still finishes with every frame whole. (That a task keeps trying the
    share while it is away is tests/test_jobs_slurm.py's, with smbd really gone.)"""
    frames = 8
    scene = "/root/reboot.blend"
    _make_scene(lab, first_job.scene_script(frames, samples=512, size=(480, 270)), scene)
    job = _submit(lab, scene, frames)
    _running_on(lab, job, {W1, W2}, 120)
    rebooted_at = time.monotonic()
    lab.farm.reboot(HUB)
    deadline = time.monotonic() + 120
    while lab.run("jobs", "--json").returncode != 0:  # the job service answers again
        assert time.monotonic() < deadline, "the hub's job service did not come back"
        time.sleep(2)
    details = _wait_done(lab, job, frames, 600)
    took = time.monotonic() - rebooted_at
    print(f"hub rebooted mid-job: all {frames} frames done {took:.0f} s after the reboot began")
    assert [f["state"] for f in details["frame_states"]] == ["done"] * frames, details
    lab.run("collect", job, "--to", "/root/rebooted")
    pngs = first_job.whole_pngs(lab.farm, BOSS, "/root/rebooted")
    assert sorted(pngs) == [f"frame_{n:04d}.png" for n in range(1, frames + 1)], pngs
    assert len(set(pngs.values())) == frames


def test_a_revoked_boss_can_no_longer_submit(lab: JoinLab) -> None:
    bundle, passfile = "/root/boss2.keybundle.age", "/root/boss2-passphrase"
    store = prov.store_dir(lab.farm)
    lab.farm.put(BOSS, bundle, (store / bundle_filename(Role.BOSS, BOSS2)).read_bytes())
    lab.farm.put(BOSS, passfile, prov.lab_passphrase(lab.farm).encode() + b"\n")
    as_boss2 = ("--bundle", bundle, "--passphrase-file", passfile)
    before = lab.run("jobs", "--json", *as_boss2)
    assert before.returncode == 0, before.stdout + before.stderr  # boss2 may, so far
    # Other tests' jobs may still be queued or finishing: they can only leave, never arrive.
    queued_before = set(lab.sh(HUB, "squeue -h -o %F").split())
    records_before = lab.sh(HUB, "ls /var/lib/farmhand-jobs/jobs 2>/dev/null || true")

    pki.revoke(KeyStore.open(store), BOSS2, prov.lab_passphrase(lab.farm))
    report = prov.deploy_role(lab.farm, Role.HUB, [HUB])
    assert report.ok, report.failure_message()
    # The revoked boss: one line, non-zero, nothing queued and nothing left on the share.
    # (boss2 keeps the bundle it had: the hub no longer takes its job key.)
    refused = lab.run("submit", SCENE, "--frames", "1-2", *as_boss2)
    assert refused.returncode != 0
    lines = (refused.stdout + refused.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert "refused this boss's job key" in lines[0], lines
    assert "was this boss revoked" in lines[0], lines
    assert set(lab.sh(HUB, "squeue -h -o %F").split()) <= queued_before
    assert lab.sh(HUB, "ls /var/lib/farmhand-jobs/jobs 2>/dev/null || true") == records_before
    assert lab.sh(HUB, "find /srv/farmhand/farm/scenes -name '*.part' | wc -l") == "0"
    # boss1, not revoked, still may.
    assert lab.run("jobs", "--json").returncode == 0


def test_a_clone_started_mid_job_claims_a_certificate_joins_and_takes_frames(lab: JoinLab) -> None:
    """worker0002 is powered off (cleanly: its certificate is free) and its disk becomes a
    snapshot; a job starts on worker0001 alone, then a clone of the snapshot boots, claims the
    free certificate, its slurmd joins the cluster as that node, and it renders frames."""
    frames = 10
    scene = "/root/clone.blend"
    _make_scene(lab, first_job.scene_script(frames, samples=512, size=(480, 270)), scene)
    lab.farm.poweroff(W2)
    try:
        _wait_for_node(lab, W2, "down", 120)  # Slurm's own verdict, not a test's shortcut
        job = _submit(lab, scene, frames)
        _running_on(lab, job, {W1}, 120)
        booted = time.time()  # the frames' stamps are the workers' clocks: this machine's
        lab.farm.add_clones(W2, [("m1", "render")])
        deadline = time.monotonic() + 120
        while not (claimed := support.lab.holds(lab.farm, "m1")):
            assert time.monotonic() < deadline, "the clone claimed no certificate"
            time.sleep(1)
        details = _wait_done(lab, job, frames, 600)
        by_worker = [f.get("worker") for f in details["frame_states"]]
        print(f"clone m1 claimed {claimed}; job done {time.time() - booted:.0f} s after its boot")
        assert claimed == W2  # the only free certificate in the pool of two
        assert [f["state"] for f in details["frame_states"]] == ["done"] * frames, details
        assert claimed in by_worker, by_worker  # the clone took frames
        clone_frames = [f for f in details["frame_states"] if f.get("worker") == claimed]
        assert all(f["start"] > booted - 1 for f in clone_frames)
    finally:
        # Back as the tests after this one expect: the clone gone (cleanly: its certificate
        # released), worker0002 itself holding worker0002 and idle in Slurm.
        if any(r.name == "m1" and r.pid is not None for r in lab.farm.records()):
            lab.farm.poweroff("m1")
        lab.farm.start(W2)
        _wait_for_node(lab, W2, "idle", 180)


def _write_leases(lab: JoinLab, leases: list[dict[str, Any]]) -> None:
    now = int(time.time())
    table = {"updated": now, "ttl": 300, "leases": leases}
    folder = "/srv/farmhand/farm/.farmhand"
    lab.sh(
        HUB,
        f"mkdir -p {folder} && cat > {folder}/leases.json && chown -R farmhand:farmhand {folder}",
        input=json.dumps(table),
    )


def test_status_reports_the_hub_every_live_worker_leases_and_cost(lab: JoinLab) -> None:
    # The hub's real lease table: each worker, named workerNNNN, holds its own certificate.
    code, report = lab.status()
    assert code == 0, report
    assert report["leases"]["available"] is True, report["leases"]
    real = {w["name"]: w["lease"] for w in report["workers"]}
    assert {name: lease["hostname"] for name, lease in real.items()} == {W1: W1, W2: W2}
    assert all(lease["machine"] for lease in real.values())

    # A table with history (a clone, a revoked certificate seen online) for the rest. The
    # workers' renewals would rewrite it, so they pause first.
    for worker in (W1, W2):
        lab.sh(worker, "systemctl stop farmhand-lease-renew.timer")
    now = int(time.time())
    _write_leases(
        lab,
        [
            {
                "name": W1,
                "ip": "10.87.99.1",
                "machine": "m-one",
                "hostname": "worker0001",
                "since": now - 7200,
                "renewed": now,
                "expires": now + 300,
            },
            {
                "name": W2,
                "ip": "10.87.99.2",
                "machine": "m-two",
                "hostname": "clone-b",
                "since": now - 3600,
                "renewed": now,
                "expires": now + 300,
            },
            {
                "name": "worker0077",
                "ip": "10.87.99.77",
                "machine": "m-x",
                "hostname": "old",
                "since": now - 60,
                "renewed": now,
                "expires": now + 300,
            },
        ],
    )
    code, report = lab.status()
    assert code == 0, report
    assert report["farm"] == "lab"
    assert report["member"] == {"name": BOSS, "ip": "10.87.10.1"}
    hub = report["hub"]
    assert hub["reachable"] is True
    assert hub["ip"] == "10.87.0.1"
    assert 0 < hub["rtt_ms"] < 1000
    assert report["nebula"]["version"]  # the package join installed answers -version
    assert {s["name"]: s["reachable"] for s in report["shares"]} == {"farm": True, "queue": True}
    # Slurm's controller: the Nebula firewall lets only workers reach it, not bosses.
    assert report["queue"]["port"] == 6817
    assert report["queue"]["reachable"] is False
    workers = {w["name"]: w for w in report["workers"]}
    assert sorted(workers) == [W1, W2]
    assert all(w["reachable"] for w in workers.values()), workers
    assert workers[W1]["ip"] == "10.87.99.1"
    assert workers[W1]["lease"]["machine"] == "m-one"
    assert workers[W2]["lease"]["hostname"] == "clone-b"
    assert report["leases"]["available"] is True
    assert [x["name"] for x in report["revoked"]["seen_online"]] == ["worker0077"]
    assert report["certificates"]["expiring"] == []
    assert report["certificates"]["ca"][0]["days_left"] > 1000
    cost = report["cost"]
    assert cost["currency"] == "EUR"
    assert cost["running_workers"] == 2
    assert cost["per_hour"] == pytest.approx(2 * PRICE)
    assert cost["since_boot"] == pytest.approx(PRICE * 3, abs=0.05)  # 2 h + 1 h

    human = lab.run("status")
    assert human.returncode == 0, human.stderr
    assert "clone-b" in human.stdout  # the machine holding worker0002's certificate
    assert "0.70 EUR/hour" in human.stdout


def test_status_shows_a_powered_off_worker_down(lab: JoinLab) -> None:
    lab.farm.stop(W2)
    code, report = lab.status()
    assert code == 0, report  # the hub answers: a missing worker is news, not a failure
    workers = {w["name"]: w for w in report["workers"]}
    assert workers[W1]["reachable"] is True
    assert workers[W2]["reachable"] is False
    assert workers[W2]["probe"] == "timeout"
    assert report["cost"]["running_workers"] == 1


def test_leave_removes_the_unit_the_config_and_the_keys(lab: JoinLab) -> None:
    result = lab.run("join", "--leave")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "left the farm" in result.stdout
    assert lab.sh(BOSS, f"test -e {UNIT} && echo left || echo gone") == "gone"
    assert lab.sh(BOSS, f"test -e {CONFIG_DIR} && echo left || echo gone") == "gone"
    assert lab.sh(BOSS, f"test -e {SERVICE_DIR} && echo left || echo gone") == "gone"
    units = lab.sh(BOSS, "systemctl list-units --all --no-legend 'farmhand*' | wc -l")
    assert units == "0"
    assert lab.sh(BOSS, "pgrep -x nebula || echo none") == "none"
    assert lab.sh(BOSS, "command -v nebula || echo none") == "none"  # join's package went too
    assert lab.sh(BOSS, "ip link show nebula1 2>/dev/null || echo none") == "none"
    # Without the overlay, status says the hub is unreachable and exits non-zero.
    failed = lab.run("status", "--bundle", BUNDLE, "--passphrase-file", PASSFILE, "--timeout", "1")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "does not answer" in failed.stdout


def test_a_linux_laptop_can_instead_deploy_the_boss_role_on_itself(lab: JoinLab) -> None:
    """`farmhand deploy boss @local`: the push deploy's code path, run on the laptop itself."""
    args = ("deploy", "boss", "@local", "--bundle", BUNDLE, "--passphrase-file", PASSFILE)
    first = lab.run(*args, "--no-apt-update")
    assert first.returncode == 0, first.stdout + first.stderr
    assert lab.sh(BOSS, "systemctl is-active farmhand-nebula.service") == "active"
    assert lab.sh(BOSS, "ping -c 1 -W 5 10.87.0.1 >/dev/null && echo ok") == "ok"
    again = lab.run(*args, "--no-apt-update")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "@local: 0 changed" in again.stdout
