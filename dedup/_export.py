"""Parquet export of production, the lake quants read: `<table>/date=YYYY-MM-DD/part-NNNN.parquet` plus a
`_manifest.json` per day. The date prunes folders; inside a day the rows are sorted by market (the event for
event-level tables), time and receive time, so the market prunes row groups through the column statistics and
page index. A day is one file until it passes `max_file_bytes`, so the file count grows with the data, never with the
number of markets (the old layout, a folder per market, wrote thousands of tiny files a day). Times are
timestamp[us, UTC]; prices integer hundred-thousandths of a dollar and quantities hundredths of a contract,
units in the field metadata (`kalshi-data lake sql` shows them as decimals). `_lake_schema` says which
columns the lake leaves out because they follow from others, and puts them back.

Only days that end before the watermark are exported: the oldest `caught_up_us` over live sources minus a
safety margin, so every live gatherer had synced past the day. A day is exported again when production
holds rows for it newer than the manifest's (a gatherer that came back late), or when it was written in an
older file format (`LAKE_FORMAT`): upgrading migrates the lake day by day. Rows stream from a server-side
cursor one row group at a time, so memory stays bounded whatever the day's size.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

from core import metrics
from core.config import DeduplicatorConfig, ExportConfig
from core.db import dsn_from_config
from core.tables import LAKE_TABLES, TableSpec
from dedup._lake import Target, make_target
from dedup._lake_encoding import choose as choose_encodings
from dedup._lake_encoding import writer_options
from dedup._lake_schema import LAKE_FORMAT, arrow_schema, lake_columns

log = logging.getLogger(__name__)
DAY_US = 86_400_000_000
SAFETY_MARGIN_US = 300_000_000  # rows reach production within minutes of their receive time
_last_complete_s = 0  # newest complete day exported by this process (the gauge only goes forward)
DEAD_SOURCE_AFTER_US = 3_600_000_000  # a source silent this long does not hold the watermark back

# table -> the time column days are cut by (the catalog's lake tables)
EXPORT_TABLES: dict[str, str] = {t: str(spec.time_column) for t, spec in LAKE_TABLES.items()}


# ---- export --------------------------------------------------------------------------------------------------


def watermark_us(prod: psycopg.Connection[Any], now_us: int) -> int | None:
    """Everything before this time has been synced from every live source."""
    rows = prod.execute(
        "SELECT source, min(caught_up_us), bool_and(caught_up_us IS NOT NULL) FROM sync_cursors GROUP BY source"
    ).fetchall()
    live = [c for _, c, complete in rows if complete and c is not None and now_us - c < DEAD_SOURCE_AFTER_US]
    if not live:
        return None
    return int(min(live)) - SAFETY_MARGIN_US


@dataclass
class DayExport:
    table: str
    day: date
    rows: int
    files: int
    bytes: int


def _subject(spec: TableSpec) -> str:
    """What a row is about, the lake's clustering key: the market, the event for event-level messages, the
    gatherer for its own records (outages)."""
    return next(c for c in ("market_ticker", "event_ticker", "gatherer_id") if c in spec.columns)


def sort_order(spec: TableSpec) -> list[str]:
    """A day's rows in a total order (the same production gives the same bytes): the subject, the time, the
    receive time, then what is left of the natural key."""
    tcol = str(spec.time_column)
    order = [_subject(spec), tcol] + (
        ["received_us"] if "received_us" in spec.columns and tcol != "received_us" else []
    )
    return order + [c for c in spec.key if c not in order]


def _arrow_batch(rows: list[tuple[Any, ...]], schema: pa.Schema) -> pa.Table:
    columns = list(zip(*rows, strict=True))
    return pa.Table.from_arrays([pa.array(c, type=schema.field(i).type) for i, c in enumerate(columns)], schema=schema)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _writer(path: Path, first: pa.Table, order: list[str], cfg: ExportConfig) -> pq.ParquetWriter:
    """A file's writer, its encodings chosen on its first row group."""
    schema = first.schema
    names = schema.names
    return pq.ParquetWriter(
        path,
        schema,
        compression="zstd",
        compression_level=cfg.zstd_level,
        write_statistics=True,
        write_page_index=True,  # per-page min/max: a reader skips pages inside a row group too
        sorting_columns=[pq.SortingColumn(names.index(c)) for c in order if c in names],
        bloom_filter_options={order[0]: True} if cfg.bloom_filter else None,
        **writer_options(choose_encodings(first, cfg.zstd_level), schema),
    )


def export_day(
    prod: psycopg.Connection[Any],
    cfg: ExportConfig,
    target: Target,
    table: str,
    day: date,
    max_ingest_id: int,
    complete: bool = True,
) -> DayExport:
    spec = LAKE_TABLES[table]
    tcol = EXPORT_TABLES[table]
    lo = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000
    order = sort_order(spec)
    cols = ", ".join(c.select for c in lake_columns(table))
    sql = (
        f"SELECT {cols} FROM {table} WHERE {tcol} >= %s AND {tcol} < %s AND ingest_id <= %s "
        f"ORDER BY {', '.join(f'{table}.{c}' for c in order)}"
    )
    schema = arrow_schema(table)
    entries: list[dict[str, Any]] = []
    files: dict[str, Path] = {}
    total = 0
    with target.staging() as stage:
        writer: pq.ParquetWriter | None = None
        path: Path | None = None

        def close() -> None:
            if writer is not None and path is not None:
                writer.close()
                entries[-1].update(bytes=path.stat().st_size, sha256=_sha256(path))

        with prod.cursor(name=f"kd_export_{uuid.uuid4().hex[:8]}") as cur:  # server side: one row group at a time
            cur.itersize = cfg.row_group_size
            cur.execute(sql, (lo, lo + DAY_US, max_ingest_id))
            while rows := cur.fetchmany(cfg.row_group_size):
                batch = _arrow_batch(rows, schema)
                if writer is None or path is None or path.stat().st_size >= cfg.max_file_bytes:
                    close()
                    name = f"part-{len(files):04d}.parquet"
                    path = files[name] = stage / name
                    writer = _writer(path, batch, order, cfg)
                    entries.append({"path": name, "rows": 0})
                writer.write_table(batch, row_group_size=cfg.row_group_size)
                entries[-1]["rows"] += len(rows)
                total += len(rows)
        prod.rollback()
        close()
        manifest = {
            "table": table,
            "day": day.isoformat(),
            "complete": complete,
            "rows": total,
            "max_ingest_id": max_ingest_id,
            "sorted_by": order,
            "lake_format": LAKE_FORMAT,
            "files": entries,
            "exported_at": datetime.now(UTC).isoformat(),
        }
        size = sum(int(e["bytes"]) for e in entries)
        target.put_day(table, day, files, manifest)
    metrics.EXPORT_FILES.labels(table).inc(len(entries))
    metrics.EXPORT_BYTES.labels(table).inc(size)
    if complete:
        start_s = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
        global _last_complete_s
        _last_complete_s = max(_last_complete_s, start_s)
        metrics.EXPORT_LAST_COMPLETE.set(_last_complete_s)
    prod.execute(
        "INSERT INTO export_manifest (table_name, day, rows, max_ingest_id, files, lake_format) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (table_name, day) DO UPDATE SET rows = EXCLUDED.rows, "
        "max_ingest_id = EXCLUDED.max_ingest_id, files = EXCLUDED.files, lake_format = EXCLUDED.lake_format, "
        "exported_at = now()",
        (table, day, total, max_ingest_id, json.dumps(entries), LAKE_FORMAT),
    )
    prod.commit()
    return DayExport(table, day, total, len(entries), size)


def export_all(cfg: DeduplicatorConfig, now_us: int | None = None, partial_days: bool = False) -> dict[str, Any]:
    """Export every complete day that changed. partial_days also exports the day the watermark is in
    (manifest `complete: false`); it is exported again as rows arrive, and once more when complete."""
    now_us = now_us if now_us is not None else int(datetime.now(UTC).timestamp() * 1_000_000)
    target = make_target(cfg.export)
    done: list[DayExport] = []
    with psycopg.connect(dsn_from_config(cfg.production, "kalshi-data-export")) as prod:
        wm = watermark_us(prod, now_us)
        if wm is None:
            return {"watermark_us": None, "exported": []}
        cut = wm + SAFETY_MARGIN_US if partial_days else (wm // DAY_US) * DAY_US
        for table, tcol in EXPORT_TABLES.items():
            days = prod.execute(
                f"SELECT ({tcol} / %s) AS d, count(*), max(ingest_id) FROM {table} WHERE {tcol} < %s GROUP BY d",
                (DAY_US, cut),
            ).fetchall()
            known = {  # a day in an older file format counts as changed: it is exported again
                d: (n, m)
                for d, n, m in prod.execute(
                    "SELECT day, rows, max_ingest_id FROM export_manifest WHERE table_name = %s AND lake_format = %s",
                    (table, LAKE_FORMAT),
                )
            }
            prod.rollback()
            for d, n, max_id in sorted(days):
                day = date(1970, 1, 1) + timedelta(days=int(d))
                if known.get(day) == (n, max_id):
                    continue  # unchanged since the last export
                complete = (int(d) + 1) * DAY_US <= wm
                done.append(export_day(prod, cfg.export, target, table, day, max_id, complete))
    return {"watermark_us": wm, "exported": [vars(e) | {"day": e.day.isoformat()} for e in done]}
