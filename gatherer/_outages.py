"""CaptureWatch: knows when this gatherer was blind to trades, says so (CaptureOutage records), and refills the
stretch from REST (`GET /markets/trades`, source 'rest'), so trades are complete even where every gatherer
was down at once. Deltas cannot be fetched: such a stretch stays a book coverage gap in production.

A heartbeat in Redis holds "capturing trades up to here" (unix microseconds). After a restart (a crash, a
roll-out, a kill -9) the stretch from the last beat to the trade subscription being back is an outage of
every channel ('*'); while running, a stretch with no trade connection up is a 'trade' outage, and so is a
trade subscription's seq gap whose frames never came (reason 'seq_gap'). Outages not
yet refilled wait in a Redis hash, so a gatherer killed in the middle of a backfill resumes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core import keys, metrics
from core.config import CaptureConfig
from core.records import CaptureBeat, CaptureOutage, Record, Trade
from core.redisconn import redis_deadline
from gatherer._client import KalshiApiError, KalshiRestClient
from gatherer._models import rest_trade
from router import RecordSink


class TradeSink(RecordSink, Protocol):
    def put_nowait(self, records: list[Record]) -> None: ...

    def dead_letter(self, raw: str | bytes, reason: str, detail: str, connection: str, received_us: int) -> None: ...


log = logging.getLogger(__name__)
EDGE_US = 1_000_000  # trades this close outside an outage are fetched too: the heartbeat is a second coarse
# A kill -9 also loses what the connection workers' sinks had not yet XADDed: records received up to a flush
# interval (50 ms) before the last beat, longer while Redis was slow. A restart's outage starts this much
# before the beat, so its book coverage gap covers them too.
UNFLUSHED_US = 1_000_000


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class CaptureWatch:
    client: KalshiRestClient
    redis: aioredis.Redis
    sink: TradeSink
    gatherer_id: str
    prefix: str
    trade_capturing: Callable[[], bool]  # True while some trade subscription is up
    cfg: CaptureConfig = field(default_factory=CaptureConfig)
    outages: int = 0
    trades_backfilled: int = 0
    started_us: int = field(default_factory=lambda: _now_us())  # this process's start
    _backfills: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def _pending_key(self) -> str:
        return keys.backfill_pending(self.prefix, self.gatherer_id)

    async def run(self) -> None:
        beat_key = keys.heartbeat(self.prefix, self.gatherer_id)
        try:
            async with redis_deadline():
                pending = await self.redis.hgetall(self._pending_key)
            for raw in pending.values():  # a backfill cut short
                self._start_backfill(CaptureOutage(*orjson.loads(raw)))
            async with redis_deadline():
                last = await self.redis.get(beat_key)
        except RedisError as exc:
            log.warning("capture watch: Redis unreadable at start (%s): a downtime before now is not known", exc)
            last = None
        blind: tuple[int, str, str] | None = (int(last) - UNFLUSHED_US, "*", "restart") if last else None
        if last is None:
            log.info("capture watch: no heartbeat in Redis (first start, or Redis lost it)")
        last_beat = _now_us()
        captured = blind is not None  # a first start was never capturing: its first seconds are no outage
        beat_due = 0.0
        try:
            while True:
                now = _now_us()
                if time.monotonic() >= beat_due:  # production's word that this process is alive (coverage)
                    self.sink.put_nowait([CaptureBeat(self.gatherer_id, now, self.started_us)])
                    beat_due = time.monotonic() + self.cfg.beat_record_s
                if self.trade_capturing():
                    if blind is not None:
                        started = self.started_us if blind[2] == "restart" else None
                        await self._outage(
                            CaptureOutage(self.gatherer_id, now, blind[1], blind[0], now, blind[2], None, None, started)
                        )
                        blind = None
                    last_beat, captured = now, True
                    # the sink reports Redis; an old beat only makes the next outage longer
                    with contextlib.suppress(RedisError):
                        async with redis_deadline():
                            await self.redis.set(beat_key, now)
                elif blind is None and captured:
                    blind = (last_beat, "trade", "disconnected")
                await asyncio.sleep(self.cfg.heartbeat_s)
        finally:
            for t in self._backfills:
                t.cancel()
            await asyncio.gather(*self._backfills, return_exceptions=True)

    async def _outage(self, outage: CaptureOutage) -> None:
        self.outages += 1
        metrics.CAPTURE_OUTAGES.labels(outage.reason).inc()
        log.warning(
            "capture outage (%s, channel %s): %.1f s", outage.reason, outage.channel,
            (outage.to_us - outage.from_us) / 1e6,
        )  # fmt: skip
        await self.sink.put([outage])
        if self.cfg.backfill_trades:
            try:
                async with redis_deadline():
                    await self.redis.hset(self._pending_key, str(outage.from_us), orjson.dumps(list(outage)))
            except RedisError as exc:
                log.warning("backfill of %s not recorded as pending (Redis: %s)", outage.from_us, exc)
            self._start_backfill(outage)

    def trade_gap(self, from_us: int, to_us: int) -> None:
        """A trade subscription skipped seqs that never came (Kalshi lost them, or the connection did): the
        stretch is refilled from REST like an outage. The trades come again under their trade ids, so what the
        redundant connection did get is not doubled; where every gatherer had the gap, production records it
        as a trade coverage gap, healed by the refill."""
        outage = CaptureOutage(self.gatherer_id, _now_us(), "trade", from_us, to_us, "seq_gap")
        self._spawn(self._outage(outage), f"trade-gap-{from_us}")

    def _start_backfill(self, outage: CaptureOutage) -> None:
        self._spawn(self._backfill(outage), f"backfill-{outage.from_us}")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """A task this watch owns: kept until done, cancelled when run() ends."""
        task = asyncio.create_task(work, name=name)
        self._backfills.add(task)
        task.add_done_callback(self._backfills.discard)

    async def _backfill(self, outage: CaptureOutage) -> None:
        """Every trade of the stretch from REST, then the outage again as healed; retried until it succeeds."""
        delay = 1.0
        while True:
            try:
                n = await self.fetch_trades(outage)
                break
            except (KalshiApiError, OSError, ValueError) as exc:
                log.warning(
                    "trade backfill %s..%s failed (%s); again in %.0f s", outage.from_us, outage.to_us, exc, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
        healed = outage._replace(updated_us=_now_us(), trades_backfilled=n, healed_us=_now_us())
        await self.sink.put([healed])
        self.trades_backfilled += n
        metrics.TRADES_BACKFILLED.inc(n)
        if await until_written(self.sink):
            with contextlib.suppress(RedisError):  # else done again after a restart: the same rows, no copies
                async with redis_deadline():
                    await self.redis.hdel(self._pending_key, str(outage.from_us))
        log.info("trade backfill %s..%s: %d trades from REST", outage.from_us, outage.to_us, n)

    async def fetch_trades(self, outage: CaptureOutage) -> int:
        """Every trade of the outage (a second wider each side) put to the sink as source rest; returns how many."""
        return await fetch_rest_trades(
            self.client, self.sink, self.gatherer_id, outage.from_us - EDGE_US, outage.to_us + EDGE_US
        )


async def fetch_rest_trades(client: KalshiRestClient, sink: TradeSink, gatherer_id: str, lo: int, hi: int) -> int:
    """Every trade with lo <= exchange time <= hi from GET /markets/trades, put to the sink as source rest;
    returns how many. A trade that does not convert is a dead letter, not the end of the fetch."""
    n = 0
    async for page in client.iter_trades(min_ts=lo // 1_000_000, max_ts=hi // 1_000_000 + 1):
        received = _now_us()
        trades: list[Trade] = []
        for raw in page:
            try:
                t = rest_trade(raw, gatherer_id, received)
            except ValueError as exc:  # one bad trade is quarantined; it must not stop the fetch for ever
                sink.dead_letter(orjson.dumps(raw), "bad_value", str(exc)[:500], "rest:/markets/trades", received)
                continue
            if lo <= t.exchange_ts_us <= hi:
                trades.append(t)
        if trades:
            await sink.put(trades)
            n += len(trades)
    return n


async def until_written(sink: TradeSink, timeout_s: float = 60.0) -> bool:
    """Wait until what was put so far is in Redis, so a mark of progress may be set; False if it did not get
    there in time (Redis down: the work is done again after a restart, the same rows)."""
    written: Any = getattr(sink, "records_written", None)
    if written is None:
        return True  # a sink without a count (tests' MemorySink) holds everything at once
    target = written + int(getattr(sink, "buffered", 0))
    deadline = time.monotonic() + timeout_s
    while getattr(sink, "records_written", target) < target:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True
