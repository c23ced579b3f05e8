"""The fastest exact batch insert PostgreSQL offers: binary COPY into a per-session staging table, then
one INSERT ... SELECT with the table's conflict rule. Returns how many rows were new."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from core.tables import TableSpec


def copy_rows(cur: psycopg.Cursor[Any], table: str, spec: TableSpec, rows: Sequence[tuple[Any, ...]]) -> None:
    """Binary COPY of rows (in spec.columns order) into `table`: the table itself or its staging twin."""
    with cur.copy(f"COPY {table} ({', '.join(spec.columns)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(spec.copy_types)
        for row in rows:
            copy.write_row(row)


def copy_insert(conn: psycopg.Connection[Any], spec: TableSpec, rows: Sequence[tuple[Any, ...]]) -> int:
    """Insert rows (already in spec.columns order) inside the caller's transaction."""
    if not rows:
        return 0
    staging = f"kd_stage_{spec.table}"
    conn.execute(spec.staging_ddl(staging))
    with conn.cursor() as cur:
        copy_rows(cur, staging, spec, rows)
        if spec.lock_sql is not None:
            cur.execute(spec.lock_sql)
        cur.execute(spec.insert_from(staging))
        inserted = cur.rowcount
        cur.execute(f"DELETE FROM {staging}")  # a later batch in the same transaction starts empty
    return inserted


class BatchInserter:
    """Picks the cheaper exact path per table. Optimistic: COPY straight into the table under a savepoint
    (one write instead of two); a natural-key conflict rolls it back and the batch takes the staging path.
    A table whose batches conflict (the redundant trade/ticker connections) stays on the staging path for
    a while before trying again."""

    RETRY_AFTER = 200  # batches on the staging path before the next optimistic attempt

    def __init__(self) -> None:
        self._staging_left: dict[str, int] = {}
        self.optimistic_hits = 0
        self.conflicts = 0

    def insert(self, conn: psycopg.Connection[Any], spec: TableSpec, rows: Sequence[tuple[Any, ...]]) -> int:
        if not rows:
            return 0
        left = self._staging_left.get(spec.table, 0)
        # Straight into the table only where a unique key refuses a copy; jsonb travels as text, which only
        # the staging table (then a cast) accepts
        if spec.upsert_newest is None and spec.copies_within_us is None and left == 0 and "jsonb" not in spec.types:
            try:
                with conn.transaction(), conn.cursor() as cur:  # a savepoint inside the batch's transaction
                    copy_rows(cur, spec.table, spec, rows)
                self.optimistic_hits += 1
                return len(rows)
            except psycopg.errors.UniqueViolation:
                self.conflicts += 1
                self._staging_left[spec.table] = self.RETRY_AFTER
        elif left:
            self._staging_left[spec.table] = left - 1
        return copy_insert(conn, spec, rows)
