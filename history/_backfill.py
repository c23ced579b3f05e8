"""The backfill: Kalshi's public past into production, once, resumable, within the rate limit.

1. Reference: the markets of the window (live listing first, then /historical/markets: a market the cutoff moves
   meanwhile is in the second), their events and series (those production lacks), one checkpoint per listing.
2. Trades by window: every market an hour at a time (full pages: the rate limit's ceiling is pages/s x 1000), or
   each market a day at a time when series are named. What is older than the trades cutoff comes from
   /historical/trades, the rest from /markets/trades; the cutoff is read again after the live part, so trades it
   moved meanwhile are fetched from the archive. Nothing twice (a window's trades keyed by id), nothing skipped.
3. One-minute candlesticks per market and day, from the endpoint the market is served by (on 404, the other).

Every window's rows commit with its checkpoint (history._store). Requests go through the client's token bucket,
shared with the gatherers when `kalshi.rate_limit.shared` is set; `concurrency` requests are in flight, so the
bucket is the bottleneck. A window ending less than `settle_lag_s` ago is not fetched (its trades may still be
listed late)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson

from core.config import BackfillConfig
from core.conversions import ConversionError
from core.db import dsn_from_config
from core.records import Kind
from core.tables import SPECS
from gatherer import (
    KalshiApiError,
    KalshiRestClient,
    event_record,
    market_record,
    rest_trade,
    series_record,
    signer_from_config,
)
from history._candles import candle_row
from history._cutoff import CutoffWatch
from history._progress import Progress
from history._store import Checkpoint, PlannedMarket, Store

log = logging.getLogger(__name__)
DAY_US = 86_400_000_000
SOURCE_ID = "history"  # gatherer_id of every row the backfill writes
CANDLE_BATCH = 100  # markets a call of GET /markets/candlesticks takes
EVENTS_ONE_BY_ONE = 3  # a series with more events production lacks is listed (GET /events?series_ticker=)
_TRADE_ROW = SPECS[Kind.TRADE].row
_MARKET_ROW, _EVENT_ROW, _SERIES_ROW = SPECS[Kind.MARKET].row, SPECS[Kind.EVENT].row, SPECS[Kind.SERIES].row


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True)
class BackfillRequest:
    since_us: int
    until_us: int  # exclusive; the run stops at now - settle_lag whatever this says
    series: tuple[str, ...] = ()


@dataclass
class BackfillReport:
    markets: int = 0
    events: int = 0
    series: int = 0
    trades: int = 0  # fetched
    trades_inserted: int = 0  # new to production (the rest were there: the live capture's, an earlier run's)
    candles: int = 0
    candles_inserted: int = 0
    windows_done: int = 0
    windows_skipped: int = 0  # checkpointed by an earlier run
    windows_failed: int = 0  # a bad value or an error: no checkpoint, the next run tries again
    bad_values: int = 0
    requests: int = 0
    cutoff_reads: int = 0
    seconds: float = 0.0
    window_requests: int = 0  # of the requests, those of the windows (trades and candles), after the listings
    window_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "errors"} | {"errors": self.errors[:10]}


class Backfill:
    def __init__(self, cfg: BackfillConfig, client: KalshiRestClient, store: Store, progress: Progress) -> None:
        self.cfg, self.client, self.store, self.progress = cfg, client, store, progress
        self.watch = CutoffWatch(client)
        self.report = BackfillReport()
        self._sem = asyncio.Semaphore(cfg.concurrency)

    # ---- the run ---------------------------------------------------------------------------------------------
    async def run(self, req: BackfillRequest) -> BackfillReport:
        t0 = time.monotonic()
        horizon = min(req.until_us, _now_us() - int(self.cfg.settle_lag_s * 1e6))
        since = req.since_us
        await self.watch.now()
        # a listing up to now is not final (markets are listed every day): its checkpoint ends where this run does,
        # so the next run lists again; a listing of days that are over is done once
        listed_to = req.until_us if req.until_us <= horizon else horizon
        listed = await asyncio.to_thread(self.store.done, "markets")
        known = _Known(
            await asyncio.to_thread(self.store.known, "events", "event_ticker"),
            await asyncio.to_thread(self.store.known, "series", "ticker"),
        )
        for subject in req.series or ("*",):
            if (subject, since, listed_to) in listed:
                self.report.windows_skipped += 1
            else:
                await self._reference(Checkpoint("markets", subject, since, listed_to), known)
        markets = await asyncio.to_thread(self.store.markets, req.series or None, since, horizon)
        work: list[tuple[Checkpoint, Callable[[Checkpoint], Any]]] = []
        done = await asyncio.to_thread(self.store.done, "trades")
        if req.series:
            for m in markets:
                for lo, hi in _windows(since, horizon, DAY_US, m):
                    work.append((Checkpoint("trades", m.ticker, lo, hi), partial(self._trades, ticker=m.ticker)))
        else:
            for lo, hi in _windows(since, horizon, self.cfg.trade_window_s * 1_000_000, None):
                work.append((Checkpoint("trades", "*", lo, hi), partial(self._trades, ticker=None)))
        todo = []
        for cp, job in work:
            if (cp.subject, cp.from_us, cp.to_us) in done:
                self.report.windows_skipped += 1
            else:
                todo.append((cp, job))
        if self.cfg.candles:
            todo.extend(await self._candle_work(markets, since, horizon))
        self.progress.start(len(todo))
        t1, before = time.monotonic(), self.client.stats.requests
        try:
            await asyncio.gather(*(self._one(cp, job) for cp, job in todo))
        finally:
            self.progress.close()
        self.report.window_seconds = round(time.monotonic() - t1, 3)
        self.report.window_requests = self.client.stats.requests - before
        self.report.markets = len(markets)
        self.report.cutoff_reads = self.watch.reads
        self.report.requests = self.client.stats.requests
        self.report.seconds = round(time.monotonic() - t0, 3)
        return self.report

    async def _one(self, cp: Checkpoint, job: Callable[[Checkpoint], Any]) -> None:
        async with self._sem:
            try:
                await job(cp)
            except (KalshiApiError, ConversionError, ValueError) as exc:
                self.report.windows_failed += 1
                self.report.errors.append(f"{cp.endpoint} {cp.subject} {cp.from_us}..{cp.to_us}: {exc}")
                log.warning("backfill %s %s %d..%d failed (the next run tries again): %s", cp.endpoint, cp.subject,
                            cp.from_us, cp.to_us, exc)  # fmt: skip
            self.progress.step(self.report)

    # ---- reference -------------------------------------------------------------------------------------------
    async def _reference(self, cp: Checkpoint, known: _Known) -> None:
        """A listing's markets of every status open in the window, with the events and series production lacks."""
        subject, since, until = cp.subject, cp.from_us, cp.to_us
        filters: dict[str, Any] = {} if subject == "*" else {"series_ticker": subject}
        received = _now_us()
        found: dict[str, Any] = {}
        requests = 0
        # live first: a market the cutoff archives while we list is then in the historical listing
        for pages in (self.client.iter_markets(**filters), self.client.iter_historical_markets(**filters)):
            try:
                async for page in pages:
                    requests += 1
                    for raw in page:
                        rec = market_record(raw, SOURCE_ID, received)
                        if _overlaps(rec.open_time_us, rec.close_time_us, since, until):
                            old = found.get(rec.ticker)
                            if old is None or rec.updated_us >= old.updated_us:
                                found[rec.ticker] = rec
            except KalshiApiError as exc:
                if exc.status != 404:  # no /historical/* at this exchange: the live listing is all there is
                    raise
        events, series = [], []
        missing = {m.event_ticker for m in found.values() if m.event_ticker} - known.events
        by_series: dict[str, set[str]] = {}
        for m in found.values():
            if m.event_ticker in missing:
                by_series.setdefault(m.series_ticker or m.event_ticker.split("-", 1)[0], set()).add(m.event_ticker)
        for s, wanted in sorted(by_series.items()):
            if len(wanted) > EVENTS_ONE_BY_ONE:  # many: the series' listing, 200 a page
                async for page in self.client.iter_events(series_ticker=s):
                    requests += 1
                    for raw in page:
                        if raw.get("event_ticker") in wanted:
                            wanted.discard(raw["event_ticker"])
                            events.append(_EVENT_ROW(event_record(raw, SOURCE_ID, received)))
            for e in sorted(wanted):  # few (or not listed): one by one
                body = await self.client.event(e)
                requests += 1
                events.append(_EVENT_ROW(event_record(body["event"], SOURCE_ID, received)))
        new_series = sorted({m.series_ticker for m in found.values() if m.series_ticker} - known.series)
        for s in new_series:
            series.append(_SERIES_ROW(series_record(await self.client.series(s), SOURCE_ID, received)))
            requests += 1
        markets = [_MARKET_ROW(m) for m in found.values()]
        await asyncio.to_thread(self.store.save, [cp], requests, markets=markets, events=events, series=series)
        known.events |= missing
        known.series.update(new_series)
        self.report.events += len(events)
        self.report.series += len(series)
        log.info("backfill %s: %d markets, %d new events, %d new series", subject, len(markets), len(events),
                 len(series))  # fmt: skip

    # ---- trades ----------------------------------------------------------------------------------------------
    async def _trades(self, cp: Checkpoint, ticker: str | None) -> None:
        lo, hi = cp.from_us, cp.to_us
        cut = await self.watch.last()
        got: dict[tuple[str, int], tuple[Any, ...]] = {}
        requests = 0
        archive_to = hi
        if hi > cut.trades_created_us:
            requests += await self._collect(self.client.iter_trades, max(lo, cut.trades_created_us), hi, ticker, got)
            # what the cutoff moved past while the live part was read is now only in the archive
            moved = await self.watch.after(time.monotonic())
            archive_to = min(hi, max(cut.trades_created_us, moved.trades_created_us))
        if lo < archive_to:
            requests += await self._collect(self.client.iter_historical_trades, lo, archive_to, ticker, got)
        rows = sorted(got.values(), key=lambda r: (r[2], r[0]))
        inserted = await asyncio.to_thread(self.store.save, [cp], requests, trades=rows)
        self.report.windows_done += 1
        self.report.trades += len(rows)
        self.report.trades_inserted += inserted

    async def _collect(
        self,
        pages: Callable[..., AsyncIterator[list[dict[str, Any]]]],
        lo: int,
        hi: int,
        ticker: str | None,
        got: dict[tuple[str, int], tuple[Any, ...]],
    ) -> int:
        """Trades with lo <= time < hi into `got` (keyed as production keys them); returns the pages read."""
        n = 0
        # whole seconds a side wider than the window, whether Kalshi's bounds include their second or not
        # (kalshi-api.md does not say); the rows are cut to the window exactly below
        filters: dict[str, Any] = {"min_ts": lo // 1_000_000 - 1, "max_ts": hi // 1_000_000 + 1}
        if ticker is not None:
            filters["ticker"] = ticker
        try:
            async for page in pages(**filters):
                n += 1
                received = _now_us()
                for raw in page:
                    try:
                        t = rest_trade(raw, SOURCE_ID, received)._replace(source="history")
                    except ValueError as exc:
                        self.report.bad_values += 1
                        raise ConversionError("trade", orjson.dumps(raw).decode()[:300], str(exc)) from None
                    if lo <= t.exchange_ts_us < hi:
                        got[(t.trade_id, t.exchange_ts_us)] = _TRADE_ROW(t)
        except KalshiApiError as exc:
            if exc.status != 404 or pages != self.client.iter_historical_trades:
                raise
        return n

    # ---- candles ---------------------------------------------------------------------------------------------
    async def _candle_work(
        self, markets: list[PlannedMarket], since: int, horizon: int
    ) -> list[tuple[Checkpoint, Callable[[Checkpoint], Any]]]:
        """Per day: the markets the live endpoints serve, a hundred a call (GET /markets/candlesticks); an
        archived market (closed before the market cutoff: a guess the 404 corrects) alone through /historical/*."""
        done = await asyncio.to_thread(self.store.done, "candles_1m")
        cut = await self.watch.last()
        work: list[tuple[Checkpoint, Callable[[Checkpoint], Any]]] = []
        for lo, hi in _windows(since, horizon, DAY_US, None):
            live: list[PlannedMarket] = []
            for m in markets:
                if not _overlaps(m.open_us, m.close_us, lo, hi):
                    continue
                if (m.ticker, lo, hi) in done:
                    self.report.windows_skipped += 1
                elif m.close_us is not None and m.close_us < cut.market_settled_us:
                    work.append(
                        (Checkpoint("candles_1m", m.ticker, lo, hi), partial(self._candles, m=m, archived=True))
                    )
                else:
                    live.append(m)
            for i in range(0, len(live), CANDLE_BATCH):
                batch = live[i : i + CANDLE_BATCH]
                work.append((Checkpoint("candles_1m", f"{len(batch)} markets", lo, hi), partial(self._batch, ms=batch)))
        return work

    async def _batch(self, cp: Checkpoint, ms: list[PlannedMarket]) -> None:
        await self._candle_batch(ms, cp.from_us, cp.to_us)

    async def _candle_batch(self, ms: list[PlannedMarket], lo: int, hi: int) -> None:
        try:
            got = await self.client.batch_candlesticks([m.ticker for m in ms], *_candle_span(lo, hi))
        except KalshiApiError as exc:
            if exc.status == 400 and len(ms) > 1:  # more than 10,000 candles: halves
                half = len(ms) // 2
                await self._candle_batch(ms[:half], lo, hi)
                await self._candle_batch(ms[half:], lo, hi)
                return
            raise
        served = [m for m in ms if m.ticker in got]
        cps = [Checkpoint("candles_1m", m.ticker, lo, hi) for m in served]
        await self._save_candles(cps, 1, [(m.ticker, c) for m in served for c in got[m.ticker]], "live")
        for m in ms:  # left out of the answer: archived meanwhile (or unknown to the live endpoints)
            if m.ticker not in got:
                await self._candles(Checkpoint("candles_1m", m.ticker, lo, hi), m, archived=True)

    async def _candles(self, cp: Checkpoint, m: PlannedMarket, archived: bool) -> None:
        lo, hi = cp.from_us, cp.to_us
        series = m.series_ticker or m.ticker.split("-", 1)[0]
        start, end = _candle_span(lo, hi)
        requests, raw, source = 0, None, ""
        for attempt in range(3):  # the endpoint the market is served by; on 404 the other (the cutoff moved)
            historical = archived != (attempt % 2 == 1)
            requests += 1
            try:
                if historical:
                    raw = await self.client.historical_candlesticks(m.ticker, start, end)
                else:
                    raw = await self.client.candlesticks(series, m.ticker, start, end)
            except KalshiApiError as exc:
                if exc.status != 404:
                    raise
                continue
            source = "historical" if historical else "live"
            break
        await self._save_candles([cp], requests, [(m.ticker, c) for c in raw or []], source)

    async def _save_candles(
        self, cps: list[Checkpoint], requests: int, raw: list[tuple[str, dict[str, Any]]], source: str
    ) -> None:
        """(ticker, candle) pairs as rows of the checkpoints' window (periods ending in (lo, hi]), stored with
        their checkpoints."""
        received = _now_us()
        lo, hi = (cps[0].from_us, cps[0].to_us) if cps else (0, 0)
        rows = [r for t, c in raw if lo < (r := candle_row(c, t, 1, source, received))[2] <= hi]
        inserted = await asyncio.to_thread(self.store.save, cps, requests, candlesticks=rows)
        self.report.windows_done += len(cps)
        self.report.candles += len(rows)
        self.report.candles_inserted += inserted


@dataclass
class _Known:
    """What production already holds of events and series (read once a run, grown as the listings store more)."""

    events: set[str]
    series: set[str]


def _candle_span(lo: int, hi: int) -> tuple[int, int]:
    """start_ts and end_ts for the candles whose period ends in (lo, hi]: a minute wider each side, whether the
    bounds are inclusive or not; the rows are cut to the window exactly."""
    return lo // 1_000_000 - 60, hi // 1_000_000 + 60


def _overlaps(open_us: int | None, close_us: int | None, lo: int, hi: int) -> bool:
    return (open_us is None or open_us < hi) and (close_us is None or close_us >= lo)


def _windows(lo: int, hi: int, size: int, market: PlannedMarket | None) -> list[tuple[int, int]]:
    """The whole windows of [lo, hi) cut at multiples of `size` (UTC-aligned, so every run cuts alike: a window
    still in progress is left for a later run, and no window is ever fetched twice); with a market, only those
    that overlap its open time."""
    out = []
    a = lo
    while (b := (a // size + 1) * size) <= hi:
        if market is None or _overlaps(market.open_us, market.close_us, a, b):
            out.append((a, b))
        a = b
    return out


async def run_backfill(cfg: BackfillConfig, req: BackfillRequest, progress: Progress | None = None) -> BackfillReport:
    """One backfill run from a config (what the CLI and the RQ job call)."""
    k = cfg.kalshi
    signer = signer_from_config(k.api_key_id, k.private_key_path.get_secret_value() if k.private_key_path else None)
    store = await asyncio.to_thread(Store, dsn_from_config(cfg.production, "kalshi-data-backfill"), 4)
    try:
        async with KalshiRestClient(k, signer) as client:
            return await Backfill(cfg, client, store, progress or Progress.for_stream()).run(req)
    finally:
        await asyncio.to_thread(store.close)
