"""The simulator process: one aiohttp app serving REST and the WebSocket, and the engine loop feeding it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from simulator._auth import AuthError, RateLimiter, Verifier, load_public_keys
from simulator._exchange import Exchange, ExchangeOptions
from simulator._faults import FaultSchedule, WsFault
from simulator._history import Cutoff, History
from simulator._ledger import Ledger
from simulator._rest import RestApi
from simulator._rest_common import PREFIX, ApiError, Cursors
from simulator._ws import Hub, Session

log = logging.getLogger(__name__)
WS_PATH = "/trade-api/ws/v2"


@dataclass
class SimOptions:
    host: str = "127.0.0.1"
    port: int = 8765
    exchange: ExchangeOptions = field(default_factory=ExchangeOptions)
    rate: float = 1000.0  # target exchange events per second (0 = paused; step() by hand)
    start_delay_s: float = 0.0  # serve this long before the market starts moving
    duration_s: float | None = None
    ledger_path: Path | None = None
    keep_ledger_in_memory: bool = True
    public_keys: list[str] = field(default_factory=list)  # KEY_ID=PATH; empty = no authentication
    max_skew_s: float = 60.0
    rest_rate_limit: float | None = None  # requests/s per client; None = unlimited
    rest_burst: float = 0
    legacy_rest: bool = False  # add the legacy integer twins and the fields Kalshi removed in 2026 (REST)
    status_vocabulary: str = "current"  # "sdk": only the statuses the official SDK 3.2.0 accepts
    cursor_ttl_s: float | None = None
    ping_interval_s: float = 10.0
    ws_command_latency_s: float = 0.0  # WebSocket commands are carried out this long after they arrive
    ws_command_spacing_s: float = 0.0  # and this long apart, one connection's (data flows on meanwhile)
    seq_on_all_channels: bool = True
    sending_ts: bool = True  # sending_ts_ms on messages and replies (False: as before 2026-10-01)
    history_days: int = 0  # a past of this many days: settled markets, their trades and candles, a cutoff
    history_trades_per_market: int = 35  # the past's trades per market, on average
    faults: FaultSchedule = field(default_factory=FaultSchedule)


class Simulator:
    def __init__(self, opts: SimOptions) -> None:
        self.opts = opts
        self.ledger = Ledger(opts.ledger_path, keep_in_memory=opts.keep_ledger_in_memory)
        self.hub = Hub(seq_on_all_channels=opts.seq_on_all_channels, sending_ts=opts.sending_ts)
        self.hub.on_lost = lambda mtype, body: self.ledger.record(
            "fault", (time.time_ns() // 1000, "hub", "lost_delta" if mtype == "orderbook_delta" else "lost_trade", body)
        )
        self.exchange = Exchange(opts.exchange, self.ledger, self.hub.publish)
        self.history = (
            History(
                self.exchange.universe,
                opts.history_days,
                opts.exchange.seed,
                self.ledger,
                trades_per_market=opts.history_trades_per_market,
            )
            if opts.history_days > 0
            else None
        )
        verifier = Verifier(load_public_keys(opts.public_keys), opts.max_skew_s) if opts.public_keys else None
        self.faults = opts.faults
        self.rest = RestApi(
            self.exchange,
            self.ledger,
            opts.faults,
            verifier,
            RateLimiter(opts.rest_rate_limit, opts.rest_burst),
            opts.legacy_rest,
            opts.status_vocabulary,
            Cursors(opts.cursor_ttl_s),
            history=self.history,
        )
        self.sessions: set[Session] = set()
        self.connections = 0
        self.channel_connections: dict[str, int] = {}
        self.rate = opts.rate
        self._runner: web.AppRunner | None = None
        self._engine: asyncio.Task[None] | None = None
        self.port = opts.port

    # ---- app -------------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._not_found, self.rest.middleware])
        app.add_routes(self.rest.routes())
        app.add_routes([web.get(WS_PATH, self.ws_handler), web.post("/_sim/cutoff", self._cutoff_cue)])
        return app

    async def _cutoff_cue(self, request: web.Request) -> web.Response:
        """A test's cue from outside the process: POST {"market_settled_us": .., "trades_created_us": ..}."""
        body = await request.json()
        try:
            c = self.move_cutoff(body.get("market_settled_us"), body.get("trades_created_us"))
        except ValueError as exc:
            return ApiError(409, "no_history", str(exc)).response()
        return web.json_response(vars(c))

    @web.middleware
    async def _not_found(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            resp: web.StreamResponse = await handler(request)
            return resp
        except web.HTTPNotFound:
            return ApiError(404, "not_found", f"no route {request.path}").response()

    async def ws_handler(self, request: web.Request) -> web.StreamResponse:
        if self.rest.verifier is not None:  # the WebSocket handshake is signed like REST, public channels too
            try:
                self.rest.verifier.verify(request.headers, "GET", WS_PATH)
            except AuthError as exc:
                return ApiError(401, exc.code, exc.message).response()
        ws = web.WebSocketResponse(autoping=False, max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        self.connections += 1
        n = self.connections
        session = Session(
            ws,
            n,
            self.exchange,
            self.hub,
            self.ledger,
            list(self.faults.for_connection(n)),
            self.opts.ping_interval_s,
            transport=request.transport,
            channel_faults=self._channel_faults,
            command_latency_s=self.opts.ws_command_latency_s,
            command_spacing_s=self.opts.ws_command_spacing_s,
        )
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
        return ws

    def _channel_faults(self, channel: str) -> list[WsFault]:
        n = self.channel_connections[channel] = self.channel_connections.get(channel, 0) + 1
        return list(self.faults.for_channel(channel, n))

    # ---- engine ----------------------------------------------------------------------------------------
    async def engine(self) -> None:
        """Emit events at the target rate; one lifecycle transition per lifecycle_interval_s."""
        ex = self.exchange
        t0 = time.monotonic()
        emitted = 0
        next_lifecycle = t0 + ex.opts.lifecycle_interval_s if ex.opts.lifecycle_interval_s > 0 else float("inf")
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            if self.opts.duration_s is not None and now - t0 >= self.opts.duration_s:
                break
            due = int((now - t0) * self.rate) - emitted
            budget = max(0, min(due, int(self.rate * 0.05) + 1))  # catch up by at most 50 ms at a time
            while budget > 0:
                ts = ex.now_us()
                n = ex.step(ts)
                emitted += max(n, 1)
                budget -= max(n, 1)
            if now >= next_lifecycle:
                ex.lifecycle_step(ex.now_us())
                next_lifecycle += ex.opts.lifecycle_interval_s
            if due > self.rate:  # far behind: the machine is the limit; do not build an unbounded backlog
                emitted = int((now - t0) * self.rate)

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.opts.host, self.opts.port)
        await site.start()
        if self.opts.port == 0:  # the port the OS chose, from aiohttp's public API
            self.port = int(self._runner.addresses[0][1])
        if self.rate > 0:
            self._engine = asyncio.create_task(self._delayed_engine())

    @property
    def rest_url(self) -> str:
        return f"http://{self.opts.host}:{self.port}{PREFIX}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.opts.host}:{self.port}{WS_PATH}"

    async def wait(self) -> None:
        if self._engine is not None:
            await self._engine

    async def _delayed_engine(self) -> None:
        if self.opts.start_delay_s > 0:
            await asyncio.sleep(self.opts.start_delay_s)
        await self.engine()

    def move_cutoff(self, market_settled_us: int | None = None, trades_created_us: int | None = None) -> Cutoff:
        """Archive more of the past (Kalshi's cutoffs move forward on their own schedules): a test's cue."""
        if self.history is None:
            raise ValueError("this simulator has no past (history_days is 0)")
        return self.history.move_cutoff(market_settled_us, trades_created_us)

    def resume(self) -> None:
        """Start (again) generating events at the target rate."""
        if self._engine is None and self.rate > 0:
            self._engine = asyncio.create_task(self.engine())

    async def pause(self) -> None:
        """Stop generating events (sessions stay open), so a test can compare a settled ledger."""
        if self._engine is not None:
            self._engine.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._engine
            self._engine = None

    async def stop(self) -> None:
        await self.pause()
        for s in list(self.sessions):
            s.closed = True
            s.wake.set()
            await s.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self.ledger.close()

    # ---- faults a test fires at a moment of its choosing --------------------------------------------------------
    def lose(self, kind: str) -> None:
        """The exchange loses its next message of this type (`orderbook_delta` or `trade`) for every subscriber:
        each subscription that should carry it skips a seq (the `lose_delta` / `lose_trade` faults, now)."""
        if kind not in ("orderbook_delta", "trade"):
            raise ValueError(f"cannot lose a {kind!r} for everyone")
        self.hub.lose_next[kind] = self.hub.lose_next.get(kind, 0) + 1

    def cut(self, channel: str, count: int, pick: random.Random) -> int:
        """Cut `count` open connections subscribed to `channel` (TCP reset, no close frame), chosen by `pick`;
        returns how many were cut. Logged in the ledger's faults as `close`."""
        open_ = sorted((s for s in self.sessions if not s.closed and any(sub.channel == channel
                        for sub in s.subs.values())), key=lambda s: s.number)  # fmt: skip
        chosen = pick.sample(open_, min(count, len(open_)))
        for session in chosen:
            session.cut()
        return len(chosen)

    def summary(self) -> dict[str, Any]:
        return {
            "events": self.exchange.events,
            "ledger": self.ledger.counts(),
            "frames_out": self.hub.frames_out,
            "connections": self.connections,
            "rest_requests": self.rest.served,
            "markets": self.exchange.universe.n_markets,
            "hot_markets": len(self.exchange.hot),
        }
