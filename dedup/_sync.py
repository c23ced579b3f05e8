"""Merge one gatherer database's table into production, batch by batch, exactly once.

Cursor: (ingest_xid, ingest_id) of the source rows. A batch reads only rows whose inserting transaction is
older than every transaction still running on the source (`ingest_xid < pg_snapshot_xmin(...)`): such a
transaction has committed or aborted for good, so no row can later appear behind the cursor, however
commits interleave. The batch travels as COPY data from the source server to production's (no row is
parsed in Python), is inserted with the table's conflict rule and the cursor advanced in the same
production transaction; a session advisory lock keeps a second job off the same (source, table).
"""

from __future__ import annotations

import logging
import os
import signal
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from core import metrics
from core.tables import TABLES, TableSpec
from writers import BatchInserter, copy_out_sql

log = logging.getLogger(__name__)

# The order tables are merged in (reference first, so event rows never wait on a market row).
SYNC_TABLES: tuple[str, ...] = (
    "series",
    "events",
    "markets",
    "trades",
    "orderbook_deltas",
    "orderbook_snapshots",
    "tickers",
    "lifecycle_events",
    "event_lifecycle_events",
    "event_fee_updates",
    "sequence_gaps",
    "capture_outages",
    "subscription_ends",
    "capture_beats",
)
SPEC_OF_TABLE: dict[str, TableSpec] = {t: TABLES[t] for t in SYNC_TABLES}


@dataclass
class SyncResult:
    source: str
    table: str
    rows_read: int = 0
    rows_new: int = 0
    batches: int = 0
    caught_up: bool = False
    skipped_locked: bool = False


def _maybe_crash(batch: int) -> None:
    """Test hook: KD_DEDUP_CRASH=N SIGKILLs this process inside the Nth batch's production transaction
    (rows inserted, cursor not yet advanced). Never set in production."""
    n = os.environ.get("KD_DEDUP_CRASH")
    if n and batch >= int(n):
        os.kill(os.getpid(), signal.SIGKILL)


def _lock_key(source: str, table: str) -> int:
    return zlib.crc32(f"kd_sync:{source}:{table}".encode()) - (1 << 31)


@contextmanager
def job_lock(prod: psycopg.Connection[Any], source: str, table: str) -> Iterator[bool]:
    """A session advisory lock on production: True if this job may sync (source, table) now."""
    key = _lock_key(source, table)
    row = prod.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    prod.commit()
    got = bool(row and row[0])
    try:
        yield got
    finally:
        if got:
            prod.execute("SELECT pg_advisory_unlock(%s)", (key,))
            prod.commit()


# Every column the cursor reads, compares or sorts is qualified with this alias. An unqualified name in
# ORDER BY means an *output* column first: with `ingest_xid::text` in the select list, `ORDER BY ingest_xid`
# sorted the text ("10753" before "1468") and the cursor stepped past the shorter ids for good.
_SRC = "src"
SNAPSHOT_GUARD = f"{_SRC}.ingest_xid < pg_snapshot_xmin(pg_current_snapshot())"


def batch_end_sql(spec: TableSpec, guard: str = SNAPSHOT_GUARD) -> str:
    """The batch's last cursor and its row count: the first `%s` rows after the cursor (xid8 then bigint,
    compared and sorted as numbers), only from transactions that ended for good (`guard`; tests of the
    ordering alone pass "true"). No row if nothing is after the cursor."""
    return (
        f"WITH batch AS (SELECT {_SRC}.ingest_xid AS xid, {_SRC}.ingest_id AS id FROM {spec.table} AS {_SRC} "
        f"WHERE ({_SRC}.ingest_xid, {_SRC}.ingest_id) > (%s::xid8, %s::bigint) AND {guard} "
        f"ORDER BY {_SRC}.ingest_xid, {_SRC}.ingest_id LIMIT %s) "
        "SELECT batch.xid::text AS cursor_xid, batch.id AS cursor_id, (SELECT count(*) FROM batch) AS n "
        "FROM batch ORDER BY batch.xid DESC, batch.id DESC LIMIT 1"
    )


def batch_rows_sql(spec: TableSpec) -> str:
    """The batch's rows, spec.columns in copy_types: every row after one cursor up to and including another.
    Each of them is below the snapshot guard, since the end cursor is and the order is by xid first."""
    cols = ", ".join(
        f"{_SRC}.{c}::text" if t == "jsonb" else f"{_SRC}.{c}" for c, t in zip(spec.columns, spec.types, strict=True)
    )
    return (
        f"SELECT {cols} FROM {spec.table} AS {_SRC} "
        f"WHERE ({_SRC}.ingest_xid, {_SRC}.ingest_id) > (%s::xid8, %s::bigint) "
        f"AND ({_SRC}.ingest_xid, {_SRC}.ingest_id) <= (%s::xid8, %s::bigint)"
    )


def _read_batch(
    source: psycopg.Connection[Any], spec: TableSpec, last: tuple[str, int], batch_size: int
) -> tuple[tuple[str, int], int, list[bytes]] | None:
    """The next batch as COPY data, straight from the source server's encoder (no row is parsed or
    built in Python), with its end cursor and row count; None when nothing is after the cursor. One source
    transaction, ended before returning: its snapshot must not linger."""
    try:
        end = source.execute(batch_end_sql(spec), (*last, batch_size)).fetchone()
        if end is None:
            return None
        end_xid, end_id, n = end
        data: list[bytes] = []
        with source.cursor() as cur, cur.copy(copy_out_sql(batch_rows_sql(spec)), (*last, end_xid, end_id)) as copy:
            data.extend(bytes(chunk) for chunk in copy)
        return (end_xid, end_id), n, data
    finally:
        source.rollback()


def sync_table(
    source_id: str,
    source: psycopg.Connection[Any],
    prod: psycopg.Connection[Any],
    table: str,
    batch_size: int,
    max_batches: int | None = None,
    inserter: BatchInserter | None = None,
) -> SyncResult:
    """Merge everything committed on the source since the cursor (at most max_batches batches)."""
    spec = SPEC_OF_TABLE[table]
    inserter = inserter or BatchInserter()
    res = SyncResult(source_id, table)
    with job_lock(prod, source_id, table) as mine:
        if not mine:
            res.skipped_locked = True
            return res
        prod.execute(
            "INSERT INTO sync_cursors (source, table_name) VALUES (%s, %s) ON CONFLICT DO NOTHING", (source_id, table)
        )
        prod.commit()
        while max_batches is None or res.batches < max_batches:
            with prod.transaction():
                cur_row = prod.execute(
                    "SELECT last_xid::text, last_id FROM sync_cursors WHERE source = %s AND table_name = %s FOR UPDATE",
                    (source_id, table),
                ).fetchone()
                assert cur_row is not None
                last_xid, last_id = cur_row
                batch = _read_batch(source, spec, (last_xid, last_id), batch_size)
                if batch is None:
                    prod.execute(
                        "UPDATE sync_cursors SET caught_up_us = %s, updated_at = now() "
                        "WHERE source = %s AND table_name = %s",
                        (time.time_ns() // 1000, source_id, table),
                    )
                    res.caught_up = True
                    break
                (nxid, nid), n, data = batch
                new = inserter.insert_copied(prod, spec, data, n)
                _maybe_crash(res.batches + 1)
                prod.execute(
                    "UPDATE sync_cursors SET last_xid = %s::xid8, last_id = %s, rows_synced = rows_synced + %s, "
                    "updated_at = now() WHERE source = %s AND table_name = %s",
                    (nxid, nid, n, source_id, table),
                )
            res.rows_read += n
            res.rows_new += new
            res.batches += 1
            metrics.DEDUP_ROWS.labels(source_id, table, "new").inc(new)
            metrics.DEDUP_ROWS.labels(source_id, table, "duplicate").inc(n - new)
            if n < batch_size:
                with prod.transaction():
                    prod.execute(
                        "UPDATE sync_cursors SET caught_up_us = %s WHERE source = %s AND table_name = %s",
                        (time.time_ns() // 1000, source_id, table),
                    )
                res.caught_up = True
                break
    return res
