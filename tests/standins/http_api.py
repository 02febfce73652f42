"""The HTTP side of the render-manager API stand-ins (tests only, never shipped): one server on
a free loopback port that hands each request to the stand-in's ``handle(method, path, body)``
and sends back its ``(status, answer)``: JSON, plain text (a ``str``, as Deadline's errors
are) or nothing (``None``, as Flamenco's 204)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Handle = Callable[[str, str, Any], tuple[int, Any]]


def serve(handle: Handle, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """The server, already serving on a thread of its own."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length)) if length else None
            except ValueError:
                body = "not JSON"
            status, answer = handle(self.command, self.path, body)
            text = isinstance(answer, str)
            payload = b"" if answer is None else (answer if text else json.dumps(answer)).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if text else "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = _answer

    server = ThreadingHTTPServer((host, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@contextlib.contextmanager
def serving(handle: Handle) -> Iterator[str]:
    """``serve`` for the length of a ``with``: its base URL."""
    server = serve(handle)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
