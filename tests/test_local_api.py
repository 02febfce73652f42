"""`farmhand api` without a farm: the token, who may call it, the envelope and bad requests.
(The routes against a real farm: tests/test_jobs_slurm.py.)"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from farmhand.errors import UsageError
from farmhand.jobs import api, local_api
from farmhand.jobs.access import from_join
from farmhand.join.paths import JoinPaths


@contextlib.contextmanager
def serving(job_api: local_api.JobApi, secret: str) -> Iterator[str]:
    server = local_api.make_server(job_api, secret, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def call(
    url: str, method: str = "GET", body: bytes | None = None, token: str | None = None
) -> tuple[int, dict[str, Any]]:
    assert url.startswith("http://127.0.0.1:")
    request = urllib.request.Request(url, data=body, method=method)  # noqa: S310
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def not_joined(tmp_path: Path) -> local_api.JobApi:
    paths = JoinPaths(tmp_path / "config")
    return local_api.JobApi(lambda: from_join(paths))


def test_the_token_is_made_once_owner_only_and_kept(tmp_path: Path) -> None:
    first = local_api.token(tmp_path / "config")
    path = tmp_path / "config" / local_api.TOKEN_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(first) >= 32
    assert local_api.token(tmp_path / "config") == first
    assert [p.name for p in path.parent.iterdir()] == [local_api.TOKEN_FILE]  # no staged leftover
    path.chmod(0o640)
    with pytest.raises(UsageError, match="readable by others"):
        local_api.token(tmp_path / "config")


def test_it_listens_on_loopback_only(not_joined: local_api.JobApi) -> None:
    server = local_api.make_server(not_joined, "x" * 40, 0)
    try:
        assert server.server_address[0] == "127.0.0.1"
        port = server.server_address[1]
        # This machine's other addresses find nothing on that port.
        others = {
            info[4][0]
            for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
            if not info[4][0].startswith("127.")
        }
        for address in others:
            with socket.socket() as probe:
                probe.settimeout(2)
                assert probe.connect_ex((address, port)) != 0, address
    finally:
        server.server_close()


def test_without_the_token_nothing_but_the_openapi_document(not_joined: local_api.JobApi) -> None:
    secret = "s" * 43
    with serving(not_joined, secret) as url:
        for token in (None, "wrong", secret + "x"):
            for method, path in (("GET", "/jobs"), ("POST", "/new_job"), ("DELETE", "/jobs")):
                status, answer = call(url + path, method, b"{}", token)
                assert status == 401, (method, path, token)
                assert answer == {"data": None, "message": "no token or a wrong one"}
        status, answer = call(url + "/openapi.json")
        assert status == 200
        document = answer["data"]
        assert document["openapi"].startswith("3.")
        assert set(document["paths"]) == {"/jobs", "/jobs/{id}", "/new_job", "/openapi.json"}
        assert set(document["paths"]["/jobs"]) == {"get", "delete"}


def test_bad_requests_get_an_error_in_the_envelope(not_joined: local_api.JobApi) -> None:
    secret = "t" * 43
    with serving(not_joined, secret) as url:
        for method, path, body, code, words in (
            ("POST", "/new_job", b"{not json", 400, "not JSON"),
            ("POST", "/new_job", b"[1, 2]", 400, "JSON object"),
            ("POST", "/new_job", b"{}", 400, "scene is missing"),
            ("POST", "/new_job", b'{"scene": "/x.blend", "frames": 5}', 400, "frames must be"),
            ("POST", "/new_job", b'{"scene": "/x.blend", "frames": "1", "chunk": 0}', 400, "chunk"),
            ("POST", "/new_job", b'{"scene": "/gone.blend", "frames": "1"}', 400, "no such scene"),
            ("DELETE", "/jobs", b"{}", 400, "job is missing"),
            ("GET", "/nowhere", None, 404, "no route GET /nowhere"),
            ("PUT", "/jobs", b"{}", 405, "/jobs takes GET, DELETE"),
            ("PATCH", "/nowhere", b"{}", 404, "no route PATCH /nowhere"),
            ("GET", "/jobs", None, 400, "has not joined a farm"),
            ("POST", "/new_job", b"x" * (local_api.MAX_BODY + 1), 400, "at most"),
        ):
            status, answer = call(url + path, method, body, secret)
            assert status == code, (path, body, answer)
            assert set(answer) == {"data", "message"}
            assert answer["data"] is None
            assert words in answer["message"], answer
            assert "\n" not in answer["message"]


def test_a_request_runs_the_clis_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same library call as `farmhand submit`: a scene that is not a .blend is refused
    with the CLI's words, before any farm is reached."""
    notes = tmp_path / "notes.blend"
    notes.write_text("a shopping list")
    with pytest.raises(UsageError) as cli_says:
        api.check_scene(notes)
    opened: list[bool] = []

    @contextlib.contextmanager
    def never() -> Iterator[api.Farm]:
        opened.append(True)
        raise AssertionError("no farm is needed to refuse this")
        yield  # pragma: no cover

    job_api = local_api.JobApi(never)
    with pytest.raises(local_api.ApiError) as api_says:
        job_api.handle("POST", "/new_job", {"scene": str(notes), "frames": "1"})
    assert str(api_says.value) == str(cli_says.value)
    assert opened == []
