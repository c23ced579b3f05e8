"""Production merge rows/s (three gatherer databases holding the same rows, so two thirds are duplicates)
beside the raw ceiling of the same run (binary COPY of the same rows into an empty table); export rows/s;
bytes per row of the Parquet lake against the same rows as gzip CSV."""

from __future__ import annotations

import csv
import gzip
import io
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.bench_writer import drop_db, fresh_db, raw_copy, records
from core.records import Kind
from core.tables import SPECS
from dedup import export_all, sync_all
from writers import copy_insert

T = Kind.ORDERBOOK_DELTA


def run(n: int = 200_000) -> dict[str, Any]:
    from tests.dedupkit import dedup_config

    recs = records(T, n)
    spec = SPECS[T]
    rows = [spec.row(r) for r in recs]
    sources = {g: fresh_db("gatherer") for g in ("g1", "g2", "g3")}
    prod = fresh_db("production")
    lake = Path(tempfile.mkdtemp())
    try:
        for dsn in sources.values():
            with psycopg.connect(dsn) as conn, conn.transaction():
                copy_insert(conn, spec, rows)
        ceiling = raw_copy(prod, T, recs)
        cfg = dedup_config(prod, sources, batch_size=20_000, lake=f"file://{lake}")
        t0 = time.perf_counter()
        sync_all(cfg)
        merge_s = time.perf_counter() - t0
        with psycopg.connect(prod) as conn:
            stored = conn.execute("SELECT count(*) FROM orderbook_deltas").fetchone()
            assert stored == (n,)
            conn.execute("UPDATE sync_cursors SET caught_up_us = %s", (time.time_ns() // 1000 + 10**12,))
        t0 = time.perf_counter()
        out = export_all(cfg, now_us=time.time_ns() // 1000 + 10**12)
        export_s = time.perf_counter() - t0
        exported = sum(e["rows"] for e in out["exported"] if e["table"] == "orderbook_deltas")
        parquet_bytes = sum(p.stat().st_size for p in (lake / "orderbook_deltas").rglob("*.parquet"))
        buf = io.StringIO()
        csv.writer(buf).writerows(rows)
        gz = len(gzip.compress(buf.getvalue().encode()))
        return {
            "rows": n,
            "source_rows_read": 3 * n,
            "merge_source_rows_per_s": round(3 * n / merge_s),
            "merge_unique_rows_per_s": round(n / merge_s),
            "raw_copy_rows_per_s": round(ceiling),
            "export_rows_per_s": round(exported / export_s),
            "parquet_bytes_per_row": round(parquet_bytes / exported, 2),
            "gzip_csv_bytes_per_row": round(gz / n, 2),
        }
    finally:
        for dsn in (*sources.values(), prod):
            drop_db(dsn)


def _worker(cfg_json: str, out: Any) -> None:
    """One `rq worker dedup` as the scheduler drives it: sync rounds until a round finds every (source, table)
    caught up and none held by another worker."""
    from core.config import DeduplicatorConfig

    cfg = DeduplicatorConfig.model_validate_json(cfg_json)
    rounds = 0
    while True:
        res = sync_all(cfg)
        rounds += 1
        if all(r["caught_up"] and not r["skipped_locked"] for r in res["results"]):
            break
    out.put(rounds)


def scale_out(n: int = 200_000, workers: tuple[int, ...] = (1, 2, 4), tables: int = 3) -> dict[str, Any]:
    """Merge rows/s with 1, 2 and 4 dedup worker processes side by side, on three sources that each hold the
    same `n` deltas, trades and tickers (`tables` of them): each (source, table) is one advisory lock, so
    workers share out the nine pairs. The raw COPY ceiling of the same rows is measured in the same run."""
    import multiprocessing as mp

    from tests.dedupkit import dedup_config

    kinds = (Kind.ORDERBOOK_DELTA, Kind.TRADE, Kind.TICKER)[:tables]
    data = {k: [SPECS[k].row(r) for r in records(k, n)] for k in kinds}
    sources = {g: fresh_db("gatherer") for g in ("g1", "g2", "g3")}
    out: dict[str, Any] = {"rows_per_table": n, "tables": [SPECS[k].table for k in kinds], "sources": 3}
    try:
        for dsn in sources.values():
            with psycopg.connect(dsn) as conn:
                for k, rows in data.items():
                    with conn.transaction():
                        copy_insert(conn, SPECS[k], rows)
        ceiling_db = fresh_db("production")
        t0 = time.perf_counter()
        for k in kinds:
            raw_copy(ceiling_db, k, records(k, n))
        out["raw_copy_rows_per_s"] = round(len(kinds) * n / (time.perf_counter() - t0))
        drop_db(ceiling_db)
        ctx = mp.get_context("spawn")
        for w in workers:
            prod = fresh_db("production")
            try:
                cfg = dedup_config(prod, sources, batch_size=20_000)
                q = ctx.Queue()
                procs = [ctx.Process(target=_worker, args=(cfg.model_dump_json(), q)) for _ in range(w)]
                t0 = time.perf_counter()
                for p in procs:
                    p.start()
                for p in procs:
                    p.join()
                elapsed = time.perf_counter() - t0
                with psycopg.connect(prod) as conn:
                    for k in kinds:
                        (stored,) = conn.execute(f"SELECT count(*) FROM {SPECS[k].table}").fetchone() or (0,)
                        assert stored == n, (w, k, stored)
                out[f"workers_{w}"] = {
                    "seconds": round(elapsed, 2),
                    "source_rows_per_s": round(3 * len(kinds) * n / elapsed),
                    "unique_rows_per_s": round(len(kinds) * n / elapsed),
                }
            finally:
                drop_db(prod)
    finally:
        for dsn in sources.values():
            drop_db(dsn)
    return out


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(scale_out() if sys.argv[1:2] == ["scale-out"] else run()))
