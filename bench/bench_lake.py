"""The lake on a day of the simulator's market: files per table-day, Parquet bytes against gzip CSV of the same
rows, row groups a one-market read opens, and the export's peak memory; at demo scale (3,000 markets) and at
100,000 markets. `python -m bench.bench_lake [events] [markets]` for one run; run() does both."""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from bench.bench_writer import drop_db, fresh_db
from dedup import export_all, lake_stats
from devstack import fill_production_day

DAY0 = 1_764_028_800_000_000
DAY_US = 86_400_000_000


def _row_groups_per_market(root: Path) -> dict[str, int]:
    """Worst and typical number of row groups whose market statistics admit one market, per table."""
    out = {}
    for f in sorted(root.glob("*/date=*/part-0000.parquet")):
        meta = pq.ParquetFile(f).metadata
        col = meta.schema.names.index("market_ticker")
        stats = [
            (meta.row_group(g).column(col).statistics.min, meta.row_group(g).column(col).statistics.max)
            for g in range(meta.num_row_groups)
        ]
        markets = sorted(set(pq.read_table(f, columns=["market_ticker"])["market_ticker"].to_pylist()))
        counts = [sum(1 for lo, hi in stats if lo <= m <= hi) for m in markets[:: max(1, len(markets) // 200)]]
        out[f.parent.parent.name] = max(counts)
    return out


def one(events: int, markets: int, active: int, bloom: bool = False) -> dict[str, Any]:
    from tests.dedupkit import dedup_config

    prod = fresh_db("production")
    try:
        t0 = time.perf_counter()
        counts = fill_production_day(prod, DAY0, events, markets=markets, active=active)
        fill_s = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "lake"
            cfg = dedup_config(prod, {"g1": prod}, lake=f"file://{root}", bloom_filter=bloom)
            rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t0 = time.perf_counter()
            export_all(cfg, now_us=DAY0 + 2 * DAY_US + 60_000_000)
            export_s = time.perf_counter() - t0
            rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            stats = lake_stats(root)
            groups = _row_groups_per_market(root)
        return {
            "markets": markets,
            "active": active,
            "events": events,
            "rows": counts,
            "fill_s": round(fill_s, 1),
            "export_s": round(export_s, 2),
            "export_rows_per_s": round(sum(counts.values()) / export_s),
            "peak_rss_growth_mb": round((rss1 - rss0) / 1024, 1),
            "bloom_filter": bloom,
            "tables": stats,
            "max_row_groups_per_market": groups,
            "files_per_table_day": {t: s["files"] for t, s in stats.items()},
        }
    finally:
        drop_db(prod)


def run() -> dict[str, Any]:
    return {
        "demo_scale": one(120_000, 3_000, 300),
        "demo_scale_bloom_filter": one(120_000, 3_000, 300, bloom=True),
        "markets_100k": one(400_000, 100_000, 20_000),
        # the first layout (a folder per market per day), measured on the same demo run: issue 14
        "old_layout_demo": {
            "files": 3439,
            "ratio_to_gzip_csv": {
                "orderbook_deltas": 1.28,
                "trades": 3.23,
                "tickers": 3.12,
                "orderbook_snapshots": 33.5,
            },
        },
    }


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    if args:
        print(
            json.dumps(
                one(args[0], args[1] if len(args) > 1 else 3_000, max(300, (args[1] if len(args) > 1 else 3_000) // 5))
            )
        )
    else:
        print(json.dumps(run()))
