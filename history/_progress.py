"""The backfill's progress: a bar with counts, rate and ETA on a terminal (tqdm), one log line a minute
otherwise (a job's log, CI)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Protocol

from tqdm import tqdm

log = logging.getLogger("history.progress")


class _Report(Protocol):
    trades: int
    candles: int
    windows_failed: int
    requests: int


class Progress:
    def __init__(self, bar: bool, every_s: float = 60.0) -> None:
        self.bar, self.every_s = bar, every_s
        self._tqdm: tqdm[Any] | None = None
        self._total = self._done = 0
        self._t0 = self._last = 0.0

    @classmethod
    def for_stream(cls) -> Progress:
        return cls(bar=sys.stderr.isatty())

    def start(self, total: int) -> None:
        self._total, self._done = total, 0
        self._t0 = self._last = time.monotonic()
        if self.bar:
            self._tqdm = tqdm(total=total, unit="window", dynamic_ncols=True, desc="backfill")

    def step(self, report: _Report) -> None:
        self._done += 1
        counts = f"{report.trades:,} trades, {report.candles:,} candles, {report.windows_failed} failed"
        if self._tqdm is not None:
            self._tqdm.set_postfix_str(counts, refresh=False)
            self._tqdm.update(1)
            return
        now = time.monotonic()
        if now - self._last >= self.every_s or self._done == self._total:
            self._last = now
            rate = self._done / max(now - self._t0, 1e-9)
            eta = (self._total - self._done) / rate if rate else float("inf")
            log.info("backfill: %d/%d windows, %s, %.1f windows/s, ETA %.0f s", self._done, self._total, counts,
                     rate, eta)  # fmt: skip

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None
