"""The MarketRegistry: every market that can trade (open, unopened and paused), kept true by periodic
reconciliation and by market_lifecycle_v2 events, with change notifications for the connection pool.

Markets, events and series it learns are handed to the record sink (the writers upsert them).
Per market it keeps only the status and a digest of the last payload: about 150 bytes each.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
from pydantic import ValidationError

from core.config import RegistryConfig
from core.records import LifecycleEvent, Market
from gatherer._client import KalshiApiError, KalshiRestClient
from gatherer._models import event_record, market_record, series_record
from router import RecordSink

log = logging.getLogger(__name__)

# Listing filters whose markets must be captured; closed and settled history is never loaded.
CAPTURE_FILTERS = ("open", "unopened", "paused")
FINISHED_STATUSES = frozenset({"closed", "determined", "disputed", "amended", "finalized", "settled"})


class RegistryChange(NamedTuple):
    added: frozenset[str]
    removed: frozenset[str]
    changed: frozenset[str]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class SyncStats:
    pages: int = 0
    markets: int = 0
    seconds: float = 0.0
    reconciles: int = 0


@dataclass
class MarketRegistry:
    client: KalshiRestClient
    sink: RecordSink
    gatherer_id: str
    cfg: RegistryConfig = field(default_factory=RegistryConfig)
    progress: Callable[[str], None] | None = None
    # ticker -> (status, digest of the last payload)
    markets: dict[str, tuple[str, int]] = field(default_factory=dict)
    known_events: set[str] = field(default_factory=set)
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    stats: SyncStats = field(default_factory=SyncStats)
    _subscribers: list[asyncio.Queue[RegistryChange]] = field(default_factory=list)
    _statuses: dict[str, str] = field(default_factory=dict)  # interned status strings

    # ---- views ----------------------------------------------------------------------------------------
    def active_markets(self) -> set[str]:
        """Markets whose books and trades must be captured: everything not finished."""
        return set(self.markets)

    def open_markets(self) -> list[str]:
        return [t for t, (s, _) in self.markets.items() if s == "active"]

    def subscribe(self) -> asyncio.Queue[RegistryChange]:
        q: asyncio.Queue[RegistryChange] = asyncio.Queue()
        self._subscribers.append(q)
        return q

    def _notify(self, change: RegistryChange) -> None:
        if change:
            for q in self._subscribers:
                q.put_nowait(change)

    # ---- sync and reconcile -------------------------------------------------------------------------------
    async def sync(self) -> RegistryChange:
        """List every capturable market; the first call is the initial sync, later ones reconcile."""
        t0 = time.monotonic()
        seen: dict[str, tuple[str, int]] = {}
        records: list[Market] = []
        pages = 0
        interactive = self.progress is None and sys.stderr.isatty()
        # The first sync hands each page's markets to the pool as it arrives: at 10^6 markets the listing takes
        # over a minute, and books subscribed only at its end would miss that minute. Reconciles diff at the end.
        initial = not self.synced.is_set()
        notified: set[str] = set()
        for status in CAPTURE_FILTERS:
            async for page in self.client.iter_markets(limit=self.cfg.page_size, status=status):
                pages += 1
                received = _now_us()
                fresh = [t for raw in page if isinstance(t := raw.get("ticker"), str) and t not in seen]
                for raw in page:
                    self._take(raw, received, seen, records)
                if initial:
                    page_added = frozenset(t for t in fresh if t in seen)
                    notified |= page_added
                    self._notify(RegistryChange(page_added, frozenset(), frozenset()))
                if len(records) >= 5000:
                    await self.sink.put(records)
                    records = []
                if pages % self.cfg.progress_every_pages == 0:
                    self._progress(f"registry: {pages} pages, {len(seen)} markets", interactive)
        if records:
            await self.sink.put(records)
        await self._sync_events_and_series()
        before = self.markets
        added = frozenset(seen.keys() - before.keys())
        removed = frozenset(before.keys() - seen.keys())
        changed = frozenset(t for t in seen.keys() & before.keys() if seen[t][0] != before[t][0])
        self.markets = seen
        # markets that left the listing without a lifecycle message seen (lost, or while this gatherer was down):
        # their last state (closed, determined, settled, with the result) is fetched, so production has it
        for ticker in sorted(removed):
            await self.refresh(ticker, notify=False)
        self.stats = SyncStats(pages, len(seen), time.monotonic() - t0, self.stats.reconciles + 1)
        self._progress(
            f"registry: {len(seen)} markets in {pages} pages, {self.stats.seconds:.1f}s "
            f"(+{len(added)} -{len(removed)} ~{len(changed)})",
            interactive,
            final=True,
        )
        self.synced.set()
        change = RegistryChange(added, removed, changed)
        self._notify(RegistryChange(added - notified, removed, changed))  # subscribers had the pages already
        return change

    def _take(self, raw: dict[str, Any], received: int, seen: dict[str, tuple[str, int]], out: list[Market]) -> None:
        ticker, status = raw.get("ticker"), raw.get("status")
        if not isinstance(ticker, str) or not isinstance(status, str):
            log.warning("market without ticker/status skipped: %.200s", orjson.dumps(raw).decode())
            return
        digest = hash(orjson.dumps(raw, option=orjson.OPT_SORT_KEYS))
        status = self._statuses.setdefault(status, status)
        seen[ticker] = (status, digest)
        prev = self.markets.get(ticker)
        if prev is None or prev[1] != digest:
            try:
                out.append(market_record(raw, self.gatherer_id, received))
            except (ValueError, ValidationError) as exc:
                # a field of the object that does not convert: the object is quarantined with its reason, the
                # market is still captured (a bad object must not stop every listing after it, again and again)
                dead = getattr(self.sink, "dead_letter", None)
                if dead is not None:
                    dead(orjson.dumps(raw), "bad_value", str(exc)[:500], "rest:/markets", received)
                log.warning("market %s: its object does not convert (%s): dead-lettered", ticker, str(exc)[:200])

    async def _sync_events_and_series(self) -> None:
        received = _now_us()
        try:
            series = await self.client.series_list()
        except KalshiApiError as exc:
            log.warning("series listing failed: %s", exc)
            series = []
        if series:
            await self.sink.put([series_record(s, self.gatherer_id, received) for s in series])
        for status in CAPTURE_FILTERS:
            if status == "paused":
                continue  # the events listing filter has no paused (unconfirmed); their events come via open
            async for page in self.client.iter_events(status=status):
                new = [e for e in page if e.get("event_ticker") not in self.known_events]
                if new:
                    await self.sink.put([event_record(e, self.gatherer_id, _now_us()) for e in new])
                    self.known_events.update(e["event_ticker"] for e in new)

    def _progress(self, line: str, interactive: bool, final: bool = False) -> None:
        if self.progress is not None:
            self.progress(line)
        elif interactive:
            sys.stderr.write("\r" + line + ("\n" if final else ""))
            sys.stderr.flush()
        else:
            log.info(line)

    async def run(self) -> None:
        """Reconcile forever (the initial sync must have run)."""
        while True:
            await asyncio.sleep(self.cfg.reconcile_interval_s)
            try:
                await self.sync()
            except KalshiApiError as exc:
                log.error("reconciliation failed, will retry next interval: %s", exc)

    # ---- lifecycle events (from the WebSocket) ----------------------------------------------------------------
    async def apply_lifecycle(self, ev: LifecycleEvent) -> RegistryChange:
        """Every lifecycle event fetches the market's object again (its status, times, result and settlement value
        change with it: production's markets follow), and a finished market leaves capture."""
        # A lifecycle message can arrive while the initial sync lists the markets (the pool starts first):
        # applied before the sync ends, the sync's picture would overwrite it, so it waits for the sync.
        await self.synced.wait()
        t = ev.market_ticker
        if ev.event_type in ("determined", "settled"):
            if t in self.markets:
                del self.markets[t]
                change = RegistryChange(frozenset(), frozenset({t}), frozenset())
                self._notify(change)
                await self.refresh(t, notify=False)  # store the final state
                return change
            await self.refresh(t, notify=False)  # a market this gatherer never captured: its result all the same
            return RegistryChange(frozenset(), frozenset(), frozenset())
        return await self.refresh(t)

    async def refresh(self, ticker: str, notify: bool = True) -> RegistryChange:
        """Fetch one market's details and apply them."""
        try:
            raw = await self.client.market(ticker)
        except KalshiApiError as exc:
            log.warning("market %s: %s", ticker, exc)
            return RegistryChange(frozenset(), frozenset(), frozenset())
        received = _now_us()
        await self.sink.put([market_record(raw, self.gatherer_id, received)])
        ev = raw.get("event_ticker")
        if isinstance(ev, str) and ev not in self.known_events:
            try:
                body = await self.client.event(ev)
                await self.sink.put([event_record(body["event"], self.gatherer_id, _now_us())])
                self.known_events.add(ev)
            except KalshiApiError as exc:
                log.warning("event %s: %s", ev, exc)
        status = raw.get("status", "")
        was = self.markets.get(ticker)
        if status in FINISHED_STATUSES:
            if was is None:
                return RegistryChange(frozenset(), frozenset(), frozenset())
            del self.markets[ticker]
            change = RegistryChange(frozenset(), frozenset({ticker}), frozenset())
        else:
            self.markets[ticker] = (self._statuses.setdefault(status, status), 0)
            if was is None:
                change = RegistryChange(frozenset({ticker}), frozenset(), frozenset())
            elif was[0] != status:
                change = RegistryChange(frozenset(), frozenset(), frozenset({ticker}))
            else:
                change = RegistryChange(frozenset(), frozenset(), frozenset())
        if notify:
            self._notify(change)
        return change
