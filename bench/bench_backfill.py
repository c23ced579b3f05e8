"""The history backfill's pace against the ceiling its rate limit allows, in the same run: the simulator serves a
past of `days` days (every trade of it behind the trades cutoff, so /historical/trades serves them, a page of at
most 1,000), enforcing the tier's budget itself (429 past it); the backfill fetches every trade into a fresh
production database through its token bucket at the basic tier's 20 requests a second. The ceiling is what that
budget allows: requests/s x 1,000 trades a page. Reported: trades a second, its ratio to the ceiling, the
requests a second actually made, the 429s, and the same with hour windows (the default) beside day windows.
`python -m bench.bench_backfill [days] [trades_per_market] [read_per_second]`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.bench_writer import drop_db, fresh_db
from core.config import BackfillConfig, KalshiConfig, RateLimitConfig
from devstack import db_config, simulator_process
from gatherer import KalshiRestClient
from history import Backfill, BackfillRequest, Progress, Store

DAY_US = 86_400_000_000
PAGE = 1_000


def _simulator(days: int, per_market: int, rps: float, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`kalshi-data sim` in a process of its own (the exchange is not on the backfill's core), enforcing the budget;
    its market does not move (the past is what is served)."""
    return simulator_process(
        log, "--rate", "1", "--start-delay", "86400", "--markets", "3000", "--active", "10", "--seed", "3",
        "--history-days", str(days), "--history-trades-per-market", str(per_market),
        "--rest-rate-limit", str(rps * 1.1), "--rest-burst", "5",
    )  # fmt: skip


async def one(days: int, per_market: int, rps: float, window_s: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = _simulator(days, per_market, rps, Path(tmp) / "sim.log")
        prod = fresh_db("production")
        store = Store(prod, 4)
        try:
            # the whole past archived: /historical/trades serves it
            async with httpx.AsyncClient() as admin:
                cue = await admin.post(f"{base}/_sim/cutoff", json={"trades_created_us": time.time_ns() // 1000})
                cue.raise_for_status()
            cfg = BackfillConfig(
                production=db_config(prod),
                kalshi=KalshiConfig(
                    rest_url=f"{base}/trade-api/v2", rate_limit=RateLimitConfig(read_per_second=rps, burst=5)
                ),
                concurrency=8, trade_window_s=window_s, candles=False, settle_lag_s=0,
            )  # fmt: skip
            today = time.time_ns() // 1000 // DAY_US * DAY_US
            async with KalshiRestClient(cfg.kalshi) as client:
                t0 = time.perf_counter()
                report = await Backfill(cfg, client, store, Progress(bar=False)).run(
                    BackfillRequest(today - days * DAY_US, today)
                )
                seconds = time.perf_counter() - t0
                throttled = client.stats.throttled
            with psycopg.connect(prod) as conn:
                row = conn.execute("SELECT count(*) FROM trades").fetchone()
            assert row is not None and report.trades == row[0] > 0 and report.windows_failed == 0, report
        finally:
            store.close()
            proc.terminate()
            proc.wait(30)
            drop_db(prod)
    ceiling = rps * PAGE
    return {
        "days": days,
        "trades": report.trades,
        "trade_window_s": window_s,
        "requests": report.requests,
        "seconds": round(seconds, 2),
        "trade_requests": report.window_requests,
        "trade_seconds": report.window_seconds,
        "requests_per_s": round(report.window_requests / report.window_seconds, 2),
        "throttled_429": throttled,
        "trades_per_s": round(report.trades / report.window_seconds),
        "ceiling_trades_per_s": round(ceiling),
        "over_ceiling": round(report.trades / report.window_seconds / ceiling, 3),
        "whole_run_trades_per_s": round(report.trades / seconds),
    }


def run(days: int = 2, per_market: int = 20_000, rps: float = 20.0) -> dict[str, Any]:
    return {
        "day_windows": asyncio.run(one(days, per_market, rps, 86_400)),
        "hour_windows": asyncio.run(one(days, per_market, rps, 3_600)),
    }


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    print(json.dumps(run(*args)))
