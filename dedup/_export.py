"""Parquet export of production: Hive-style `<table>/date=YYYY-MM-DD/<market|series>=<value>/data.parquet`,
zstd, sorted by market and time, one schema per table (times as timestamp[us, UTC], prices as integer
hundred-thousandths of a dollar, units in the schema metadata), a `_manifest.json` per day.

Only days that end before the watermark are exported: the oldest `caught_up_us` over live sources minus a
safety margin, so every live gatherer had synced past the day. A day is exported again when production
holds rows for it newer than the manifest's (a gatherer that came back late). Local targets replace a day
by renaming a fully written directory into place; S3 objects are replaced one partition file at a time
(each PUT is atomic; a day's old files are a subset of its new ones).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import uuid
from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

from core import metrics
from core.config import DeduplicatorConfig, ExportConfig
from core.db import dsn_from_config
from core.tables import TABLES, TIMED_TABLES, TableSpec, unit_of
from dedup._sync import SPEC_OF_TABLE

log = logging.getLogger(__name__)
DAY_US = 86_400_000_000
SAFETY_MARGIN_US = 300_000_000  # rows reach production within minutes of their receive time
_last_complete_s = 0  # newest complete day exported by this process (the gauge only goes forward)
DEAD_SOURCE_AFTER_US = 3_600_000_000  # a source silent this long does not hold the watermark back

# table -> the time column days are cut by (the catalog's timed tables)
EXPORT_TABLES: dict[str, str] = {t: str(TABLES[t].time_column) for t in TIMED_TABLES}
_ARROW = {
    "text": pa.string(),
    "int8": pa.int64(),
    "int4": pa.int32(),
    "bool": pa.bool_(),
    "jsonb": pa.string(),
    "int4[]": pa.list_(pa.int32()),
    "int8[]": pa.list_(pa.int64()),
}


def arrow_schema(table: str) -> pa.Schema:
    spec = SPEC_OF_TABLE[table]
    fields = []
    for col, typ in zip(spec.columns, spec.types, strict=True):
        if col.endswith("_us") and typ == "int8":
            fields.append(pa.field(col, pa.timestamp("us", tz="UTC"), metadata={"unit": "UTC microseconds"}))
        elif (unit := unit_of(col)) is not None:
            fields.append(pa.field(col, _ARROW[typ], metadata={"unit": unit}))
        else:
            fields.append(pa.field(col, _ARROW[typ]))
    return pa.schema(fields, metadata={"table": table, "producer": "kalshi-data"})


# ---- targets -------------------------------------------------------------------------------------------------


class Target(ABC):
    """Where the lake lives. put_day replaces one table-day with the given files and manifest."""

    @abstractmethod
    def put_day(self, table: str, day: date, files: dict[str, bytes], manifest: dict[str, Any]) -> None: ...


class FileTarget(Target):
    def __init__(self, root: Path) -> None:
        self.root = root

    def put_day(self, table: str, day: date, files: dict[str, bytes], manifest: dict[str, Any]) -> None:
        tdir = self.root / table
        tdir.mkdir(parents=True, exist_ok=True)
        final = tdir / f"date={day.isoformat()}"
        tmp = tdir / f".tmp-{day.isoformat()}-{uuid.uuid4().hex[:8]}"  # dot: ignored by dataset discovery
        for rel, blob in files.items():
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(blob)
        (tmp / "_manifest.json").write_text(json.dumps(manifest, indent=1))
        old = tdir / f".old-{day.isoformat()}-{uuid.uuid4().hex[:8]}"
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)  # readers see the old day or the new day, never a half-written one
        shutil.rmtree(old, ignore_errors=True)


class S3Target(Target):
    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None) -> None:
        import boto3

        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.s3 = boto3.client("s3", endpoint_url=endpoint_url)

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def put_day(self, table: str, day: date, files: dict[str, bytes], manifest: dict[str, Any]) -> None:
        base = f"{table}/date={day.isoformat()}"
        for rel, blob in files.items():
            self.s3.put_object(Bucket=self.bucket, Key=self._key(base, rel), Body=blob)
        self.s3.put_object(
            Bucket=self.bucket, Key=self._key(base, "_manifest.json"), Body=json.dumps(manifest, indent=1).encode()
        )


def make_target(cfg: ExportConfig) -> Target:
    u = urlsplit(cfg.target)
    if u.scheme == "file":
        return FileTarget(Path((u.netloc + u.path) or "."))
    return S3Target(u.netloc, u.path, cfg.s3_endpoint_url)


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


def _encodings(schema: pa.Schema) -> dict[str, Any]:
    """Dictionaries for strings; delta encoding for integer and time columns (sorted by market and time, so
    successive values are close): 23.5 -> 10.3 bytes per delta row in bench_dedup's data."""
    ints = [f.name for f in schema if pa.types.is_integer(f.type) or pa.types.is_timestamp(f.type)]
    strings = [f.name for f in schema if pa.types.is_string(f.type)]
    return {"use_dictionary": strings, "column_encoding": dict.fromkeys(ints, "DELTA_BINARY_PACKED")}


def _subject(spec: TableSpec) -> str:
    """What a row is about, the lake's clustering key: the market, or the event for event-level messages."""
    return "market_ticker" if "market_ticker" in spec.columns else "event_ticker"


def _partition_value(ticker: str, by: str) -> str:
    return ticker.split("-", 1)[0] if by == "series" else ticker


def export_day(
    prod: psycopg.Connection[Any],
    cfg: ExportConfig,
    target: Target,
    table: str,
    day: date,
    max_ingest_id: int,
    complete: bool = True,
) -> DayExport:
    spec = SPEC_OF_TABLE[table]
    tcol = EXPORT_TABLES[table]
    lo = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000
    cols = ", ".join(f"{c}::text" if t == "jsonb" else c for c, t in zip(spec.columns, spec.types, strict=True))
    rows = prod.execute(
        f"SELECT {cols} FROM {table} WHERE {tcol} >= %s AND {tcol} < %s AND ingest_id <= %s "
        f"ORDER BY {_subject(spec)}, {tcol}",
        (lo, lo + DAY_US, max_ingest_id),
    ).fetchall()
    prod.rollback()
    schema = arrow_schema(table)
    groups: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    key = "series" if cfg.partition_by == "series" else "market"
    mi = spec.columns.index(_subject(spec))
    for r in rows:
        groups[_partition_value(r[mi], cfg.partition_by)].append(r)
    if cfg.partition_by == "market" and len(groups) > cfg.max_markets_per_day_partition:
        log.warning("%s %s has %d markets: consider export.partition_by: series", table, day, len(groups))
    files: dict[str, bytes] = {}
    entries = []
    for value in sorted(groups):
        part = groups[value]
        columns = list(zip(*part, strict=True))
        arrays = [pa.array(list(c), type=schema.field(i).type) for i, c in enumerate(columns)]
        tbl = pa.Table.from_arrays(arrays, schema=schema)
        buf = io.BytesIO()
        pq.write_table(
            tbl, buf, compression="zstd", row_group_size=cfg.row_group_size, write_statistics=True, **_encodings(schema)
        )
        blob = buf.getvalue()
        rel = f"{key}={value}/data.parquet"
        files[rel] = blob
        entries.append({"path": rel, "rows": len(part), "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()})
    manifest = {
        "table": table,
        "day": day.isoformat(),
        "complete": complete,
        "rows": len(rows),
        "max_ingest_id": max_ingest_id,
        "files": entries,
        "exported_at": datetime.now(UTC).isoformat(),
    }
    target.put_day(table, day, files, manifest)
    metrics.EXPORT_FILES.labels(table).inc(len(files))
    metrics.EXPORT_BYTES.labels(table).inc(sum(len(b) for b in files.values()))
    if complete:
        start_s = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
        global _last_complete_s
        _last_complete_s = max(_last_complete_s, start_s)
        metrics.EXPORT_LAST_COMPLETE.set(_last_complete_s)
    prod.execute(
        "INSERT INTO export_manifest (table_name, day, rows, max_ingest_id, files) VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (table_name, day) DO UPDATE SET rows = EXCLUDED.rows, max_ingest_id = EXCLUDED.max_ingest_id, "
        "files = EXCLUDED.files, exported_at = now()",
        (table, day, len(rows), max_ingest_id, json.dumps(entries)),
    )
    prod.commit()
    return DayExport(table, day, len(rows), len(files), sum(len(b) for b in files.values()))


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
            known = {
                d: (n, m)
                for d, n, m in prod.execute(
                    "SELECT day, rows, max_ingest_id FROM export_manifest WHERE table_name = %s", (table,)
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
