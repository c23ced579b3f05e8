"""What the backfill writes to production, each piece of work in one transaction with its checkpoint: a window's
rows and the row that says the window is done commit together or not at all, so a killed backfill resumes at the
first window without a checkpoint and a second run fetches nothing twice. Rows go in by the platform's natural
keys (ON CONFLICT DO NOTHING; reference tables keep the newest state), so a trade the live capture already holds
stays one row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg_pool import ConnectionPool

from core.records import Kind
from core.tables import PRODUCTION_TABLES, SPECS
from writers import copy_insert

PARTITIONED = ("trades",)


@dataclass(frozen=True)
class Checkpoint:
    endpoint: str  # 'markets' | 'trades' | 'candles_1m'
    subject: str  # a series, a market, or '*' (every market)
    from_us: int
    to_us: int


@dataclass(frozen=True)
class PlannedMarket:
    ticker: str
    series_ticker: str | None
    open_us: int | None
    close_us: int | None


class Store:
    def __init__(self, dsn: str, size: int = 4) -> None:
        self.pool = ConnectionPool(
            dsn, min_size=1, max_size=size, open=True, kwargs={"application_name": "kalshi-data-backfill"}
        )

    def close(self) -> None:
        self.pool.close()

    def done(self, endpoint: str) -> set[tuple[str, int, int]]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT subject, window_from_us, window_to_us FROM backfill_checkpoints WHERE endpoint = %s",
                (endpoint,),
            ).fetchall()
        return {(s, int(a), int(b)) for s, a, b in rows}

    def known(self, table: str, column: str) -> set[str]:
        with self.pool.connection() as conn:
            return {r[0] for r in conn.execute(f"SELECT {column} FROM {table}")}

    def markets(self, series: Sequence[str] | None, since_us: int, until_us: int) -> list[PlannedMarket]:
        """Production's markets open at some moment of [since, until) (a market with no times: kept)."""
        sql = (
            "SELECT ticker, series_ticker, open_time_us, close_time_us FROM markets "
            "WHERE (open_time_us IS NULL OR open_time_us < %s) AND (close_time_us IS NULL OR close_time_us >= %s)"
        )
        params: list[Any] = [until_us, since_us]
        if series:
            sql += " AND series_ticker = ANY(%s)"
            params.append(list(series))
        with self.pool.connection() as conn:
            rows = conn.execute(sql + ' ORDER BY ticker COLLATE "C"', params).fetchall()
        return [PlannedMarket(*r) for r in rows]

    def save(self, cps: Sequence[Checkpoint], requests: int, **rows: Sequence[tuple[Any, ...]]) -> int:
        """Rows of the tables named (trades, candlesticks, markets, events, series) and the checkpoints of the
        work they complete, in one transaction. Returns the rows inserted (a row already there does not count)."""
        inserted = 0
        with self.pool.connection() as conn, conn.transaction():
            for table, batch in rows.items():
                if not batch:
                    continue
                if table in PARTITIONED:
                    lo, hi = _span(batch, 2)
                    conn.execute("SELECT kd_ensure_partitions(%s, %s, %s)", (table, lo, hi + 1))
                inserted += copy_insert(conn, _SPEC[table], batch)
            n = sum(len(b) for b in rows.values())
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO backfill_checkpoints (endpoint, subject, window_from_us, window_to_us, rows, "
                    "requests) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    [(cp.endpoint, cp.subject, cp.from_us, cp.to_us, n, requests) for cp in cps],
                )
        return inserted


_SPEC = {
    "trades": SPECS[Kind.TRADE],
    "markets": SPECS[Kind.MARKET],
    "events": SPECS[Kind.EVENT],
    "series": SPECS[Kind.SERIES],
    "candlesticks": PRODUCTION_TABLES["candlesticks"],
}


def _span(rows: Sequence[tuple[Any, ...]], col: int) -> tuple[int, int]:
    ts = [int(r[col]) for r in rows]
    return min(ts), max(ts)
