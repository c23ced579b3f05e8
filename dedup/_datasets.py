"""What the lake holds, dataset by dataset, and what each day of each is computed from.

A dataset writes one or more tables a file per day. `tokens` says, for each day, what the day's files follow from
(counts and ingest ids of the rows read, or a digest of them): the export writes a day again when its token moves,
and records it in export_manifest. `write` puts a day's rows in the lake's order into the day's files; it runs in
one REPEATABLE READ transaction with the day's token, so the files are exactly what the token says.

- production's event tables and coverage_gaps: their rows of the day (TableDataset);
- `markets`, `events`, `series` as each day ended (ReferenceDataset): each object's newest state up to the day's
  end (the *_daily tables a trigger keeps), for every market changed that day or not final before it (status
  finalized or settled), the events of those markets and every event seen that day, and the series of both;
- `settlements` (SettlementsDataset): each market whose result is known, on the day it was determined;
- `bbo`, `book_1s`, `bars_1m` (dedup._book_tables): derived from the books and trades.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Protocol

import psycopg

from core.tables import LAKE_TABLES, TABLES, TableSpec
from dedup._lake_schema import lake_columns

DAY_US = 86_400_000_000
Sink = Callable[[str, list[tuple[Any, ...]]], None]


def day_of(us: int) -> date:
    return date(1970, 1, 1) + timedelta(days=us // DAY_US)


def day_start(day: date) -> int:
    return (day - date(1970, 1, 1)).days * DAY_US


@dataclass(frozen=True)
class DayJob:
    day: date
    lo_us: int  # the day's start
    hi_us: int  # its end, or the cut for the day in progress (exclusive)
    complete: bool
    batch: int  # rows per fetch: a row group


class Dataset(Protocol):
    tables: tuple[str, ...]

    def tokens(self, prod: psycopg.Connection[Any], cut_us: int) -> dict[date, str]:
        """Each day with rows before cut_us (rows of the cut's day only before it) -> its token."""
        ...

    def write(self, prod: psycopg.Connection[Any], job: DayJob, sink: Sink) -> None:
        """The day's rows of each table, in the lake's column and sort order."""
        ...


def subject(spec: TableSpec) -> str:
    """What a row is about, the lake's clustering key: the market, the event for event-level messages, the
    gatherer for its own records (outages), the object of a reference table."""
    if spec.time_column is None:  # a reference table: its own key
        return spec.key[0]
    return next(c for c in ("market_ticker", "event_ticker", "gatherer_id") if c in spec.columns)


def sort_order(spec: TableSpec) -> list[str]:
    """A day's rows in a total order (the same production gives the same bytes): the subject, the time, the
    receive time, then what is left of the natural key."""
    tcol = spec.time_column
    order = [subject(spec)] + ([tcol] if tcol else [])
    if tcol and "received_us" in spec.columns and tcol != "received_us":
        order.append("received_us")
    return order + [c for c in spec.key if c not in order]


def _stream(prod: psycopg.Connection[Any], sql: str, params: Any, batch: int, table: str, sink: Sink) -> None:
    with prod.cursor(name=f"kd_export_{uuid.uuid4().hex[:8]}") as cur:  # server side: a row group at a time
        cur.itersize = batch
        cur.execute(sql, params)
        while rows := cur.fetchmany(batch):
            sink(table, rows)


def _digest(rows: list[tuple[Any, ...]]) -> str:
    return hashlib.sha256(repr(rows).encode()).hexdigest()[:32]


class TableDataset:
    """A production table's rows by the day of its time column."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.tables: tuple[str, ...] = (table,)
        self.spec = LAKE_TABLES[table]
        self.tcol = str(self.spec.time_column)

    def tokens(self, prod: psycopg.Connection[Any], cut_us: int) -> dict[date, str]:
        rows = prod.execute(
            f"SELECT {self.tcol} / %s AS d, count(*), max(ingest_id) FROM {self.table} "
            f"WHERE {self.tcol} < %s GROUP BY d",
            (DAY_US, cut_us),
        ).fetchall()
        return {date(1970, 1, 1) + timedelta(days=int(d)): f"{n}:{m}" for d, n, m in rows}

    def write(self, prod: psycopg.Connection[Any], job: DayJob, sink: Sink) -> None:
        cols = ", ".join(c.select for c in lake_columns(self.table))
        order = ", ".join(f"{self.table}.{c}" for c in sort_order(self.spec))
        sql = f"SELECT {cols} FROM {self.table} WHERE {self.tcol} >= %s AND {self.tcol} < %s ORDER BY {order}"
        _stream(prod, sql, (job.lo_us, job.hi_us), job.batch, self.table, sink)


# the objects a day's file holds, each at its newest state up to the day (%(d)s): see the module's docstring
_FINAL = "('finalized', 'settled')"
_MARKETS = (
    "SELECT * FROM (SELECT DISTINCT ON (ticker) * FROM markets_daily WHERE day <= %(d)s ORDER BY ticker, day DESC) m "
    f"WHERE day = %(d)s OR status IS NULL OR status NOT IN {_FINAL}"
)
_EVENTS = (
    "SELECT * FROM (SELECT DISTINCT ON (event_ticker) * FROM events_daily WHERE day <= %(d)s "
    "ORDER BY event_ticker, day DESC) e WHERE day = %(d)s OR event_ticker IN (SELECT event_ticker FROM dm)"
)
_SERIES = (
    "SELECT * FROM (SELECT DISTINCT ON (ticker) * FROM series_daily WHERE day <= %(d)s ORDER BY ticker, day DESC) s "
    "WHERE day = %(d)s OR ticker IN (SELECT series_ticker FROM de) OR ticker IN (SELECT series_ticker FROM dm)"
)
_REFERENCE = {
    "markets": (("markets",), f"{_MARKETS}"),
    "events": (("markets", "events"), f"WITH dm AS ({_MARKETS}) {_EVENTS}"),
    "series": (("markets", "events", "series"), f"WITH dm AS ({_MARKETS}), de AS ({_EVENTS}) {_SERIES}"),
}


class ReferenceDataset:
    """`markets`, `events` or `series` as each day ended, from the day the capture first saw one of them on."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.tables: tuple[str, ...] = (table,)
        self.reads, self.select = _REFERENCE[table]

    def tokens(self, prod: psycopg.Connection[Any], cut_us: int) -> dict[date, str]:
        first = prod.execute("SELECT min(received_us) FROM markets_daily").fetchone()
        if first is None or first[0] is None:
            return {}
        per_table = []
        for t in self.reads:
            rows = prod.execute(
                f"SELECT day, count(*), max(ingest_id) FROM {t}_daily WHERE day <= %s GROUP BY day", (day_of(cut_us),)
            ).fetchall()
            per_table.append({d: (n, m) for d, n, m in rows})
        out = {}
        high = [0] * len(self.reads)  # a day's file follows from every version up to its end: the running max
        day, last = min(min(p, default=day_of(cut_us)) for p in per_table), day_of(cut_us)
        while day <= last:
            parts = []
            for i, p in enumerate(per_table):
                n, m = p.get(day, (0, 0))
                high[i] = max(high[i], m)
                parts.append(f"{n}:{high[i]}")
            if day >= day_of(int(first[0])):
                out[day] = "/".join(parts)
            day += timedelta(days=1)
        return out

    def write(self, prod: psycopg.Connection[Any], job: DayJob, sink: Sink) -> None:
        spec = TABLES[self.table]
        cols = ", ".join(
            f"r.{c}::text" if t == "jsonb" else f"r.{c}" for c, t in zip(spec.columns, spec.types, strict=True)
        )
        key = ", ".join(f"r.{c}" for c in sort_order(LAKE_TABLES[self.table]))
        sql = f"SELECT {cols} FROM ({self.select}) r ORDER BY {key}"
        _stream(prod, sql, {"d": job.day}, job.batch, self.table, sink)


# One row per market whose result is known: the newest market object's result and value where it has them, else
# the lifecycle's; determined when the lifecycle said so (else when it said settled, else the object's update time).
_SETTLEMENTS = """
WITH lc AS (
    SELECT market_ticker,
           min(determination_ts_us) FILTER (WHERE event_type = 'determined') AS determined,
           max(settled_ts_us) FILTER (WHERE event_type = 'settled') AS settled,
           (array_agg(result ORDER BY received_us DESC) FILTER (WHERE coalesce(result, '') <> ''))[1] AS result,
           (array_agg(settlement_value ORDER BY received_us DESC) FILTER (WHERE settlement_value IS NOT NULL))[1]
               AS value
    FROM lifecycle_events WHERE event_type IN ('determined', 'settled') GROUP BY market_ticker
), s AS (
    SELECT coalesce(m.ticker, lc.market_ticker) AS market_ticker, m.event_ticker, m.series_ticker,
           coalesce(nullif(m.result, ''), lc.result) AS result, coalesce(m.settlement_value, lc.value) AS value,
           coalesce(lc.determined, lc.settled, m.updated_us) AS determined_us,
           CASE WHEN lc.determined IS NOT NULL THEN 'lifecycle' WHEN lc.settled IS NOT NULL THEN 'lifecycle settled'
                ELSE 'market' END AS determined_by,
           lc.settled AS settled_us, m.status
    FROM lc FULL JOIN markets m ON m.ticker = lc.market_ticker
    WHERE coalesce(nullif(m.result, ''), lc.result) IS NOT NULL
)
SELECT market_ticker, event_ticker, series_ticker, result, value, determined_us, determined_by, settled_us, status
FROM s WHERE determined_us < %s ORDER BY market_ticker, determined_us
"""


class SettlementsDataset:
    tables: tuple[str, ...] = ("settlements",)

    def _rows(self, prod: psycopg.Connection[Any], cut_us: int) -> dict[date, list[tuple[Any, ...]]]:
        out: dict[date, list[tuple[Any, ...]]] = {}
        for row in prod.execute(_SETTLEMENTS, (cut_us,)):
            out.setdefault(day_of(int(row[5])), []).append(row)
        return out

    def tokens(self, prod: psycopg.Connection[Any], cut_us: int) -> dict[date, str]:
        return {d: f"{len(rows)}:{_digest(rows)}" for d, rows in self._rows(prod, cut_us).items()}

    def write(self, prod: psycopg.Connection[Any], job: DayJob, sink: Sink) -> None:
        sink("settlements", self._rows(prod, job.hi_us).get(job.day, []))
