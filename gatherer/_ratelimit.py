"""Token buckets sized to the account's tier: one per process (AsyncTokenBucket), or one per API key shared by
every process and host that reads with it (SharedTokenBucket, in Redis), chosen by `kalshi.rate_limit.shared`."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from redis.exceptions import RedisError

from core import keys
from core.config import KalshiConfig
from core.redisconn import async_redis_from_config, redis_deadline

log = logging.getLogger(__name__)


class TokenBucket(Protocol):
    async def acquire(self) -> None: ...

    def pause(self, seconds: float) -> None: ...


class AsyncTokenBucket:
    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self._tokens = float(burst)
        self._at = time.monotonic()
        self._lock = asyncio.Lock()
        self.waited_s = 0.0  # total time callers spent waiting (a metric)

    async def acquire(self) -> None:
        async with self._lock:  # FIFO: callers are served in arrival order
            while True:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
                self._at = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                wait = (1 - self._tokens) / self.rate
                self.waited_s += wait
                await asyncio.sleep(wait)

    def pause(self, seconds: float) -> None:
        """After a 429: no tokens for `seconds` (every caller backs off together)."""
        self._tokens = min(self._tokens, 0.0) - seconds * self.rate


# A reservation: take a token now, or go into debt and be told how long to wait (microseconds). The bucket's
# clock is Redis's own (TIME), so hosts with skewed clocks share it fairly. ARGV: rate/s, burst, pause_us.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rate, burst, pause_us = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local v = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(v[1]) or burst
local at = tonumber(v[2]) or now
tokens = math.min(burst, tokens + (now - at) * rate / 1000000)
if pause_us > 0 then tokens = math.min(tokens, 0) - pause_us * rate / 1000000 end
tokens = tokens - 1
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'at', string.format('%d', now))
redis.call('PEXPIRE', KEYS[1], 600000)
if tokens >= 0 then return 0 end
return math.floor(-tokens * 1000000 / rate)
"""


class SharedTokenBucket:
    """One bucket per API key in Redis: every process that reads with the key (gatherers on three hosts, the
    history backfill) takes its tokens there, so together they stay within the tier. Each acquire is one round
    trip (a reservation: the caller waits out its place in the queue, FIFO across processes). If Redis does not
    answer, the process falls back to a bucket of its own at `fallback_share` of the rate until it does."""

    def __init__(self, kalshi: KalshiConfig) -> None:
        rl = kalshi.rate_limit
        assert rl.shared is not None
        self.rate, self.burst = rl.read_per_second, rl.burst
        self.key = keys.ratelimit(rl.shared.key_prefix, kalshi.api_key_id or "public")
        self._redis = async_redis_from_config(rl.shared)
        self._fallback = AsyncTokenBucket(rl.read_per_second * rl.shared_fallback_share, rl.burst)
        self._pause_us = 0
        self._down_since: float | None = None
        self.waited_s = 0.0

    async def acquire(self) -> None:
        pause, self._pause_us = self._pause_us, 0
        try:
            async with redis_deadline(2.0):
                wait_us = int(await self._redis.eval(_RESERVE, 1, self.key, self.rate, self.burst, pause))
        except (RedisError, OSError) as exc:
            if self._down_since is None:
                self._down_since = time.monotonic()
                log.warning("shared rate limit unreachable (%s): a bucket of this process's own meanwhile", exc)
            await self._fallback.acquire()
            return
        if self._down_since is not None:
            log.info("shared rate limit back after %.0f s", time.monotonic() - self._down_since)
            self._down_since = None
        if wait_us > 0:
            self.waited_s += wait_us / 1e6
            await asyncio.sleep(wait_us / 1e6)

    def pause(self, seconds: float) -> None:
        """After a 429: the next acquire empties the shared bucket for `seconds` (every process backs off)."""
        self._pause_us = max(self._pause_us, int(seconds * 1e6))
        self._fallback.pause(seconds)

    async def aclose(self) -> None:
        await self._redis.aclose()


def limiter_from_config(kalshi: KalshiConfig) -> AsyncTokenBucket | SharedTokenBucket:
    if kalshi.rate_limit.shared is not None:
        return SharedTokenBucket(kalshi)
    return AsyncTokenBucket(kalshi.rate_limit.read_per_second, kalshi.rate_limit.burst)
