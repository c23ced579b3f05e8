"""TradeSweep: every trade Kalshi reports over REST reaches the capture, whatever the WebSocket did.

Every `capture.trade_sweep_s` the gatherer fetches the trades of the stretch since its last sweep, up to
`capture.trade_sweep_lag_s` ago, from `GET /markets/trades` and stores them as source 'rest'. A trade the
WebSocket delivered is the same row (natural key trade_id, exchange time: no copies); one it never
delivered, a loss no seq showed (trade frames without seq, which some connections send, or a message the
exchange dropped and numbered on), is stored now. Where the sweep has got to is kept in Redis, so a
restart goes on from there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core import keys, metrics
from core.config import CaptureConfig
from core.redisconn import redis_deadline
from gatherer._client import KalshiApiError, KalshiRestClient
from gatherer._outages import TradeSink, fetch_rest_trades, until_written

log = logging.getLogger(__name__)


@dataclass
class TradeSweep:
    client: KalshiRestClient
    redis: aioredis.Redis
    sink: TradeSink
    gatherer_id: str
    prefix: str
    cfg: CaptureConfig
    trades_swept: int = 0
    swept_until_us: int = 0

    async def run(self) -> None:
        if self.cfg.trade_sweep_s <= 0:
            return
        key = keys.trades_swept_until(self.prefix, self.gatherer_id)
        lag_us = int(self.cfg.trade_sweep_lag_s * 1_000_000)
        try:
            async with redis_deadline():
                stored = await self.redis.get(key)
        except RedisError as exc:
            log.warning("trade sweep: Redis unreadable at start (%s): sweeping from now", exc)
            stored = None
        # A first start sweeps from now: what came before it is no capture of this gatherer's to complete.
        self.swept_until_us = int(stored) if stored else time.time_ns() // 1000 - lag_us
        while True:
            await asyncio.sleep(self.cfg.trade_sweep_s)
            try:
                await self.sweep(time.time_ns() // 1000 - lag_us)
                if await until_written(self.sink):
                    async with redis_deadline():
                        await self.redis.set(key, self.swept_until_us)
            except RedisError as exc:  # swept again after a restart: the same rows
                log.warning("trade sweep: progress not saved (Redis: %s)", exc)
            except Exception:  # a sweep must never end capture: this round is done again next time
                log.exception("trade sweep failed unexpectedly; again next round")
                metrics.TASK_RESTARTS.labels("trade-sweep").inc()

    async def sweep(self, up_to_us: int) -> int:
        """The trades from where the last sweep stopped up to `up_to_us`; on a REST failure the stretch waits
        for the next round (it only grows)."""
        lo = self.swept_until_us
        if up_to_us <= lo:
            return 0
        try:
            n = await fetch_rest_trades(self.client, self.sink, self.gatherer_id, lo, up_to_us)
        except (KalshiApiError, OSError, ValueError) as exc:
            log.warning("trade sweep %d..%d failed (%s); again next round", lo, up_to_us, exc)
            return 0
        self.swept_until_us = up_to_us
        self.trades_swept += n
        metrics.TRADES_SWEPT.inc(n)
        return n
