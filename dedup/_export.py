"""Parquet export of production, the lake quants read: `<table>/date=YYYY-MM-DD/part-NNNN.parquet` plus a
`_manifest.json` per day, for every dataset of `dedup._datasets` (production's event tables and coverage record,
the reference tables as each day ended, settlements, and the book tables derived from production). The date
prunes folders; inside a day the rows are sorted by market (the event for event-level tables, the object for
reference tables), time and receive time, so the market prunes row groups through the column statistics and page
index. A day is one file until it passes `max_file_bytes`, so the file count grows with the data, never with the
number of markets. Times are timestamp[us, UTC]; prices integer hundred-thousandths of a dollar and quantities
hundredths of a contract, units in the field metadata (`kalshi-data lake sql` shows them as decimals).
`_lake_schema` says which columns the lake leaves out because they follow from others, and puts them back.

The watermark is the oldest `caught_up_us` over live sources minus a safety margin: every live gatherer had synced
past it. Days that end before it are complete; the day in progress is exported too, up to what every live source
has synced, and marked partial in its manifest (`complete: false`): the lake lags production by one export
interval. A day is exported again when its token moves (rows arrived or changed: a gatherer that came back late,
the day in progress growing), when it turns complete, or when it was written in an older file format
(`LAKE_FORMAT`): upgrading migrates the lake day by day. Each dataset-day is read in one REPEATABLE READ
transaction, its token with it, from server-side cursors one row group at a time, so memory stays bounded whatever
the day's size and the files are what the token says.
"""

from __future__ import annotations

import json
import logging
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import psycopg

from core import metrics
from core.config import DeduplicatorConfig, ExportConfig
from core.db import dsn_from_config
from core.tables import LAKE_TABLES, PRODUCTION_TABLES, TIMED_TABLES
from dedup._book_tables import BooksDataset
from dedup._datasets import DAY_US, Dataset, DayJob, ReferenceDataset, SettlementsDataset, TableDataset, day_start
from dedup._datasets import sort_order as sort_order
from dedup._day_files import DayFiles
from dedup._lake import Target, make_target
from dedup._lake_schema import LAKE_FORMAT

log = logging.getLogger(__name__)
SAFETY_MARGIN_US = 300_000_000  # rows reach production within minutes of their receive time
_last_complete_s = 0  # newest complete day exported by this process (the gauge only goes forward)
DEAD_SOURCE_AFTER_US = 3_600_000_000  # a source silent this long does not hold the watermark back

# table -> the time column days are cut by (production's tables in the lake)
EXPORT_TABLES: dict[str, str] = {t: str(LAKE_TABLES[t].time_column) for t in (*TIMED_TABLES, *PRODUCTION_TABLES)}
DATASETS: tuple[Dataset, ...] = (
    *(TableDataset(t) for t in EXPORT_TABLES),
    *(ReferenceDataset(t) for t in ("markets", "events", "series")),
    SettlementsDataset(),
    BooksDataset(),
)
assert {t for d in DATASETS for t in d.tables} == set(LAKE_TABLES), "every lake table has one dataset"


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
    complete: bool


def _export_day(
    prod: psycopg.Connection[Any], cfg: ExportConfig, target: Target, dataset: Dataset, job: DayJob
) -> list[DayExport]:
    """One day of a dataset, each of its tables put in place with its manifest (and recorded in export_manifest)."""
    prod.rollback()
    prod.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ  # the token and the rows of one snapshot
    try:
        token = dataset.tokens(prod, job.hi_us).get(job.day, "0")
        with ExitStack() as stack:
            files = {
                t: DayFiles(t, job.day, stack.enter_context(target.staging()), cfg, sort_order(LAKE_TABLES[t]))
                for t in dataset.tables
            }
            dataset.write(prod, job, lambda table, rows: files[table].add(rows))
            sizes = {t: f.finish(target, job.complete, token, {"up_to_us": job.hi_us}) for t, f in files.items()}
    finally:
        prod.rollback()
        prod.isolation_level = None
    out = []
    for t, f in files.items():
        prod.execute(
            "INSERT INTO export_manifest (table_name, day, rows, max_ingest_id, files, lake_format, token, complete) "
            "VALUES (%s, %s, %s, 0, %s, %s, %s, %s) ON CONFLICT (table_name, day) DO UPDATE SET rows = EXCLUDED.rows, "
            "files = EXCLUDED.files, lake_format = EXCLUDED.lake_format, token = EXCLUDED.token, "
            "complete = EXCLUDED.complete, exported_at = now()",
            (t, job.day, f.rows, json.dumps(f.entries), LAKE_FORMAT, token, job.complete),
        )
        out.append(DayExport(t, job.day, f.rows, len(f.entries), sizes[t], job.complete))
    prod.commit()
    if job.complete:
        global _last_complete_s
        _last_complete_s = max(_last_complete_s, day_start(job.day) // 1_000_000)
        metrics.EXPORT_LAST_COMPLETE.set(_last_complete_s)
    return out


def export_all(cfg: DeduplicatorConfig, now_us: int | None = None, partial_days: bool = True) -> dict[str, Any]:
    """Export every day of every dataset that changed since its last export: the complete days, and (unless
    partial_days is False) the day in progress up to the watermark."""
    now_us = now_us if now_us is not None else int(datetime.now(UTC).timestamp() * 1_000_000)
    target = make_target(cfg.export)
    done: list[DayExport] = []
    with psycopg.connect(dsn_from_config(cfg.production, "kalshi-data-export")) as prod:
        wm = watermark_us(prod, now_us)
        if wm is None:
            return {"watermark_us": None, "exported": []}
        # the day in progress up to what every live source has synced (no margin: it is exported again as rows
        # arrive); complete days only once the watermark, margin included, has passed their end
        cut = wm + SAFETY_MARGIN_US if partial_days else (wm // DAY_US) * DAY_US
        for dataset in DATASETS:
            known = {  # a day in an older file format counts as changed: it is exported again
                (t, d): (token, complete)
                for t, d, token, complete in prod.execute(
                    "SELECT table_name, day, token, complete FROM export_manifest "
                    "WHERE table_name = ANY(%s) AND lake_format = %s",
                    (list(dataset.tables), LAKE_FORMAT),
                )
            }
            tokens = dataset.tokens(prod, cut)
            prod.rollback()
            for day, token in sorted(tokens.items()):
                lo = day_start(day)
                complete = lo + DAY_US <= wm
                if all(known.get((t, day)) == (token, complete) for t in dataset.tables):
                    continue  # unchanged since the last export
                job = DayJob(day, lo, min(lo + DAY_US, cut), complete, cfg.export.row_group_size)
                done.extend(_export_day(prod, cfg.export, target, dataset, job))
    return {"watermark_us": wm, "exported": [vars(e) | {"day": e.day.isoformat()} for e in done]}
