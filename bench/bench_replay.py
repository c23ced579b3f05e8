"""The book replay's rate on one core: kalshi_data.Lake.replay and Production.replay over the busiest markets of a
day of the simulator's market, in book updates (states) and deltas per second, beside the ceiling measured in the
same run: a plain pyarrow read of the same delta rows from the same files (with the market filter, into Python
tuples, as the replay gets them). `python -m bench.bench_replay [events] [markets]`."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from bench.bench_writer import drop_db, fresh_db
from dedup import export_all
from devstack import fill_production_day
from kalshi_data import Lake, Production

DAY0 = 1_764_028_800_000_000
DAY_US = 86_400_000_000


def _timed(fn: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def one(events: int = 200_000, markets: int = 3_000, busiest: int = 20) -> dict[str, Any]:
    from tests.dedupkit import dedup_config

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core: DuckDB and pyarrow threads too
    prod = fresh_db("production")
    try:
        fill_production_day(prod, DAY0, events, markets=markets, active=max(300, markets // 10))
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "lake"
            _, export_s = _timed(
                lambda: export_all(dedup_config(prod, {"g1": prod}, lake=f"file://{root}"), now_us=DAY0 + 2 * DAY_US)
            )
            files = sorted((root / "orderbook_deltas").glob("date=*/*.parquet"))
            counts = pq.read_table(files, columns=["market_ticker"])["market_ticker"].value_counts().to_pylist()
            top = [c["values"] for c in sorted(counts, key=lambda c: -c["counts"])[:busiest]]
            lo, hi = DAY0, DAY0 + DAY_US - 1

            def read() -> int:
                t = pq.read_table(
                    files,
                    columns=["market_ticker", "exchange_ts_us", "side", "price", "delta", "receive_delay_us"],
                    filters=[("market_ticker", "in", top)],
                )
                return sum(1 for _ in zip(*(t[c].to_pylist() for c in t.column_names), strict=True))

            rows, read_s = _timed(read)
            lake_states, lake_s = _timed(lambda: sum(1 for _ in Lake(root).replay(top, lo, hi)))
            with Production(prod) as p:
                prod_states, prod_s = _timed(lambda: sum(1 for _ in p.replay(top, lo, hi)))
        return {
            "events": events,
            "markets_replayed": busiest,
            "deltas_replayed": rows,
            "book_updates": lake_states,
            "export_s_with_book_tables": round(export_s, 2),
            "lake_replay_updates_per_s": round(lake_states / lake_s),
            "lake_replay_deltas_per_s": round(rows / lake_s),
            "production_replay_updates_per_s": round(prod_states / prod_s),
            "ceiling_pyarrow_read_rows_per_s": round(rows / read_s),
            "lake_replay_over_ceiling": round(read_s / lake_s, 3),
        }
    finally:
        drop_db(prod)


def run() -> dict[str, Any]:
    return {"demo_scale": one()}


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    print(json.dumps(one(*args) if args else run()))
