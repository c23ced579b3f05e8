"""Where Kalshi's archive begins (GET /historical/cutoff), read again when a caller needs a reading taken after
a moment of its own: the cutoffs only move forward, so a reading that began after a live fetch ended bounds what
that fetch could have missed. Concurrent callers share one request."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from core.conversions import iso_to_us
from gatherer import KalshiApiError, KalshiRestClient


@dataclass(frozen=True)
class Cutoff:
    market_settled_us: int
    trades_created_us: int


class CutoffWatch:
    def __init__(self, client: KalshiRestClient) -> None:
        self.client = client
        self.reads = 0
        self._latest: tuple[float, Cutoff] | None = None  # (monotonic time the read began, what it said)
        self._pending: asyncio.Task[tuple[float, Cutoff]] | None = None

    async def _read(self) -> tuple[float, Cutoff]:
        began = time.monotonic()
        self.reads += 1
        try:
            body = await self.client.historical_cutoff()
        except KalshiApiError as exc:
            if exc.status != 404:
                raise
            return began, Cutoff(0, 0)  # no archive: the live endpoints serve everything
        return began, Cutoff(iso_to_us(body["market_settled_ts"]), iso_to_us(body["trades_created_ts"]))

    async def after(self, moment: float) -> Cutoff:
        """A reading that began at or after `moment` (time.monotonic())."""
        while True:
            if self._latest is not None and self._latest[0] >= moment:
                return self._latest[1]
            if self._pending is None or self._pending.done():
                self._pending = asyncio.ensure_future(self._read())
            pending = self._pending
            began, cut = await asyncio.shield(pending)
            if self._latest is None or began > self._latest[0]:
                self._latest = (began, cut)
            if self._pending is pending:
                self._pending = None

    async def now(self) -> Cutoff:
        return await self.after(time.monotonic())

    async def last(self) -> Cutoff:
        """The newest reading, whenever it began (a new one if there is none yet)."""
        return self._latest[1] if self._latest else await self.now()
