"""Paging 1,000,000 markets from the simulator's REST listing: time, correctness and memory, next to the
ceiling measured in the same run (building the same market JSON in-process, no HTTP)."""

from __future__ import annotations

import asyncio
import resource
import time
from typing import Any

import httpx

from simulator import ExchangeOptions, SimOptions, Simulator, _wire

MARKETS = 1_000_000


async def _page_all() -> dict[str, Any]:
    t0 = time.perf_counter()
    sim = Simulator(
        SimOptions(port=0, rate=0, exchange=ExchangeOptions(markets=MARKETS, active=100, lifecycle_interval_s=0))
    )
    await sim.start()
    startup = time.perf_counter() - t0
    u = sim.exchange.universe
    t1 = time.perf_counter()
    for i in range(20_000):
        _wire.market_json(u, i, None, legacy=True, vocabulary="current")
    build_per_s = 20_000 / (time.perf_counter() - t1)
    seen = 0
    unique: set[str] = set()
    t2 = time.perf_counter()
    async with httpx.AsyncClient(base_url=sim.rest_url, timeout=60) as http:
        cursor = ""
        while True:
            body = (await http.get("/markets", params={"limit": 1000, "cursor": cursor})).json()
            seen += len(body["markets"])
            unique.update(m["ticker"] for m in body["markets"])
            cursor = body["cursor"]
            if not cursor:
                break
    dt = time.perf_counter() - t2
    await sim.stop()
    return {
        "markets": MARKETS,
        "paged": seen,
        "unique": len(unique),
        "startup_s": round(startup, 2),
        "page_all_s": round(dt, 1),
        "markets_per_s": round(seen / dt),
        "ceiling_market_json_per_s": round(build_per_s),
        "vs_ceiling": round(seen / dt / build_per_s, 3),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def run() -> dict[str, Any]:
    return asyncio.run(_page_all())


if __name__ == "__main__":
    import json

    print(json.dumps(run()))
