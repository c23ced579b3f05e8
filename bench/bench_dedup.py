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


if __name__ == "__main__":
    import json

    print(json.dumps(run()))
