"""History end to end: the simulator has a past (settled markets, their trades and one-minute candles, a cutoff
between the live and the historical endpoints), the live capture runs, and `kalshi-data backfill` (a process of
its own) is killed -9 at a random moment and started again while the cutoff moves under it, twice. Whatever the
draw:
- production's trades equal the simulator's whole trade history, past and live, row for row (and a past trade
  production already held from another source stays one row, with its source);
- production's candlesticks equal the simulator's, row for row;
- every past market is in production, finalized, with its result and settlement value;
- a second backfill of the same days fetches nothing and adds nothing."""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from core.config import RateLimitConfig
from devstack import Pipeline, PipelineOptions
from simulator import compare_history, compare_with_ledger
from tests.services import ADMIN_DSN, PrivateRedis
from tests.test_holes import settle

pytestmark = pytest.mark.slow

HOUR_US = 3_600_000_000


@pytest.mark.parametrize("seed", [41])  # KD_E2E_SEED=N runs it with N
async def test_the_past_exactly_once_beside_the_live_capture(
    private_redis: PrivateRedis, tmp_path: Path, seed: int
) -> None:
    seed = int(os.environ.get("KD_E2E_SEED", seed))
    rng = random.Random(seed)
    opts = PipelineOptions(
        markets=200, active=40, rate=300, seed=seed, gatherers=1, db_prefix=f"kd_hist_{uuid.uuid4().hex[:8]}",
        admin_dsn=ADMIN_DSN, redis_url=private_redis.url, run_dir=tmp_path / "run", lake=tmp_path / "lake",
        sync_interval_s=1, export_interval_s=3600, markets_per_connection=50, history_days=3,
    )  # fmt: skip
    p = Pipeline(opts)
    try:
        await p.start()
        assert p.sim is not None and p.sim.history is not None
        h = p.sim.history
        # a past trade production already holds from another source (a capture that saw it): it stays one row
        seen = [rows[len(rows) // 2] for rows in list(h.trades.values())[:: max(1, len(h.trades) // 5)]]
        with psycopg.connect(p.prod_dsn) as conn:
            conn.execute(
                "SELECT kd_ensure_partitions('trades', %s, %s)", (min(r[2] for r in seen), int(time.time() * 1e6))
            )
            for r in seen:
                conn.execute(
                    "INSERT INTO trades (trade_id, market_ticker, exchange_ts_us, yes_price, no_price, count, "
                    "taker_outcome_side, taker_book_side, source, received_us, gatherer_id) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'ws', %s, 'g9')",
                    (*r, r[2] + 5_000),
                )
        bf = p.backfill()
        # whole past days only: what a second run would find new is then nothing, whenever it runs
        yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
        # slow enough that the kill lands in the middle; the cutoff moves while it runs
        bf.write_config(
            kalshi=bf.config.kalshi.model_copy(update={"rate_limit": RateLimitConfig(read_per_second=12, burst=2)}),
            concurrency=rng.choice((2, 4, 8)),
        )
        bf.start(yesterday)
        target = rng.randint(10, 60)
        while await asyncio.to_thread(_checkpoints, p.prod_dsn) < target:
            assert bf.running(), f"the backfill ended before {target} checkpoints (see {bf.log_path})"
            await asyncio.sleep(0.05)
            if rng.random() < 0.01:
                _move(p, rng)
        _move(p, rng)
        await asyncio.sleep(rng.uniform(0, 0.5))
        bf.kill()  # kill -9, somewhere in a window
        at_kill = await asyncio.to_thread(_checkpoints, p.prod_dsn)
        bf.start(yesterday)
        await asyncio.sleep(rng.uniform(0.2, 2.0))
        _move(p, rng)
        report = await asyncio.to_thread(bf.wait, 300)
        assert report["exit_code"] == 0 and report["windows_failed"] == 0, report
        assert report["windows_skipped"] >= at_kill > 0  # it resumed where the killed run stopped
        assert report["windows_done"] > 0

        await p.drain(timeout_s=90)
        await settle(p)
        ledger = compare_with_ledger(p.sim.ledger, p.prod_dsn, examples=3)
        for table, c in ledger.items():  # the past and everything the live capture took meanwhile
            assert c["missing"] == c["extra"] == c["differing"] == 0, (table, c)
        assert ledger["candlesticks"]["expected"] == sum(len(c) for c in h.candles.values()) > 0
        assert ledger["trades"]["expected"] > sum(len(t) for t in h.trades.values()) > 0  # past and live
        past = compare_history(h, p.prod_dsn)
        assert past["stored"] == past["past_markets"] and past["differing"] == 0, past
        with psycopg.connect(p.prod_dsn) as conn:
            sources: dict[str, int] = dict(
                conn.execute(
                    "SELECT source, count(*) FROM trades WHERE trade_id = ANY(%s) GROUP BY 1",
                    ([r[0] for rows in h.trades.values() for r in rows],),
                ).fetchall()
            )
            mismatched = conn.execute("SELECT count(*) FROM book_audits WHERE result = 'mismatched'").fetchone()
            unverified = conn.execute("SELECT count(*) FROM coverage_gaps WHERE NOT verified_complete").fetchone()
        assert sources == {"ws": len(seen), "history": sum(len(t) for t in h.trades.values()) - len(seen)}
        # the backfill beside the capture costs it nothing: no false mismatch, no hole on the record
        assert mismatched == (0,) and unverified == (0,), (mismatched, unverified)

        # the same days again: nothing fetched, nothing added
        bf.start(yesterday)
        again = await asyncio.to_thread(bf.wait, 120)
        assert again["windows_done"] == 0 and again["trades"] == again["candles"] == 0, again
        assert again["requests"] <= 2, again  # the cutoff, and nothing else
    finally:
        await p.stop()


def _checkpoints(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM backfill_checkpoints WHERE endpoint <> 'markets'").fetchone()
    return int(row[0]) if row else 0


def _move(p: Pipeline, rng: random.Random) -> None:
    """The archive takes a few more hours of the past (markets and trades, each by its own amount)."""
    assert p.sim is not None and p.sim.history is not None
    c = p.sim.history.cutoff
    p.sim.move_cutoff(
        c.market_settled_us + rng.randint(1, 12) * HOUR_US + rng.randint(0, HOUR_US),
        c.trades_created_us + rng.randint(1, 12) * HOUR_US + rng.randint(0, HOUR_US),
    )
