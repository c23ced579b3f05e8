"""The ConnectionPool: orderbook connections holding up to `markets_per_connection` markets each, assigned
least-loaded first and stable across reconnects, plus redundant pairs of ticker, trade and lifecycle
connections. Follows the MarketRegistry's changes; lifecycle events go back to the registry."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from core import metrics
from core.config import WebSocketConfig
from core.records import LifecycleEvent, lifecycle_digest
from gatherer._conn_stats import ConnMetrics
from gatherer._connection import LIFECYCLE_CHANNELS, FrameSink, WsConnection
from gatherer._registry import MarketRegistry, RegistryChange
from gatherer._signing import Signer
from gatherer._tasks import cancel_and_wait
from gatherer._workers import RemoteConnection, WorkerSet
from router import CopyFilter, copy_filters

Conn = WsConnection | RemoteConnection

log = logging.getLogger(__name__)
GLOBAL_CHANNELS = (
    ("ticker", "ticker_connections"),
    ("trade", "trade_connections"),
    *((c, "lifecycle_connections") for c in LIFECYCLE_CHANNELS),
)


@dataclass
class ConnectionPool:
    url: str
    gatherer_id: str
    sink: FrameSink
    registry: MarketRegistry
    cfg: WebSocketConfig = field(default_factory=WebSocketConfig)
    signer: Signer | None = None
    workers: WorkerSet | None = None  # None: every connection runs in this process
    orderbook: list[Conn] = field(default_factory=list)
    globals: list[Conn] = field(default_factory=list)
    assignment: dict[str, Conn] = field(default_factory=dict)
    _remote_metrics: dict[str, ConnMetrics] = field(default_factory=dict)
    _tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _running: bool = False
    _seen_lifecycle: OrderedDict[tuple[str, str, int], None] = field(default_factory=OrderedDict)
    _lifecycle_tasks: set[asyncio.Task[object]] = field(default_factory=set)
    _copies: dict[str, CopyFilter] = field(default_factory=copy_filters)  # the twins' copies, per channel
    # a trade connection's seq gap whose frames never came: (from_us, to_us), refilled from REST by the owner
    on_trade_loss: Callable[[int, int], None] | None = None

    def connections(self) -> list[Conn]:
        return self.globals + self.orderbook

    # ---- assignment ----------------------------------------------------------------------------------------
    def assign(self, added: set[str], removed: set[str]) -> None:
        """Place new markets on the least-loaded connections with room; take removed ones off theirs."""
        by_conn: dict[Conn, set[str]] = {}
        for t in removed:
            conn = self.assignment.pop(t, None)
            if conn is not None:
                by_conn.setdefault(conn, set()).add(t)
        for conn, tickers in by_conn.items():
            conn.remove_markets(tickers)
        adds: dict[Conn, set[str]] = {}
        cap = self.cfg.markets_per_connection
        for t in sorted(added - self.assignment.keys()):
            conn = min(
                (c for c in self.orderbook if len(c.tickers or ()) + len(adds.get(c, ())) < cap),
                key=lambda c: len(c.tickers or ()) + len(adds.get(c, ())),
                default=None,
            )
            if conn is None:
                conn = self._new_orderbook_connection()
            adds.setdefault(conn, set()).add(t)
            self.assignment[t] = conn
        for conn, tickers in adds.items():
            conn.add_markets(tickers)
        metrics.MARKETS_SUBSCRIBED.set(len(self.assignment))

    def _make(self, conn_id: str, channel: str, tickers: set[str] | None) -> Conn:
        if self.workers is not None:
            return self.workers.connection(conn_id, channel, tickers)
        cb = self._on_lifecycle if channel in LIFECYCLE_CHANNELS else None
        loss = self._on_trade_loss if channel == "trade" else None
        copies = self._copies.get(channel)
        return WsConnection(
            conn_id, self.url, channel, tickers, self.gatherer_id, self.sink, self.cfg, self.signer, cb, loss, copies
        )

    def _on_trade_loss(self, from_us: int, to_us: int) -> None:
        if self.on_trade_loss is not None:
            self.on_trade_loss(from_us, to_us)

    def _new_orderbook_connection(self) -> Conn:
        n = len(self.orderbook) + 1
        conn = self._make(f"{self.gatherer_id}:orderbook:{n}", "orderbook_delta", set())
        self.orderbook.append(conn)
        if self._running:  # already running: start it now
            self._start(conn)
        return conn

    def _start(self, conn: Conn) -> None:
        self._tasks[conn.conn_id] = asyncio.create_task(conn.run(), name=conn.conn_id)

    # ---- lifecycle ------------------------------------------------------------------------------------------
    def _on_lifecycle(self, ev: LifecycleEvent) -> None:
        key = (ev.market_ticker, ev.event_type, lifecycle_digest(ev))
        if key in self._seen_lifecycle:
            return  # the redundant connection's copy
        self._seen_lifecycle[key] = None
        if len(self._seen_lifecycle) > 100_000:
            self._seen_lifecycle.popitem(last=False)
        task = asyncio.create_task(self.registry.apply_lifecycle(ev))
        self._lifecycle_tasks.add(task)
        task.add_done_callback(self._lifecycle_tasks.discard)

    # ---- run -------------------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Start every connection and follow the registry until cancelled (stop() closes them)."""
        changes = self.registry.subscribe()
        self._running = True
        for channel, attr in GLOBAL_CHANNELS:
            for k in range(getattr(self.cfg, attr)):
                self.globals.append(self._make(f"{self.gatherer_id}:{channel}:{k + 1}", channel, None))
        if self.workers is not None:
            self._tasks["workers-pump"] = asyncio.create_task(
                self.workers.pump(self._on_lifecycle, self._on_trade_loss)
            )
        self.assign(self.registry.active_markets(), set())
        # Lifecycle, ticker and trade connections first: a market created while the books subscribe is seen.
        for conn in self.globals:
            self._start(conn)
        try:
            async with asyncio.timeout(self.cfg.command_timeout_s):
                await asyncio.gather(*(c.connected.wait() for c in self.globals))
        except TimeoutError:
            log.warning("not every global connection is up yet; starting the orderbook connections anyway")
        for conn in self.orderbook:
            if conn.conn_id not in self._tasks:
                self._start(conn)
        while True:
            try:
                async with asyncio.timeout(5.0):
                    change: RegistryChange = await changes.get()
            except TimeoutError:
                self.update_metrics()
                for conn in self.connections():
                    if isinstance(conn, WsConnection):
                        conn.metrics.push(conn.stats)
                    else:  # counters reported by the worker, exported from this process
                        self._remote_metrics.setdefault(conn.conn_id, ConnMetrics(conn.conn_id, conn.channel)).push(
                            conn.stats
                        )
                continue
            self.assign(set(change.added), set(change.removed))

    def update_metrics(self) -> None:
        conns = self.connections()
        metrics.WS_DESIRED.set(len(conns))
        metrics.WS_UP.set(sum(1 for c in conns if c.connected.is_set()))

    async def wait_connected(self, timeout_s: float = 30.0) -> None:
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*(c.connected.wait() for c in self.connections()))

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Stop every connection at once: no reconnects, tasks cancelled (each closes its socket)."""
        for conn in self.connections():
            conn.stop()
        await cancel_and_wait([*self._tasks.values(), *self._lifecycle_tasks], timeout_s)
        self._tasks.clear()
