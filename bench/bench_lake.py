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
from dedup import column_floor, export_all, lake_stats
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
            floor = column_floor(root, stats)
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
            "column_floor": floor,
        }
    finally:
        drop_db(prod)


# a day of deltas spread over the markets, made in the server; times whole milliseconds, receipt a few ms later
_SYNTHETIC_DELTAS = (
    "INSERT INTO orderbook_deltas (market_ticker, exchange_ts_us, side, price, delta, occurrence, market_id, sid, "
    "seq, received_us, gatherer_id) "
    "SELECT 'KXSYN-' || (i %% %(m)s), %(day)s + i * (86400000000 / %(n)s) / 1000 * 1000, i %% 2 = 0, "
    "1000 * (1 + (i * 31) %% 99), 100 * (1 + (i * 17) %% 500) * (CASE WHEN i %% 3 = 0 THEN -1 ELSE 1 END), 0, "
    "NULL, 1, i, %(day)s + i * (86400000000 / %(n)s) + (i * 7919) %% 5000, 'g1' "
    "FROM generate_series(1::bigint, %(n)s) AS i"
)


# a book for each of those markets at the day's start, so the book tables (bbo, book_1s, bars_1m) have a day to derive
_SYNTHETIC_SNAPSHOTS = (
    "INSERT INTO orderbook_snapshots (market_ticker, received_us, gatherer_id, source, yes_bid_prices, yes_bid_sizes, "
    "no_bid_prices, no_bid_sizes, yes_ask_prices, yes_ask_sizes, no_ask_prices, no_ask_sizes) "
    "SELECT 'KXSYN-' || i, %(day)s, 'g1', 'rest', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}' "
    "FROM generate_series(0, %(m)s - 1) AS i"
)


def export_memory(deltas: int, markets: int = 3_000) -> dict[str, Any]:
    """Peak memory of the export job on a day of `deltas` orderbook deltas (generated in the server, so the
    bench holds none of them), the job run in its own process: its peak RSS is the export's alone."""
    import subprocess

    import psycopg

    from tests.dedupkit import dedup_config

    prod = fresh_db("production")
    try:
        t0 = time.perf_counter()
        with psycopg.connect(prod) as conn:
            conn.execute(_SYNTHETIC_DELTAS, {"m": markets, "n": deltas, "day": DAY0})
            conn.execute(_SYNTHETIC_SNAPSHOTS, {"m": markets, "day": DAY0})
            conn.execute(
                "INSERT INTO sync_cursors (source, table_name, caught_up_us) VALUES ('g1', 'orderbook_deltas', %s)",
                (DAY0 + 2 * DAY_US,),
            )
        fill_s = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            cfg = dedup_config(prod, {"g1": prod}, lake=f"file://{Path(tmp) / 'lake'}")
            code = (
                "import json, resource, sys, time; from core.config import DeduplicatorConfig; "
                "from dedup import export_all; cfg = DeduplicatorConfig.model_validate_json(sys.stdin.read()); "
                "t0 = time.perf_counter(); out = export_all(cfg, now_us=NOW); "
                "print(json.dumps({'export_s': time.perf_counter() - t0, 'exported': out['exported'], "
                "'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
            ).replace("NOW", str(DAY0 + 2 * DAY_US + 60_000_000))
            done = subprocess.run(
                [sys.executable, "-c", code], input=cfg.model_dump_json(), capture_output=True, text=True, check=True
            )
            result = json.loads(done.stdout)
        day = max((e for e in result["exported"] if e["table"] == "orderbook_deltas"), key=lambda e: e["rows"])
        exported = result["exported"]
        derived = {t: sum(e["rows"] for e in exported if e["table"] == t) for t in ("bbo", "book_1s", "bars_1m")}
        return {
            "derived_rows": derived,  # computed in the same run: the replay of every market's day
            "deltas": deltas,
            "markets": markets,
            "fill_s": round(fill_s, 1),
            "export_s": round(result["export_s"], 1),
            "export_rows_per_s": round(deltas / result["export_s"]),
            "export_peak_rss_mb": round(result["peak_rss_mb"], 1),
            "files": day["files"],
            "bytes": day["bytes"],
            "bytes_per_row": round(day["bytes"] / deltas, 2),
        }
    finally:
        drop_db(prod)


def run() -> dict[str, Any]:
    return {
        "demo_scale": one(120_000, 3_000, 300),
        "demo_scale_bloom_filter": one(120_000, 3_000, 300, bloom=True),
        "markets_100k": one(400_000, 100_000, 20_000),
        "export_memory_1m_deltas": export_memory(1_000_000),
        "export_memory_10m_deltas": export_memory(10_000_000),
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
    if sys.argv[1:2] == ["floor"]:  # python -m bench.bench_lake floor lake  (the lake make demo wrote)
        print(json.dumps(column_floor(Path(sys.argv[2]) if len(sys.argv) > 2 else Path("lake"))))
        sys.exit()
    if sys.argv[1:2] == ["memory"]:  # python -m bench.bench_lake memory 10000000
        print(json.dumps(export_memory(int(sys.argv[2]) if len(sys.argv) > 2 else 10_000_000)))
        sys.exit()
    args = [int(a) for a in sys.argv[1:]]
    if args:
        print(
            json.dumps(
                one(args[0], args[1] if len(args) > 1 else 3_000, max(300, (args[1] if len(args) > 1 else 3_000) // 5))
            )
        )
    else:
        print(json.dumps(run()))
