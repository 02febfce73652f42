"""Benchmark: render jobs through the farm, from the boss's `farmhand submit` to the frames.

Run from the project root, as root, on Linux::

    .venv/bin/python -m bench.jobs               # about 10 minutes with the image cached
    .venv/bin/python -m bench.jobs --frames 8 --samples 256
    .venv/bin/python -m bench.jobs --down        # remove a bench lab left by --keep or a crash

On a lab of its own (prefix ``fhbjob``): the hub and two workers get the real deploys (Slurm),
boss1 gets farmhand from a wheelhouse and joins with ``farmhand join --service``, as in
``farmhand lab up``. Each worker is pinned to one CPU of its own (every process of its
container, and so every Blender it starts), so that two workers are two machines' worth of CPU
and not two shares of the same cores. The frame is Blender's default cube in Cycles, CPU-bound
for a few seconds. Measured, each against the baseline issue 13 names:

1. **throughput**: the same job on 2 workers against 1 worker (the other drained in Slurm),
   frames per second from the first frame's start to the last frame's end (goal >= 1.8x);
2. **submit to first frame started**: from the moment ``farmhand submit`` starts on boss1 to
   the first frame's start on a worker, upload and queueing included (goal <= 3 s);
3. **idle gap**: on each worker, from one frame's end to its next frame's start, median and
   worst (goal <= 0.5 s), in the runs above (``--chunk`` frames per task, 4 by default: one
   Blender renders a task's frames back to back); the gap between tasks of one frame each
   (Slurm starting the next task) is printed beside it;
4. **kill to restart**: a worker hard-killed mid-frame, to that frame running again on the
   other worker (goal <= 45 s);
5. **scene upload**: a 64 MiB scene-sized file from boss1 to the hub over the overlay, through
   farmhand's SMB upload (what ``submit`` does) against ``scp`` to the hub's sshd over the same
   overlay (goal >= 0.8x).

Frame start and end times are the workers' own stamps in ``farmhand job --json``; containers
share this machine's clock, and boss1's stamps are taken on boss1, so ssh latency from here
does not count.

Exit status: 0 when every target passes, 1 when one fails, 2 when the benchmark could not run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.harness import BenchError, LabBench, add_lab_options
from bench.harness import main as harness_main
from farmhand.keystore.plan import Role
from farmhand.lab import first_job, provision
from farmhand.lab.farm import LabFarm
from farmhand.lab.system import cgroup_pids, lab_cgroups
from farmhand.lab.wheelhouse import ON_PATH, build_wheelhouse

PREFIX = "fhbjob"
HUB, W1, W2, BOSS = "hub", "worker0001", "worker0002", first_job.BOSS
SCENE = "/root/bench.blend"
UPLOAD_MIB = 64
TARGETS = {"throughput": 1.8, "first_frame": 3.0, "gap": 0.5, "restart": 45.0, "upload": 0.8}


def say(line: str) -> None:
    print(f"[bench.jobs] {line}", flush=True)


def boss(farm: LabFarm, script: str) -> str:
    result = farm.exec(BOSS, ["sh", "-c", script])
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise BenchError(f"on {BOSS}: {lines[-1] if lines else script}")
    return result.stdout


def job(farm: LabFarm, job_id: str) -> dict[str, Any]:
    return dict(json.loads(boss(farm, f"{ON_PATH} job {job_id} --json")))


def submit(farm: LabFarm, frames: int, chunk: int = 1) -> tuple[str, float]:
    """A job of ``frames`` frames in chunks of ``chunk``, and when ``farmhand submit`` started
    (boss1's clock)."""
    out = boss(
        farm,
        f"date +%s.%N; {ON_PATH} submit {SCENE} --frames 1-{frames} --chunk {chunk} --json",
    )
    started, answer = out.split("\n", 1)
    return str(json.loads(answer)["job"]), float(started)


def wait_done(farm: LabFarm, job_id: str, frames: int, seconds: float = 900) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    details = job(farm, job_id)
    while details["done"] + details["failed"] < frames:
        if time.monotonic() > deadline:
            raise BenchError(f"job {job_id} not done in {seconds:.0f} s: {details['done']} done")
        time.sleep(1)
        details = job(farm, job_id)
    if details["failed"]:
        reasons = {f.get("error") for f in details["frame_states"] if f["state"] == "failed"}
        raise BenchError(f"job {job_id}: {details['failed']} frame(s) failed: {reasons}")
    return details


def pin(farm: LabFarm, name: str, cpu: int) -> int:
    """Every process of lab host ``name`` (and so all it starts later) on CPU ``cpu`` alone."""
    pinned = 0
    for pid in cgroup_pids(lab_cgroups(f"{farm.prefix}-{name}", farm.cgroup_group)):
        try:
            os.sched_setaffinity(pid, {cpu})
            pinned += 1
        except OSError:
            continue  # gone meanwhile
    if not pinned:
        raise BenchError(f"found no process of {name} to pin")
    return pinned


def node_state(farm: LabFarm, node: str, state: str) -> None:
    result = farm.exec(HUB, ["scontrol", "update", f"nodename={node}", f"state={state}",
                             *(["reason=bench"] if state == "drain" else [])])  # fmt: skip
    if result.returncode != 0:
        raise BenchError(f"scontrol {state} {node}: {result.stderr.strip()}")


def wait_idle(farm: LabFarm, nodes: Sequence[str], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        found = provision.sinfo_nodes(farm)
        if all(found.get(n) == "idle" for n in nodes):
            return
        if time.monotonic() > deadline:
            raise BenchError(f"Slurm nodes not idle: {found}")
        time.sleep(1)


def span(details: dict[str, Any]) -> float:
    frames = details["frame_states"]
    return float(max(f["end"] for f in frames) - min(f["start"] for f in frames))


def gaps(details: dict[str, Any], chunk: int = 0) -> list[float]:
    """Each worker's idle time between consecutive frames of the job; with ``chunk``, only
    between frames of one task (its chunk), without it, every gap."""
    found: list[float] = []
    by_worker: dict[str, list[dict[str, Any]]] = {}
    for frame in details["frame_states"]:
        by_worker.setdefault(str(frame["worker"]), []).append(frame)
    for frames in by_worker.values():
        frames.sort(key=lambda f: f["start"])
        found += [
            b["start"] - a["end"]
            for a, b in itertools.pairwise(frames)
            if not chunk or (a["frame"] - 1) // chunk == (b["frame"] - 1) // chunk
        ]
    return found


def kill_to_restart(farm: LabFarm, frames: int) -> tuple[float, str]:
    """A job of one frame per task; (seconds from the hard kill to the killed worker's frame
    running again elsewhere, the job)."""
    job_id, _ = submit(farm, frames)
    deadline = time.monotonic() + 120
    while True:
        states = job(farm, job_id)["frame_states"]
        running = [f["frame"] for f in states if f["state"] == "running" and f.get("worker") == W1]
        if running:
            break
        if time.monotonic() > deadline:
            raise BenchError(f"no frame of job {job_id} ran on {W1}")
        time.sleep(0.3)
    victim = running[0]
    farm.kill(W1)
    killed = time.time()
    deadline = time.monotonic() + 300
    while True:
        frame = next(f for f in job(farm, job_id)["frame_states"] if f["frame"] == victim)
        if frame.get("worker") == W2 and frame["state"] in ("running", "done"):
            return float(frame["start"]) - killed, job_id
        if time.monotonic() > deadline:
            raise BenchError(f"frame {victim} did not run again in 300 s: {frame}")
        time.sleep(0.5)


_UPLOAD = """
import sys, time
from pathlib import Path
from farmhand.jobs import access, transfer
from farmhand.join.paths import JoinPaths
with access.from_join(JoinPaths.default()) as farm:
    started = time.monotonic()
    transfer.upload(farm.share, Path(sys.argv[1]), "scenes/bench-upload/scene.blend")
    print(time.monotonic() - started)
    transfer.remove_tree(farm.share, "scenes/bench-upload")
"""


def upload_ratio(farm: LabFarm) -> tuple[float, float]:
    """(farmhand's SMB upload, scp) in MiB/s, boss1 to the hub over the overlay."""
    data = "/root/bench-upload.blend"
    boss(farm, f"head -c {UPLOAD_MIB << 20} /dev/urandom > {data}")
    python = boss(farm, f"readlink -f {ON_PATH}").strip().rsplit("/", 1)[0] + "/python"
    farm.put(BOSS, "/root/bench-upload.py", _UPLOAD.encode(), 0o600)
    farm.put(BOSS, "/root/.bench-key", farm.key_path.read_bytes(), 0o600)
    hub = provision.overlay_ip(farm, HUB)
    smb = min(float(boss(farm, f"{python} /root/bench-upload.py {data}")) for _ in range(3))
    scp = (
        f"s=$(date +%s.%N); scp -q -i /root/.bench-key -o StrictHostKeyChecking=no "
        f"-o UserKnownHostsFile=/dev/null {data} root@{hub}:/tmp/bench-upload && "
        f"e=$(date +%s.%N); ssh -i /root/.bench-key -o StrictHostKeyChecking=no "
        f"-o UserKnownHostsFile=/dev/null root@{hub} rm -f /tmp/bench-upload; "
        'python3 -c "print($e - $s)"'
    )
    took = min(float(boss(farm, scp)) for _ in range(3))
    boss(farm, f"rm -f {data} /root/.bench-key /root/bench-upload.py")
    return UPLOAD_MIB / smb, UPLOAD_MIB / took


def setup(farm: LabFarm) -> None:
    if farm.exists() or farm.underlay.namespaces():
        say("an earlier bench lab is still here: removing it first")
        farm.down()
    with ThreadPoolExecutor(max_workers=1) as pool:
        wheels = pool.submit(build_wheelhouse)
        say("lab up: hub, 2 workers, boss1")
        farm.up(workers=2, bosses=1)
        provision.ensure_keys(farm, 2, say)
        say("deploying the hub and the workers (not timed)")
        for role, names in ((Role.HUB, [HUB]), (Role.WORKER, [W1, W2])):
            report = provision.deploy_role(farm, role, names)
            if not report.ok:
                raise BenchError(f"{role.value} deploy failed: {report.failure_message()}")
        joined = first_job.join_boss(farm, wheels.result, say)
    if not joined.passed:
        raise BenchError(joined.detail)
    for cpu, worker in enumerate((W1, W2)):
        say(f"{worker}: {pin(farm, worker, cpu % (os.cpu_count() or 1))} processes on CPU {cpu}")
    wait_idle(farm, (W1, W2))


def run(args: argparse.Namespace, farm: LabFarm) -> int:
    load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"farmhand jobs benchmark: {os.cpu_count()} CPU(s), load {load}")
    if (os.cpu_count() or 1) < 2:
        raise BenchError("two workers on one CPU measure nothing: this needs 2 CPUs or more")
    setup(farm)
    script = first_job.scene_script(args.frames, samples=args.samples, size=(320, 180))
    first_job.make_scene(farm, W1, script, BOSS, SCENE)

    chunk = args.chunk
    say(f"{args.frames} frames in chunks of {chunk} on {W1} alone ({W2} drained)")
    node_state(farm, W2, "drain")
    one_id, _ = submit(farm, args.frames, chunk)
    one = wait_done(farm, one_id, args.frames)
    node_state(farm, W2, "resume")
    wait_idle(farm, (W1, W2))
    say(f"{args.frames} frames in chunks of {chunk} on {W1} and {W2}")
    two_id, submitted = submit(farm, args.frames, chunk)
    two = wait_done(farm, two_id, args.frames)
    frame_seconds = [f["end"] - f["start"] for f in two["frame_states"]]
    first = min(f["start"] for f in two["frame_states"]) - submitted
    idle = gaps(one) + gaps(two)
    within = gaps(one, chunk) + gaps(two, chunk)
    say("uploads: farmhand (SMB) and scp, boss1 to the hub over the overlay")
    smb_rate, scp_rate = upload_ratio(farm)
    say(f"one frame per task: hard-killing {W1} mid-frame")
    restart, killed_job = kill_to_restart(farm, args.frames)
    between = gaps(wait_done(farm, killed_job, args.frames))  # W2's tasks, one after another

    throughput = span(one) / span(two)
    rows = [
        ("throughput, 2 workers / 1 worker", f"{throughput:.2f}x",
         f"{args.frames} frames in {span(one):.1f} s on 1, {span(two):.1f} s on 2",
         throughput >= TARGETS["throughput"], f">= {TARGETS['throughput']}x"),
        ("submit to first frame started", f"{first:.2f} s", "upload and queueing included",
         first <= TARGETS["first_frame"], f"<= {TARGETS['first_frame']:.0f} s"),
        ("idle gap between a worker's frames", f"{statistics.median(idle):.2f} s",
         f"chunks of {chunk}: median of {len(idle)}, worst {max(idle):.2f} s; within a chunk "
         f"median {statistics.median(within or [0]):.2f} s",
         statistics.median(idle) <= TARGETS["gap"], f"<= {TARGETS['gap']} s (median)"),
        ("hard kill to the frame running again", f"{restart:.1f} s", f"on {W2}",
         restart <= TARGETS["restart"], f"<= {TARGETS['restart']:.0f} s"),
        ("scene upload, farmhand / scp", f"{smb_rate / scp_rate:.2f}x",
         f"{smb_rate:.1f} MiB/s against {scp_rate:.1f} MiB/s ({UPLOAD_MIB} MiB)",
         smb_rate / scp_rate >= TARGETS["upload"], f">= {TARGETS['upload']}x"),
    ]  # fmt: skip
    print(f"\nframe time on one CPU: median {statistics.median(frame_seconds):.1f} s")
    print(
        f"idle gap between tasks of one frame each (Slurm starting the next task): median "
        f"{statistics.median(between or [0]):.2f} s of {len(between)}, worst "
        f"{max(between or [0]):.2f} s"
    )
    for what, value, detail, passed, target in rows:
        verdict = "PASS" if passed else "FAIL"
        print(f"  {what:<38} {value:>8}   target {target:<14} {verdict}   ({detail})")
    return 0 if all(row[3] for row in rows) else 1


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.jobs", description=__doc__)
    parser.add_argument("--frames", type=int, default=8, help="frames per job (default 8)")
    parser.add_argument(
        "--samples", type=int, default=128, help="Cycles samples of a frame (default 128)"
    )
    parser.add_argument(
        "--chunk",
        type=int,
        default=4,
        help="frames per task in the throughput and idle-gap runs (default 4: one Blender "
        "renders them back to back); the kill run always has one frame per task",
    )
    add_lab_options(parser, PREFIX)
    return parser.parse_args(argv)


BENCH = LabBench(
    prefix=PREFIX,
    parse_args=parse_args,
    run=run,
    say=say,
    needs_root="bench.jobs runs the lab: it needs root on Linux",
    module="bench.jobs",
)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.jobs``: the shared main loop (bench/harness.py) on this benchmark."""
    return harness_main(BENCH, argv)


if __name__ == "__main__":
    sys.exit(main())
