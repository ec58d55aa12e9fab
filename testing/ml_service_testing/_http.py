"""A threaded stdlib HTTP server on an ephemeral loopback port, started and stopped by its owner."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self

import orjson


class LocalServer:
    """Serves `handler` on 127.0.0.1:<free port> in a thread; handlers reach `owner` (their state)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], owner: Any) -> None:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._httpd.owner = owner  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LocalServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Served:
    """`start()`, `stop()`, `url` and `with` for a stand-in whose requests its `handler` class answers."""

    handler: ClassVar[type[BaseHTTPRequestHandler]]
    _server: LocalServer | None = None

    def start(self) -> Self:
        self._server = LocalServer(self.handler, self).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None, "start() it first"
        return self._server.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Handler(BaseHTTPRequestHandler):
    """Quiet, with helpers to read a body and answer bytes or JSON."""

    protocol_version = "HTTP/1.1"

    @property
    def owner(self) -> Any:
        return self.server.owner  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send(self, status: int, body: bytes, content_type: str = "application/json",
             headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, doc: Any) -> None:
        self.send(status, orjson.dumps(doc))

    def google_error(self, status: int, message: str, code: str) -> None:
        self.send_json(status, {"error": {"code": status, "message": message, "status": code}})
