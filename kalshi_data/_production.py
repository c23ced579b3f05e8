"""Production (PostgreSQL) answering what the lake answers, from the database the lake is exported from."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import psycopg

from dedup import BookState, ProductionSource
from kalshi_data._books import Book, TimeLike, book, replay_many


class Production:
    """Production at `dsn` (read only); a context manager, or close() when done."""

    def __init__(self, dsn: str) -> None:
        self.conn: psycopg.Connection[Any] = psycopg.connect(dsn, autocommit=True)
        self._source = ProductionSource(self.conn)

    def book(self, ticker: str, at: TimeLike = "now", start: str = "latest") -> Book:
        return book(self._source, ticker, at, start)

    def replay(self, markets: str | Sequence[str], start: TimeLike, end: TimeLike) -> Iterator[BookState]:
        return replay_many(self._source, markets, start, end)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Production:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
