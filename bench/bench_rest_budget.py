"""The REST budget of one gatherer at a given number of open markets: what the registry, the snapshot poller
(whose REST books the book audit reads: the audit itself sends nothing) and a trade backfill ask of the
exchange, counted by the simulator per route, against the account's read limit (Kalshi's basic tier: 20/s).

`python -m bench.bench_rest_budget [markets] [seconds]`: a gatherer with the default registry and poller
settings runs against the simulator for `seconds`; then one backfill of a 60 s outage at the market's trade
rate. Rates at the defaults: poller markets / interval_s, registry pages / reconcile_interval_s."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from bench.bench_writer import drop_db, fresh_db
from core.config import GathererConfig, KalshiConfig, MetricsConfig, PollerConfig, RedisConfig, RouterConfig
from core.records import CaptureOutage
from devstack import db_config, free_port
from gatherer import CaptureWatch, Gatherer
from simulator import ExchangeOptions, SimOptions, Simulator

READ_LIMIT_PER_S = 20.0  # Kalshi basic tier (core.config.RateLimitConfig's default)


async def measure(markets: int, seconds: float) -> dict[str, Any]:
    sim = Simulator(
        SimOptions(
            port=free_port(),
            rate=200,
            exchange=ExchangeOptions(seed=3, markets=markets, active=markets, lifecycle_interval_s=0),
        )
    )
    await sim.start()
    db = fresh_db("gatherer")
    cfg = GathererConfig(
        gatherer_id="gb",
        kalshi=KalshiConfig(rest_url=sim.rest_url, ws_url=sim.ws_url),  # default rate limit: 20 reads/s
        database=db_config(db),
        redis=RedisConfig(url="redis://127.0.0.1:6379/14", key_prefix="kdbudget"),
        router=RouterConfig(spill_dir="/tmp/kd-bench-budget-spill"),
        metrics=MetricsConfig(port=0),
        poller=PollerConfig(),  # interval 300 s, as deployed
    )
    import redis

    r = redis.Redis.from_url(cfg.redis.url)
    r.delete(*(r.keys("kdbudget:*") or ["kdbudget:none"]))  # no heartbeat of an earlier run: a first start
    r.close()
    g = Gatherer(cfg)
    task = asyncio.create_task(g.run())
    try:
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - t0
        by_route = dict(sim.rest.served_by_route)
        assert g.registry is not None and g.poller is not None and g.capture is not None
        open_markets = len(g.registry.open_markets())
        trades_before = sim.rest.served_by_route.get("/markets/trades", 0)
        now = time.time_ns() // 1000
        watch: CaptureWatch = g.capture
        t1 = time.monotonic()
        n = await watch.fetch_trades(CaptureOutage("gb", now, "*", now - 60_000_000, now, "restart"))
        backfill_requests = sim.rest.served_by_route.get("/markets/trades", 0) - trades_before
        trade_rate = n / 60
    finally:
        g.stop_event.set()
        await asyncio.wait_for(task, 30)
        await sim.stop()
        drop_db(db)
    registry_pages = by_route.get("/markets", 0) + by_route.get("/events", 0) + by_route.get("/series", 0)
    poller_per_s = open_markets / cfg.poller.interval_s
    registry_per_s = registry_pages / elapsed  # measured: the initial sync and each reconcile since (an upper bound)
    return {
        "markets": markets,
        "open_markets": open_markets,
        "seconds": round(elapsed, 1),
        "requests_by_route": by_route,
        "registry_requests_in_run": registry_pages,
        "poller_snapshots_in_run": g.poller.snapshots,
        "poller_passes": g.poller.passes,
        "backfill_60s_outage": {"trades": n, "requests": backfill_requests, "seconds": round(time.monotonic() - t1, 2)},
        "simulated_trades_per_s": round(trade_rate, 1),
        "steady_state_reads_per_s": {
            "poller (audit reads these)": round(poller_per_s, 2),
            "registry (sync + reconcile, measured)": round(registry_per_s, 3),
            "book audit": 0,
            "trade backfill": 0,  # only after an outage: requests per 60 s outage above
            "total": round(poller_per_s + registry_per_s, 2),
        },
        "read_limit_per_s": READ_LIMIT_PER_S,
        "share_of_limit": round((poller_per_s + registry_per_s) / READ_LIMIT_PER_S, 3),
    }


def run(markets: int = 1000, seconds: float = 30.0) -> dict[str, Any]:
    """`make bench`: 1,000 open markets for 30 s (the module's own command defaults to 90 s)."""
    return asyncio.run(measure(markets, seconds))


if __name__ == "__main__":
    args = sys.argv[1:]
    print(json.dumps(asyncio.run(measure(int(args[0]) if args else 1000, float(args[1]) if len(args) > 1 else 90))))
