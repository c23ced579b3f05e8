"""The fastest exact batch insert PostgreSQL offers: binary COPY into a per-session staging table, then
one INSERT ... SELECT with the table's conflict rule. Returns how many rows were new. The rows come either
as Python tuples (the writers) or as COPY data another server produced (dedup), never parsed here."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from core.tables import TableSpec

# Writes one batch into the named table (the table itself or its staging twin) with COPY ... FROM STDIN.
Fill = Callable[[psycopg.Cursor[Any], str], None]


def _copy_in_sql(table: str, columns: Sequence[str], fmt: str = "BINARY") -> str:
    return f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT {fmt})"


# Between two servers (dedup) rows travel in COPY's text format: portable across PostgreSQL versions and
# machines (production on RDS may run a newer major than the gatherers), which the binary format is not
# promised to be; bench_dedup scale-out measured it within 6-8 % of binary.
SERVER_TO_SERVER = "TEXT"


def copy_out_sql(select: str) -> str:
    """The statement that reads `select` on a source server as data for `insert_copied`."""
    return f"COPY ({select}) TO STDOUT (FORMAT {SERVER_TO_SERVER})"


def copy_rows(
    cur: psycopg.Cursor[Any],
    table: str,
    spec: TableSpec,
    rows: Sequence[Sequence[Any]],
    record_order: bool = False,
) -> None:
    """Binary COPY of rows into `table` (the table itself or its staging twin): rows in spec.columns order,
    or with record_order decoded records as they are (spec.record_fields)."""
    columns, types = spec.copy_columns(record_order)
    with cur.copy(_copy_in_sql(table, columns)) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def copy_data(cur: psycopg.Cursor[Any], table: str, spec: TableSpec, data: Sequence[bytes]) -> int:
    """COPY data (spec.columns in copy_types, as `copy_out_sql` had a source write it) into `table`; returns
    the rows the server read."""
    with cur.copy(_copy_in_sql(table, spec.columns, SERVER_TO_SERVER)) as copy:
        for chunk in data:
            copy.write(chunk)
    return cur.rowcount


def _rows_fill(spec: TableSpec, rows: Sequence[Sequence[Any]], record_order: bool = False) -> Fill:
    return lambda cur, table: copy_rows(cur, table, spec, rows, record_order)


def _data_fill(spec: TableSpec, data: Sequence[bytes], n_rows: int) -> Fill:
    def fill(cur: psycopg.Cursor[Any], table: str) -> None:
        got = copy_data(cur, table, spec, data)
        if got != n_rows:  # the source changed under the batch (a dropped chunk): refuse to advance on it
            raise psycopg.DataError(f"{spec.table}: COPY read {got} rows, the batch has {n_rows}")

    return fill


def _staged(conn: psycopg.Connection[Any], spec: TableSpec, fill: Fill) -> int:
    staging = f"kd_stage_{spec.table}"
    conn.execute(spec.staging_ddl(staging))
    with conn.cursor() as cur:
        fill(cur, staging)
        if spec.lock_sql is not None:
            cur.execute(spec.lock_sql)
        cur.execute(spec.insert_from(staging))
        inserted = cur.rowcount
        cur.execute(f"DELETE FROM {staging}")  # a later batch in the same transaction starts empty
    return inserted


def copy_insert(conn: psycopg.Connection[Any], spec: TableSpec, rows: Sequence[tuple[Any, ...]]) -> int:
    """Insert rows (already in spec.columns order) inside the caller's transaction."""
    if not rows:
        return 0
    return _staged(conn, spec, _rows_fill(spec, rows))


class BatchInserter:
    """Picks the cheaper exact path per table. Optimistic: COPY straight into the table under a savepoint
    (one write instead of two); a natural-key conflict rolls it back and the batch takes the staging path.
    A table whose batches conflict (trades a REST sweep fetched again, dedup's second and third source)
    stays on the staging path for a while before trying again."""

    RETRY_AFTER = 200  # batches on the staging path before the next optimistic attempt

    def __init__(self) -> None:
        self._staging_left: dict[str, int] = {}
        self.optimistic_hits = 0
        self.conflicts = 0

    def insert(
        self,
        conn: psycopg.Connection[Any],
        spec: TableSpec,
        rows: Sequence[Sequence[Any]],
        record_order: bool = False,
    ) -> int:
        """Rows in spec.columns order (spec.row's), or with record_order records as decoded (spec.record_fields)."""
        if not rows:
            return 0
        return self._insert(conn, spec, _rows_fill(spec, rows, record_order), len(rows))

    def insert_alone(
        self,
        conn: psycopg.Connection[Any],
        spec: TableSpec,
        rows: Sequence[Sequence[Any]],
        record_order: bool = False,
    ) -> int | None:
        """A batch that is its own transaction, on an autocommit connection outside any transaction: when the
        table takes it straight, one COPY, which commits alone or not at all (no BEGIN, SAVEPOINT, RELEASE or
        COMMIT: four of a batch's six round trips). None when the batch must take a transaction (`insert`
        inside one): a table that needs the staging path or has just had a conflict, or a conflict now
        (nothing was written; the table then takes the staging path for a while, as after `insert`'s)."""
        if not rows:
            return 0
        if not conn.autocommit or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            raise ValueError("insert_alone needs an autocommit connection outside a transaction")
        if self._optimistic(spec) and self._straight(conn, spec, _rows_fill(spec, rows, record_order), False):
            return len(rows)
        return None

    def _optimistic(self, spec: TableSpec) -> bool:
        """Whether a batch goes straight into the table: only where a unique key refuses a copy (no upsert, no
        window rule), no jsonb (it travels as text, which only the staging table then casts), and not while
        the table is on the staging path after a conflict."""
        return (
            spec.upsert_newest is None
            and spec.copies_within_us is None
            and "jsonb" not in spec.types
            and self._staging_left.get(spec.table, 0) == 0
        )

    def _straight(self, conn: psycopg.Connection[Any], spec: TableSpec, fill: Fill, savepoint: bool) -> bool:
        """COPY the batch straight into the table, under a savepoint inside the caller's transaction or as a
        statement of its own. False on a natural-key conflict: nothing of it stays, and the table takes the
        staging path for its next RETRY_AFTER batches."""
        try:
            with conn.transaction() if savepoint else contextlib.nullcontext(), conn.cursor() as cur:
                fill(cur, spec.table)
        except psycopg.errors.UniqueViolation:
            self.conflicts += 1
            self._staging_left[spec.table] = self.RETRY_AFTER
            return False
        self.optimistic_hits += 1
        return True

    def insert_copied(self, conn: psycopg.Connection[Any], spec: TableSpec, data: Sequence[bytes], n_rows: int) -> int:
        """The same for n_rows held as COPY data from another server (kept in memory: a conflict replays it)."""
        if not n_rows:
            return 0
        return self._insert(conn, spec, _data_fill(spec, data, n_rows), n_rows)

    def _insert(self, conn: psycopg.Connection[Any], spec: TableSpec, fill: Fill, n_rows: int) -> int:
        left = self._staging_left.get(spec.table, 0)
        if self._optimistic(spec):
            if self._straight(conn, spec, fill, True):
                return n_rows
        elif left:
            self._staging_left[spec.table] = left - 1
        return _staged(conn, spec, fill)
