"""An asyncio token bucket shared by every REST caller of a process, sized to the account's tier."""

from __future__ import annotations

import asyncio
import time


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
