"""The gatherer's HTTP endpoints: /livez (the loop runs), /readyz (initial sync done, every connection
subscribed, Redis answering) and /metrics (Prometheus)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


class HealthServer:
    def __init__(self, host: str, port: int, ready: Callable[[], tuple[bool, dict[str, object]]]) -> None:
        self.host, self.port = host, port
        self._ready = ready
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.add_routes([web.get("/livez", self._live), web.get("/healthz", self._live),
                        web.get("/readyz", self._readyz), web.get("/metrics", self._metrics)])  # fmt: skip
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0 and site._server is not None:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _live(self, request: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def _readyz(self, request: web.Request) -> web.Response:
        ok, detail = self._ready()
        return web.json_response({"ready": ok, **detail}, status=200 if ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
