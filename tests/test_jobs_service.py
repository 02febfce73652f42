"""The hub's job service without Slurm (onhost/jobs.py): what it refuses before sbatch, and
the rule that a frame is done only once its file is on the share under its final name."""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from farmhand.onhost import jobs


@pytest.fixture
def config(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "state").mkdir()
    (tmp_path / "farm" / "renders").mkdir(parents=True)
    return dict(
        jobs.HUB_DEFAULTS,
        share_root=str(tmp_path / "farm"),
        state_dir=str(tmp_path / "state"),
        sbatch=str(tmp_path / "no-such-sbatch"),
    )


def _reserve(config: dict[str, Any], scene: bytes | None, boss: str = "alice") -> str:
    job = str(jobs.handle({"op": "reserve"}, boss, config, 100.0)["job"])
    if scene is not None:
        path = Path(jobs.scene_path(config, job))
        path.parent.mkdir(parents=True)
        path.write_bytes(scene)
    return job


def _submit(config: dict[str, Any], job: str, boss: str = "alice", **extra: Any) -> None:
    request = {"op": "submit", "job": job, "chunks": [[1, 3]], **extra}
    jobs.handle(request, boss, config, 101.0)


def _refused(reason: str, call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(jobs.Refused) as raised:
        call(*args, **kwargs)
    assert raised.value.reason == reason, raised.value
    return str(raised.value)


def test_ids_count_up(config: dict[str, Any]) -> None:
    assert [_reserve(config, None) for _ in range(3)] == ["1", "2", "3"]


def test_what_is_refused_before_slurm(config: dict[str, Any]) -> None:
    assert "has no scene" in _refused("no-scene", _submit, config, _reserve(config, None))
    text = _refused("not-blend", _submit, config, _reserve(config, b"PK\x03\x04zip"))
    assert "does not start with BLENDER" in text
    job = _reserve(config, b"BLENDER-v304")
    assert "of this boss" in _refused("unknown", _submit, config, job, boss="bob")
    _refused("bad-request", _submit, config, job, chunks=[[5, 1]])
    _refused("bad-request", _submit, config, job, output="../x_####")
    _refused("bad-request", _submit, config, job, blender="latest")
    # Checked whole: a final newline is not let through by a ``$``.
    _refused("bad-request", _submit, config, job, output="frame_####\n")
    _refused("bad-request", _submit, config, job, blender="3.4.1\n")
    _refused("bad-request", _submit, config, job, name="anim\n")
    _refused("unknown", jobs.handle, {"op": "show", "job": "1\n"}, "alice", config, 1.0)
    _refused("unknown", jobs.handle, {"op": "show", "job": "99"}, "alice", config, 1.0)
    _refused("unknown", jobs.handle, {"op": "show", "job": "1; rm"}, "alice", config, 1.0)
    # A hub without Slurm says so, in one line, and the job stays unqueued.
    text = _refused("no-manager", _submit, config, job)
    assert 'render_manager = "slurm"' in text
    assert "\n" not in text
    assert jobs.handle({"op": "list"}, "alice", config, 1.0)["jobs"] == []


def test_compressed_blends_are_blends() -> None:
    assert jobs.blend_kind(gzip.compress(b"BLENDER-v304" + bytes(100))) == ""
    assert jobs.blend_kind(b"\x28\xb5\x2f\xfd" + bytes(8)) == ""  # zstd
    assert "not a .blend" in jobs.blend_kind(gzip.compress(b"hello"))
    assert jobs.blend_kind(b"") == "an empty file"
    assert jobs.saved_with(b"BLENDER-v304") == "3.4"


def test_a_frame_is_done_only_when_its_file_is_there(config: dict[str, Any]) -> None:
    record = {"job": "7", "state": "queued", "chunks": [[1, 2]], "renders": "renders/7"}
    status = Path(config["share_root"]) / "renders/7/.farmhand"
    status.mkdir(parents=True)
    for frame in (1, 2):
        (status / f"{frame:06d}.json").write_text(
            json.dumps({"state": "done", "file": f"frame_{frame:04d}.png", "start": 1, "end": 2})
        )
    (status.parent / "frame_0001.png").write_bytes(b"png")
    (status.parent / ".frame_0002.png.part").write_bytes(b"pn")  # still being written
    states = [f["state"] for f in jobs.frames_of(record, config)]
    assert states == ["done", "running"]


def test_frame_names_follow_blenders_padding() -> None:
    assert jobs.frame_name("frame_####", 7) == "frame_0007"
    assert jobs.frame_name("shot_#_v2", 12) == "shot_12_v2"


@pytest.mark.parametrize(
    ("output", "name", "frame"),
    [
        ("frame_####", "frame_0007.png", 7),
        ("frame_####", "frame_12345.exr", 12345),  # more digits than the padding
        ("shot_#_v2", "shot_12_v2.png", 12),
        ("shot_#_v2", "shot_12_v2", 12),  # no extension
        ("frame_####", "frame_007.png", None),  # less padding than asked: not Blender's
        ("frame_####", "other_0007.png", None),
        ("frame_####", "frame_0007.png.part", None),
        ("frame_####", ".frame_0007.png.worker0001.part", None),
    ],
)
def test_a_saved_files_frame_is_read_from_its_name(
    output: str, name: str, frame: int | None
) -> None:
    assert jobs.frame_of_file(output, name) == frame


def test_blenders_saved_line_is_recognised() -> None:
    for line, path in (
        ("Saved: '/tmp/x/frame_0001.png'\n", "/tmp/x/frame_0001.png"),
        (' Saved: "/tmp/x/frame_0002.png"\n', "/tmp/x/frame_0002.png"),
    ):
        found = jobs._SAVED.match(line)
        assert found is not None
        assert found.group(1) == path
    assert jobs._SAVED.match("Fra:1 Mem:12M | Saved: nothing\n") is None


def test_the_reason_and_the_hint() -> None:
    out = "Fra:2 Mem:9M | Build without OpenImageDenoiser\nError: Build without OpenImageDenoiser\n"
    reason = jobs.blender_reason(out)
    assert reason == "Error: Build without OpenImageDenoiser"
    assert "OpenImageDenoise" in jobs.hint_for(reason)
    assert jobs.hint_for("Error: out of memory") == ""


def test_the_service_parses_as_python_3_6_and_imports_only_the_standard_library() -> None:
    source = Path(jobs.__file__).read_text()
    tree = ast.parse(source, feature_version=(3, 6))  # EL 8's python3
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


def test_a_worker_tells_slurm_its_blender_as_two_features() -> None:
    assert jobs.blender_features("4.2.3") == ["blender-4.2", "blender-4.2.3"]
    assert jobs.blender_features("3.4") == ["blender-3.4"]
    for bad in ("", "4", "4.2.3\n", "4.2.3,gpu", "4.2 3"):
        assert jobs.blender_features(bad) == [], bad


def test_a_job_needs_the_blender_most_workers_have() -> None:
    sinfo = (
        "worker0001 blender-3.4,blender-3.4.1\n"
        "worker0002 gpu,blender-4.2,blender-4.2.3\n"
        "worker0003 blender-4.2,blender-4.2.3\n"
        "worker0004 (null)\n"
    )
    assert jobs.most_common_blender(sinfo) == "4.2.3"
    # A node listed twice (two partitions) counts once; a tie goes to the newest.
    tie = "worker0001 blender-3.4.1\nworker0001 blender-3.4.1\nworker0002 blender-3.10.0\n"
    assert jobs.most_common_blender(tie) == "3.10.0"
    # No worker told Slurm yet, or junk: no version, so no constraint.
    assert jobs.most_common_blender("worker0001 (null)\nworker0002 blender-x\n\n") == ""


def test_a_jobs_files_are_checked_before_slurm(config: dict[str, Any]) -> None:
    job = _reserve(config, b"BLENDER-v304")
    digest = "ab" * 32
    store = Path(config["share_root"]) / jobs.FILES
    for files, why in (
        ("tex/a.png", "files must be a list"),
        ([["tex/a.png"]], "bad file"),
        ([["../a.png", digest]], "starts with a dot"),
        ([["tex/.a.png", digest]], "starts with a dot"),
        ([['tex/a".png', digest]], "a control character or one of"),
        ([["tex/a\n.png", digest]], "a control character or one of"),
        ([["scene.blend", digest]], "the job's own scene"),
        ([["tex/a.png", "AB" * 32]], "bad sha256"),
        ([["tex/a.png", digest + "\n"]], "bad sha256"),
        ([["a", digest]] * (jobs.MAX_FILES + 1), "at most"),
    ):
        assert why in _refused("bad-request", _submit, config, job, files=files), files
    # A file not on the share yet: refused as such; once there, a duplicate is named.
    assert "is not on the share" in _refused(
        "no-file", _submit, config, job, files=[["tex/a.png", digest]]
    )
    store.mkdir(parents=True)
    (store / digest).write_bytes(b"texture")
    text = _refused(
        "bad-request", _submit, config, job, files=[["A.png", digest], ["a.png", digest]]
    )
    assert "listed twice" in text


def test_a_worker_puts_each_file_where_the_scene_looks_and_checks_its_sha256(
    tmp_path: Path,
) -> None:
    share = tmp_path / "mnt"
    (share / jobs.RENDERS).mkdir(parents=True)  # a mounted farm share
    (share / jobs.FILES).mkdir(parents=True)
    good, bad = b"a texture", b"another texture"
    digest = hashlib.sha256(good).hexdigest()
    (share / jobs.FILES / digest).write_bytes(good)
    worker = jobs.Share(dict(jobs.WORKER_DEFAULTS, mount=str(share), name="worker0001"))
    folder = tmp_path / "job"
    folder.mkdir()
    files = [["tex/wood.png", digest], ["_outside_project/lib/wood.png", digest]]
    jobs.fetch_files(worker, str(folder), files)
    assert (folder / "tex/wood.png").read_bytes() == good
    assert (folder / "_outside_project/lib/wood.png").read_bytes() == good
    # A file on the share that does not match its name is never rendered with.
    wrong = hashlib.sha256(b"what the job listed").hexdigest()
    (share / jobs.FILES / wrong).write_bytes(bad)
    with pytest.raises(jobs.FetchError, match="does not match its sha256"):
        jobs.fetch_files(worker, str(tmp_path / "job"), [["tex/other.png", wrong]])
    assert not (folder / "tex/other.png").exists()
