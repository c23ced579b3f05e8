"""The SnapshotPoller: REST orderbook snapshots of open markets, on a cycle and on demand (resync after a
sequence gap), stored as OrderbookSnapshot records with source 'rest'. Shares the client's rate limiter,
so polling never starves the registry or causes a 429."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from core.config import PollerConfig
from core.records import OrderbookSnapshot
from gatherer._client import KalshiApiError, KalshiRestClient
from gatherer._models import rest_snapshot
from gatherer._registry import MarketRegistry
from router import RecordSink

log = logging.getLogger(__name__)


@dataclass
class SnapshotPoller:
    client: KalshiRestClient
    registry: MarketRegistry
    sink: RecordSink
    gatherer_id: str
    cfg: PollerConfig = field(default_factory=PollerConfig)
    snapshots: int = 0
    failures: int = 0
    passes: int = 0
    _resync: asyncio.Queue[str] = field(default_factory=asyncio.Queue)

    async def snapshot(self, ticker: str) -> OrderbookSnapshot | None:
        """Fetch and store one snapshot now; None when the exchange would not give it."""
        try:
            body = await self.client.orderbook(ticker)
        except KalshiApiError as exc:
            self.failures += 1
            log.warning("orderbook %s: %s", ticker, exc)
            return None
        snap = rest_snapshot(body, ticker, self.gatherer_id, time.time_ns() // 1000)
        await self.sink.put([snap])
        self.snapshots += 1
        return snap

    def request_resync(self, ticker: str) -> None:
        """Ask for a snapshot as soon as possible (served before the periodic pass continues)."""
        self._resync.put_nowait(ticker)

    async def _drain_resyncs(self) -> None:
        while not self._resync.empty():
            await self.snapshot(self._resync.get_nowait())

    async def run(self) -> None:
        """Passes over the open markets, at most one per interval; resync requests jump the queue.
        A pass over N markets takes at least N / read rate seconds whatever the interval."""
        sem = asyncio.Semaphore(self.cfg.concurrency)

        async def one(ticker: str) -> None:
            async with sem:
                await self._drain_resyncs()
                await self.snapshot(ticker)

        while True:
            started = time.monotonic()
            tickers = self.registry.open_markets()
            for i in range(0, len(tickers), 256):
                await asyncio.gather(*(one(t) for t in tickers[i : i + 256]))
            self.passes += 1
            deadline = started + self.cfg.interval_s
            while time.monotonic() < deadline:
                try:
                    async with asyncio.timeout(deadline - time.monotonic()):
                        ticker = await self._resync.get()
                except TimeoutError:
                    break
                await self.snapshot(ticker)
