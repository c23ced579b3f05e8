"""The Parquet lake: books, replays, tables and SQL, read with DuckDB."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from core.conversions import us_to_datetime
from core.tables import LAKE_TABLES
from dedup import BookState, LakeSource, lake_connect, sort_order
from kalshi_data._books import Book, TimeLike, book, replay_many, to_us


class Lake:
    """A lake at `root`: a folder, or s3://bucket/prefix (credentials from the environment, `s3_endpoint_url` for
    S3-compatible stores)."""

    def __init__(self, root: str | Path, s3_endpoint_url: str | None = None) -> None:
        self.root, self.s3_endpoint_url = str(root), s3_endpoint_url
        self._books: LakeSource | None = None
        self._views: Any = None

    @property
    def _source(self) -> LakeSource:
        if self._books is None:
            self._books = LakeSource(self.root, self.s3_endpoint_url)
        return self._books

    def book(self, ticker: str, at: TimeLike = "now", start: str = "latest") -> Book:
        """The market's book at `at` (exchange time): what `kalshi-data book TICKER --at AT --lake ROOT` prints."""
        return book(self._source, ticker, at, start)

    def replay(self, markets: str | Sequence[str], start: TimeLike, end: TimeLike) -> Iterator[BookState]:
        """Each market's book at `start`, then after every change up to `end`, in exchange order (several markets
        merged). A state holds from its `at_us` until the next one of its market; `in_gap` flags states inside an
        unverified coverage gap."""
        return replay_many(self._source, markets, start, end)

    def sql(self, query: str, params: Sequence[Any] = ()) -> Any:
        """A query over the lake's views (one per table: decimals of dollars and contracts, UTC timestamps, the
        `date` partition as a column), answered as a pyarrow Table."""
        if self._views is None:
            self._views = lake_connect(self.root, self.s3_endpoint_url)
        return self._views.execute(query, list(params)).to_arrow_table()

    def table(self, name: str, start: TimeLike, end: TimeLike, markets: Sequence[str] | None = None) -> Any:
        """A table's rows with start <= time < end (its time column; a reference table's days), of some markets or
        all, in the lake's order, as a pyarrow Table with production's columns and `date`."""
        if name not in LAKE_TABLES:
            raise KeyError(f"no table {name!r} in the lake; it has {', '.join(sorted(LAKE_TABLES))}")
        spec = LAKE_TABLES[name]
        lo, hi = to_us(start), to_us(end)
        # a row's date folder is the UTC date of its time column (of its state, for a reference table): the
        # range prunes folders
        where = ["date BETWEEN ? AND ?"]
        params: list[Any] = [us_to_datetime(lo).date(), us_to_datetime(hi - 1).date()]
        if spec.time_column is not None:
            where += [f"{spec.time_column} >= make_timestamptz(?)", f"{spec.time_column} < make_timestamptz(?)"]
            params += [lo, hi]
        if markets is not None:
            column = "market_ticker" if "market_ticker" in spec.columns else "ticker" if name == "markets" else None
            if column is None:
                raise ValueError(f"{name} is not by market")
            where.append(f"{column} IN (SELECT unnest(?))")
            params.append(list(markets))
        order = ", ".join(["date", *sort_order(spec)])
        return self.sql(f"SELECT * FROM {name} WHERE {' AND '.join(where)} ORDER BY {order}", params)
