"""`farmhand submit`, `jobs`, `job`, `cancel` and `collect`: render jobs from the boss,
through the hub's job service (a thin layer over farmhand.jobs)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from farmhand import blender_addon
from farmhand.cli.common import PassphraseFile, console, passphrase
from farmhand.errors import UsageError
from farmhand.jobs import access, api, local_api
from farmhand.join.paths import JoinPaths, config_root
from farmhand.keystore.bundle import open_bundle

BundleOption = Annotated[
    Path | None,
    typer.Option(
        "--bundle", help="This boss's keybundle (else the farm this machine joined).",
        show_default=False,
    ),
]  # fmt: skip
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@contextlib.contextmanager
def _farm(bundle: Path | None, passphrase_file: Path | None) -> Iterator[api.Farm]:
    if bundle is None:
        with access.from_join(JoinPaths.default()) as farm:
            yield farm
    else:
        with access.from_bundle(open_bundle(bundle, passphrase(passphrase_file))) as farm:
            yield farm


@contextlib.contextmanager
def _bar(what: str, total: int | None, quiet: bool) -> Iterator[Callable[[int], None] | None]:
    """A progress bar of bytes moved (``total`` None: the size is not known up front)."""
    if quiet:
        yield None
        return
    columns = ("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(what, total=total)
        yield lambda moved: progress.advance(task, moved)


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def submit(
    scene: Annotated[Path, typer.Argument(help="The .blend to render.", show_default=False)],
    frames: Annotated[str, typer.Option("--frames", help="Like 1-250 or 1,3,5-9.")],
    chunk: Annotated[int, typer.Option("--chunk", help="Frames per task.", min=1)] = 1,
    name: Annotated[
        str, typer.Option("--name", help="The job's name (default: the scene's).")
    ] = "",
    output: Annotated[
        str, typer.Option("--output", help="File name pattern, # for the frame number.")
    ] = "",
    blender: Annotated[
        str,
        typer.Option(
            "--blender",
            help="Only workers with this Blender (like 4.2 or 4.2.3; default: the one most "
            "workers have).",
        ),
    ] = "",
    pack: Annotated[
        bool,
        typer.Option(
            "--pack/--no-pack",
            help="Send the files the scene references (textures, libraries) with it.",
        ),
    ] = True,
    allow_missing: Annotated[
        bool,
        typer.Option("--allow-missing", help="Submit even if referenced files are missing."),
    ] = False,
    as_json: JsonOption = False,
    bundle: BundleOption = None,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Pack SCENE with the files it references, upload it to the hub's share and queue one
    task per frame (or --chunk frames)."""
    api.check_scene(scene)
    api.check_frames(frames, chunk)  # before any packing
    with (
        _farm(bundle, passphrase_file) as farm,
        api.prepared(scene, pack=pack, allow_missing=allow_missing) as ready,
        _bar(f"uploading {scene.name}", ready.size, as_json) as bar,
    ):
        answer = api.submit_prepared(farm, ready, frames, chunk, name, output, blender, bar)
    if as_json:
        typer.echo(json.dumps(answer))
    else:
        needs = answer.get("blender")
        on = f" on Blender {needs}" if needs else " on any worker's Blender"
        if answer["missing"]:
            console.print(
                f"without {len(answer['missing'])} missing file(s): {', '.join(answer['missing'])}",
                soft_wrap=True,
            )
        console.print(
            f"job {answer['job']}: {answer['frames']} frame(s) in {answer['tasks']} task(s){on} "
            f"(see 'farmhand job {answer['job']}')",
            soft_wrap=True,
        )


def jobs(
    as_json: JsonOption = False,
    bundle: BundleOption = None,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Every job: frames done / running / queued / failed, elapsed, ETA and cost so far."""
    with _farm(bundle, passphrase_file) as farm:
        listed = api.list_jobs(farm)
    if as_json:
        typer.echo(json.dumps(listed, indent=1))
        return
    table = Table(title=f"{len(listed)} job(s)", title_justify="left")
    for column in ("job", "name", "state", "done", "running", "queued", "failed", "elapsed",
                   "ETA", "cost"):  # fmt: skip
        table.add_column(column)
    for job in listed:
        cost = f"{job['cost']:.2f} {job['currency']}" if job.get("cost") is not None else "-"
        table.add_row(
            job["job"], job["name"], job["state"], str(job["done"]), str(job["running"]),
            str(job["queued"]), str(job["failed"]), _duration(job["elapsed"]),
            _duration(job["eta"]), cost,
        )  # fmt: skip
    console.print(table)


def job(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job id.", show_default=False)],
    as_json: JsonOption = False,
    bundle: BundleOption = None,
    passphrase_file: PassphraseFile = None,
) -> None:
    """One job, frame by frame: state, worker, time, attempts and Blender's reason."""
    with _farm(bundle, passphrase_file) as farm:
        details = api.show(farm, job_id)
    if as_json:
        typer.echo(json.dumps(details, indent=1))
        return
    console.print(
        f"job {details['job']} {details['name']!r}: {details['state']}, {details['done']}/"
        f"{details['frames']} done, {details['failed']} failed",
        soft_wrap=True,
    )
    table = Table()
    for column in ("frame", "state", "worker", "time", "attempts", "reason"):
        table.add_column(column)
    hints: set[str] = set()
    for frame in details["frame_states"]:
        took = frame["end"] - frame["start"] if "end" in frame and "start" in frame else None
        table.add_row(
            str(frame["frame"]), frame["state"], frame.get("worker", ""), _duration(took),
            str(frame.get("attempts", "")), frame.get("error", ""),
        )  # fmt: skip
        if frame.get("hint"):
            hints.add(frame["hint"])
    console.print(table)
    for hint in sorted(hints):
        console.print(f"how to fix: {hint}", soft_wrap=True)


def cancel(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job id.", show_default=False)],
    bundle: BundleOption = None,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Cancel a job: its queued and running tasks stop; finished frames stay."""
    with _farm(bundle, passphrase_file) as farm:
        api.cancel(farm, job_id)
    console.print(f"job {job_id} cancelled")


def collect(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job id.", show_default=False)],
    to: Annotated[Path, typer.Option("--to", help="Folder for the frames.")],
    bundle: BundleOption = None,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Download the job's finished frames into --to; frames already there are skipped, so it
    can be run again as the job goes on."""
    with _farm(bundle, passphrase_file) as farm, _bar("collecting", None, False) as progress:
        fetched, skipped = api.collect(farm, job_id, to, progress)
    console.print(f"{len(fetched)} frame(s) downloaded to {to}, {len(skipped)} already there")


def serve_api(
    port: Annotated[
        int, typer.Option("--port", help="Port on 127.0.0.1 (0: any free one).", min=0, max=65535)
    ] = local_api.DEFAULT_PORT,
    bundle: BundleOption = None,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Serve the job commands as a local HTTP API on 127.0.0.1, for the Blender add-on and
    other tools (GET /jobs, POST /new_job, DELETE /jobs, GET /jobs/ID, GET /openapi.json)."""
    if bundle is None:
        paths = JoinPaths.default()
        with access.from_join(paths):
            pass  # a machine that has not joined is told so now, not at the first request

        def open_farm() -> contextlib.AbstractContextManager[api.Farm]:
            return access.from_join(paths)
    else:
        opened = open_bundle(bundle, passphrase(passphrase_file))
        with access.from_bundle(opened):
            pass  # a worker's bundle is refused now

        def open_farm() -> contextlib.AbstractContextManager[api.Farm]:
            return access.from_bundle(opened)

    root = config_root()
    secret = local_api.token(root)
    try:
        server = local_api.make_server(local_api.JobApi(open_farm), secret, port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {local_api.HOST}:{port}: {exc.strerror}") from None
    bound = server.server_address[1]
    console.print(
        f"farmhand API on http://{local_api.HOST}:{bound} (token: {root / local_api.TOKEN_FILE}; "
        "Ctrl-C stops it)",
        soft_wrap=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def build_addon(
    to: Annotated[
        Path, typer.Option("--to", help="Folder to write farmhand_blender.zip into.")
    ] = Path(),
) -> None:
    """Build the Blender add-on ("Render on farm" and the farm's jobs, through `farmhand api`):
    install the zip from Blender's Edit > Preferences > Add-ons > Install."""
    made = blender_addon.build_zip(to)
    console.print(f"wrote {made}", soft_wrap=True)
