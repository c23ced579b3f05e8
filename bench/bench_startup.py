"""Capture from the first seconds of a (re)start, at any market count: one gatherer started into a market that
is already moving; time from start to the first trade, ticker and delta stored in its database, and to
every market placed and subscribed (readiness), beside the registry's own sync time (the ceiling a design
that waits for the full listing would have to add). `python -m bench.bench_startup [markets] [active]`."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from devstack import Pipeline, PipelineOptions

ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def _first(dsn: str, table: str) -> bool:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None


async def measure(markets: int, active: int, rate: float = 2_000.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        opts = PipelineOptions(
            markets=markets,
            active=active,
            rate=rate,
            gatherers=1,
            db_prefix=f"kdstart_{markets}",
            admin_dsn=ADMIN,
            redis_url="redis://127.0.0.1:6379/13",
            run_dir=Path(tmp) / "run",
            lake=Path(tmp) / "lake",
            markets_per_connection=7_500,
            rq_worker=False,
            hold_market=False,  # the market moves before and while the gatherer starts
        )
        p = Pipeline(opts)
        try:
            await p.start_simulator()
            await asyncio.sleep(2)  # the market is moving
            p.start_writers("g1")
            t0 = time.monotonic()
            p.start_gatherer("g1")
            g = p.gatherers["g1"]
            dsn = p.dsns["g1"]
            firsts: dict[str, float] = {}
            ready_s = None
            while ready_s is None or len(firsts) < 3:
                now = time.monotonic() - t0
                for table in ("trades", "tickers", "orderbook_deltas"):
                    if table not in firsts and await asyncio.to_thread(_first, dsn, table):
                        firsts[table] = round(now, 2)
                if ready_s is None and g.ready()[0]:
                    ready_s = round(now, 2)
                if now > 900:
                    raise RuntimeError(f"not ready after 900 s: {g.ready()[1]}")
                await asyncio.sleep(0.1)
            assert g.registry is not None and g.pool is not None
            return {
                "markets": markets,
                "active": active,
                "events_per_s": rate,
                "first_stored_s": firsts,
                "registry_sync_s": round(g.registry.stats.seconds, 2),
                "registry_pages": g.registry.stats.pages,
                "all_markets_subscribed_s": ready_s,
                "orderbook_connections": len(g.pool.orderbook),
                "goal": "first trade/ticker < 5 s; every book < sync + 5 s",
                "met": firsts["trades"] < 5 and firsts["tickers"] < 5 and ready_s < g.registry.stats.seconds + 5,
            }
        finally:
            await p.stop()
            with psycopg.connect(ADMIN, autocommit=True) as conn:
                for name in ("prod", "g1"):
                    conn.execute(f'DROP DATABASE IF EXISTS "{opts.db_prefix}_{name}" WITH (FORCE)')


def run(markets: int = 100_000) -> dict[str, Any]:
    """`make bench`: 100,000 markets, a fifth of them (at most 20,000) moving."""
    return asyncio.run(measure(markets, min(20_000, markets // 5)))


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    n = args[0] if args else 100_000
    print(json.dumps(asyncio.run(measure(n, args[1] if len(args) > 1 else min(20_000, n // 5)))))
