"""The one HTTP endpoint every process serves: /metrics (Prometheus), /healthz (alive), /readyz (ready,
with the reasons as JSON). A small threaded server, so asyncio and blocking processes use the same code."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

Readiness = Callable[[], tuple[bool, dict[str, Any]]]


class HealthServer:
    def __init__(self, host: str, port: int, ready: Readiness | None = None) -> None:
        self.host, self.port = host, port
        self._ready: Readiness = ready or (lambda: (True, {}))
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        ready = self._ready

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
                elif self.path in ("/healthz", "/livez"):
                    self._send(200, b'{"live": true}', "application/json")
                elif self.path == "/readyz":
                    try:
                        ok, detail = ready()
                    except Exception as exc:  # a readiness probe must answer, not crash
                        ok, detail = False, {"error": str(exc)}
                    self._send(200 if ok else 503, json.dumps({"ready": ok, **detail}).encode(), "application/json")
                else:
                    self._send(404, b"not found", "text/plain")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # scrapes are not worth a log line
                return

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
