"""The artist's local job API: ``farmhand api`` serves the job commands over HTTP on this
machine, for tools that do not work in a terminal (the Blender add-on, a Maya or Houdini
script). Every answer is ``{"data": ..., "message": ...}``; the routes follow the hybrid
render-farm design (``GET /jobs``, ``POST /new_job``, ``DELETE /jobs`` with a job id), plus
``GET /jobs/{id}`` and ``GET /openapi.json``.

It listens on 127.0.0.1 only: other machines find nothing there. Every request but the OpenAPI
document needs ``Authorization: Bearer TOKEN``, where TOKEN is random, made once and kept in
``api-token`` (0600) in farmhand's config folder, so another local user's program cannot use
this boss's farm either. Requests run the same library calls as the CLI (farmhand/jobs/api.py),
one at a time.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from farmhand.errors import FarmhandError, UsageError
from farmhand.jobs import api

HOST = "127.0.0.1"
DEFAULT_PORT = 8765
TOKEN_FILE = "api-token"  # noqa: S105 (a file name)
MAX_BODY = 64 * 1024
_JOB_PATH = re.compile(r"/jobs/([A-Za-z0-9-]{1,64})")
"""A job id of any render manager (Slurm's numbers, Flamenco's UUIDs, Deadline's hex ids):
the manager's own check says whether it is one."""
FarmOpener = Callable[[], contextlib.AbstractContextManager[api.Farm]]
"""Opens the boss's way to the farm for one request (the joined farm, or a bundle)."""


class ApiError(Exception):
    """A request the API answers with an error status and a one-line message."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def token(config_root: Path) -> str:
    """The API token, made on first use: written 0600 from the start, atomically, never
    replaced (a client that read it keeps working)."""
    path = config_root / TOKEN_FILE
    with contextlib.suppress(FileNotFoundError):
        return _read_token(path)
    config_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    new = secrets.token_urlsafe(32)
    staged = path.with_name(f".{TOKEN_FILE}.{os.getpid()}")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(new + "\n")
    try:
        os.link(staged, path)  # fails if another process made one meanwhile: theirs wins
    except FileExistsError:
        pass
    finally:
        staged.unlink()
    return _read_token(path)


def _read_token(path: Path) -> str:
    if path.stat().st_mode & 0o077:
        raise UsageError(f"{path} is readable by others: remove it, and farmhand makes a new one")
    value = path.read_text(encoding="utf-8").strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]{32,}", value):
        raise UsageError(f"{path} does not hold a farmhand API token: remove it")
    return value


def openapi() -> dict[str, Any]:
    """The API's OpenAPI 3 document (also served at /openapi.json)."""
    envelope = {
        "type": "object",
        "required": ["data", "message"],
        "properties": {"data": {}, "message": {"type": "string"}},
    }
    answer = {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}}
    }
    errors = {
        str(code): {"description": why, **answer}
        for code, why in (
            (400, "a malformed request, or bad input (the message says which)"),
            (401, "no token, or a wrong one"),
            (404, "no such route or job"),
            (502, "the farm refused or could not be reached"),
        )
    }
    job_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    new_job = {
        "type": "object",
        "required": ["scene", "frames"],
        "properties": {
            "scene": {"type": "string", "description": "path of the .blend on this machine"},
            "frames": {"type": "string", "example": "1-250"},
            "chunk": {"type": "integer", "minimum": 1, "default": 1},
            "name": {"type": "string"},
            "output": {"type": "string", "example": "frame_####"},
            "blender": {"type": "string", "example": "4.2"},
            "pack": {"type": "boolean", "default": True},
            "allow_missing": {"type": "boolean", "default": False},
        },
    }
    ok = {"200": {"description": "done", **answer}, **errors}
    return {
        "openapi": "3.0.3",
        "info": {"title": "farmhand local job API", "version": "1"},
        "servers": [{"url": f"http://{HOST}:{DEFAULT_PORT}"}],
        "components": {
            "schemas": {"Envelope": envelope, "NewJob": new_job},
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"token": []}],
        "paths": {
            "/jobs": {
                "get": {"summary": "every job of the farm", "responses": ok},
                "delete": {
                    "summary": "cancel a job",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["job"],
                                    "properties": {"job": {"type": "string"}},
                                }
                            }
                        },
                    },
                    "responses": ok,
                },
            },
            "/jobs/{id}": {
                "get": {
                    "summary": "one job, frame by frame",
                    "parameters": [job_id],
                    "responses": ok,
                }
            },
            "/new_job": {
                "post": {
                    "summary": "pack, upload and queue a scene",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/NewJob"}}
                        },
                    },
                    "responses": ok,
                }
            },
            "/openapi.json": {"get": {"summary": "this document", "security": [], "responses": ok}},
        },
    }


def _field(body: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = body.get(name, default)
    if value is None:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"{name} is missing")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ApiError(HTTPStatus.BAD_REQUEST, f"{name} must be a {kind.__name__}")
    return value


class JobApi:
    """The routes, over a way to open the farm; HTTP-free, so tests and the server share it."""

    def __init__(self, open_farm: FarmOpener) -> None:
        self.open_farm = open_farm
        self._lock = threading.Lock()

    def handle(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[Any, str]:
        """(data, message) for one request; raises ApiError."""
        route = path.split("?", 1)[0].rstrip("/") or "/"
        with self._lock, self._errors():
            if method == "GET" and route == "/jobs":
                with self.open_farm() as farm:
                    listed = api.list_jobs(farm)
                return listed, f"{len(listed)} job(s)"
            if method == "GET" and (found := _JOB_PATH.fullmatch(route)):
                with self.open_farm() as farm:
                    return api.show(farm, found.group(1)), f"job {found.group(1)}"
            if method == "DELETE" and route == "/jobs":
                job = _field(body or {}, "job", str)
                with self.open_farm() as farm:
                    api.cancel(farm, job)
                return {"job": job}, f"job {job} cancelled"
            if method == "POST" and route == "/new_job":
                return self._new_job(body or {})
        raise ApiError(HTTPStatus.NOT_FOUND, f"no route {method} {route}")

    def _new_job(self, body: dict[str, Any]) -> tuple[Any, str]:
        scene = Path(_field(body, "scene", str)).expanduser()
        frames = _field(body, "frames", str)
        chunk = _field(body, "chunk", int, 1)
        if chunk < 1:
            raise ApiError(HTTPStatus.BAD_REQUEST, "chunk must be 1 or more")
        api.check_scene(scene)  # as the CLI does: bad input before the farm is reached
        api.check_frames(frames, chunk)
        with self.open_farm() as farm:
            answer = api.submit(
                farm,
                scene,
                frames,
                chunk,
                _field(body, "name", str, ""),
                _field(body, "output", str, ""),
                _field(body, "blender", str, ""),
                pack=_field(body, "pack", bool, True),
                allow_missing=_field(body, "allow_missing", bool, False),
            )
        return answer, f"job {answer['job']} queued"

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except ApiError:
            raise
        except UsageError as exc:
            status = HTTPStatus.NOT_FOUND if "has no job" in str(exc) else HTTPStatus.BAD_REQUEST
            raise ApiError(status, _one_line(exc)) from None
        except FarmhandError as exc:
            raise ApiError(HTTPStatus.BAD_GATEWAY, _one_line(exc)) from None


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _allowed(route: str) -> list[str]:
    """The methods a route takes (none: no such route)."""
    if route == "/jobs":
        return ["GET", "DELETE"]
    if route == "/openapi.json" or _JOB_PATH.fullmatch(route):
        return ["GET"]
    if route == "/new_job":
        return ["POST"]
    return []


def make_server(job_api: JobApi, secret: str, port: int = DEFAULT_PORT) -> ThreadingHTTPServer:
    """The HTTP server on 127.0.0.1:``port`` (0: any free port), not yet serving."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "farmhand-api"

        def log_message(self, format: str, *args: Any) -> None:
            return  # requests carry scene paths: not logged

        def _send(
            self, status: HTTPStatus, data: Any, message: str, headers: dict[str, str] | None = None
        ) -> None:
            payload = json.dumps({"data": data, "message": message}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def _serve(self, method: str) -> None:
            try:
                if method == "GET" and self.path == "/openapi.json":
                    self._send(HTTPStatus.OK, openapi(), "the farmhand local job API")
                    return
                given = self.headers.get("Authorization", "")
                if not hmac.compare_digest(given.encode(), f"Bearer {secret}".encode()):
                    raise ApiError(HTTPStatus.UNAUTHORIZED, "no token or a wrong one")
                data, message = job_api.handle(method, self.path, self._body())
                self._send(HTTPStatus.OK, data, message)
            except ApiError as exc:
                self._send(exc.status, None, str(exc))
            except Exception as exc:  # a bug still gets an answer, in the envelope
                self._send(
                    HTTPStatus.INTERNAL_SERVER_ERROR,
                    None,
                    f"farmhand failed: {type(exc).__name__} (a bug: please report it)",
                )

        def _body(self) -> dict[str, Any] | None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                raise ApiError(HTTPStatus.BAD_REQUEST, "bad Content-Length") from None
            if length <= 0:
                return None
            if length > MAX_BODY:
                raise ApiError(
                    HTTPStatus.BAD_REQUEST, f"a request body is at most {MAX_BODY} bytes"
                )
            try:
                body = json.loads(self.rfile.read(length))
            except (ValueError, UnicodeDecodeError):
                raise ApiError(HTTPStatus.BAD_REQUEST, "the body is not JSON") from None
            if not isinstance(body, dict):
                raise ApiError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
            return body

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def __getattr__(self, name: str) -> Any:
            """Any other method (PUT, TRACE, HEAD...): 405 in the envelope, not http.server's
            HTML page."""
            if not name.startswith("do_"):
                raise AttributeError(name)
            return self._not_allowed

        def _not_allowed(self) -> None:
            route = self.path.split("?", 1)[0].rstrip("/") or "/"
            allowed = _allowed(route)
            if not allowed:
                self._send(HTTPStatus.NOT_FOUND, None, f"no route {self.command} {route}")
                return
            self._send(
                HTTPStatus.METHOD_NOT_ALLOWED,
                None,
                f"{route} takes {', '.join(allowed)}",
                {"Allow": ", ".join(allowed)},
            )

    return ThreadingHTTPServer((HOST, port), Handler)
