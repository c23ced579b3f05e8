"""`bbo`, `book_1s` and `bars_1m` of a day, read from production in one pass: three server-side cursors (the
day's deltas, snapshots with their boundaries, trades) in market order, each market's book replayed
(dedup._replay.replay_stream) from just before the day and derived (dedup._derive). Memory holds one market's
snapshots of the day and a row group of each table, whatever the day's size."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import psycopg

from dedup._datasets import DAY_US, DayJob, Sink, day_of
from dedup._derive import BOOK_TABLES, LOOKBACK_US, Gaps, derive
from dedup._replay import SKEW_US, BookState, ProductionSource, Snap, replay_stream

_SOURCES = (
    ("orderbook_deltas", "exchange_ts_us"),
    ("orderbook_snapshots", "received_us"),
    ("trades", "exchange_ts_us"),
)
_C = 'COLLATE "C"'  # Python's order of strings: the cursors are merged by market in Python
_DELTAS = (
    "SELECT market_ticker, exchange_ts_us, side, price, delta FROM orderbook_deltas "
    f"WHERE exchange_ts_us > %s AND exchange_ts_us <= %s ORDER BY market_ticker {_C}, exchange_ts_us, occurrence"
)
_SNAPSHOTS = (
    "SELECT s.market_ticker, s.received_us, s.yes_bid_prices, s.yes_bid_sizes, s.no_bid_prices, s.no_bid_sizes, "
    "s.gatherer_id, s.source, coalesce((SELECT d.exchange_ts_us FROM orderbook_deltas d "
    "WHERE d.market_ticker = s.market_ticker AND d.exchange_ts_us <= s.received_us + %s "
    "AND d.received_us <= s.received_us ORDER BY d.exchange_ts_us DESC LIMIT 1), -1) "
    "FROM orderbook_snapshots s WHERE s.received_us > %s AND s.received_us <= %s "
    f"ORDER BY s.market_ticker {_C}, s.received_us, s.gatherer_id, s.source"
)
_TRADES = (
    "SELECT market_ticker, exchange_ts_us, yes_price, count FROM trades WHERE exchange_ts_us >= %s "
    f"AND exchange_ts_us < %s ORDER BY market_ticker {_C}, exchange_ts_us, trade_id {_C}"
)
_GAPS = (
    "SELECT market_ticker, channel, from_us, to_us FROM coverage_gaps WHERE NOT verified_complete "
    "AND channel IN ('orderbook_delta', 'trade') AND from_us <= %s AND to_us >= %s ORDER BY from_us"
)


class _Groups:
    """A cursor's rows (market first, in market order) a market at a time."""

    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self._rows = iter(cur)
        self._head: tuple[Any, ...] | None = next(self._rows, None)

    def peek(self) -> str | None:
        return None if self._head is None else str(self._head[0])

    def take(self, market: str) -> Iterator[tuple[Any, ...]]:
        """The market's rows, read as they are taken (drain it before the next market)."""
        while self._head is not None and self._head[0] == market:
            row, self._head = self._head, next(self._rows, None)
            yield row


class BooksDataset:
    tables: tuple[str, ...] = BOOK_TABLES

    def tokens(self, prod: psycopg.Connection[Any], cut_us: int) -> dict[date, str]:
        """A day follows from its deltas, snapshots and trades, the day before's (the book it starts from), and
        the unverified gaps that overlap it."""
        per: list[dict[date, tuple[int, int]]] = []
        for table, tcol in _SOURCES:
            rows = prod.execute(
                f"SELECT {tcol} / %s, count(*), max(ingest_id) FROM {table} WHERE {tcol} < %s GROUP BY 1",
                (DAY_US, cut_us),
            ).fetchall()
            per.append({date(1970, 1, 1) + timedelta(days=int(d)): (n, m) for d, n, m in rows})
        days = {d + timedelta(days=k) for p in per for d in p for k in (0, 1)}
        gaps = prod.execute(
            "SELECT from_us, to_us, ingest_id FROM coverage_gaps WHERE channel IN ('orderbook_delta', 'trade') "
            "AND from_us < %s",
            (cut_us,),
        ).fetchall()
        out = {}
        for d in sorted(x for x in days if x <= day_of(cut_us)):
            lo = (d - date(1970, 1, 1)).days * DAY_US
            parts = [f"{p.get(d - timedelta(days=1), (0, 0))}{p.get(d, (0, 0))}" for p in per]
            near = [i for f, t, i in gaps if f < lo + DAY_US and t >= lo - LOOKBACK_US]
            out[d] = "/".join(parts) + f"/{len(near)}:{max(near, default=0)}"
        return out

    def write(self, prod: psycopg.Connection[Any], job: DayJob, sink: Sink) -> None:
        lo, hi = job.lo_us, job.hi_us
        start, end = lo - LOOKBACK_US, hi - 1
        book_gaps: dict[str, Gaps] = {}
        trade_gaps: dict[str, Gaps] = {}
        for market, channel, f, t in prod.execute(_GAPS, (end, start)).fetchall():
            (book_gaps if channel == "orderbook_delta" else trade_gaps).setdefault(market, []).append((f, t))
        src = ProductionSource(prod)
        tag = uuid.uuid4().hex[:8]
        with (
            prod.cursor(name=f"kd_deltas_{tag}") as dc,
            prod.cursor(name=f"kd_snaps_{tag}") as sc,
            prod.cursor(name=f"kd_trades_{tag}") as tc,
        ):
            for cur, sql, params in ((dc, _DELTAS, (start, end)), (sc, _SNAPSHOTS, (SKEW_US, start, end)),
                                     (tc, _TRADES, (lo, hi))):  # fmt: skip
                cur.itersize = job.batch
                cur.execute(sql, params)
            deltas, snaps, trades = _Groups(dc), _Groups(sc), _Groups(tc)
            while True:
                heads = [m for m in (deltas.peek(), snaps.peek(), trades.peek()) if m is not None]
                if not heads:
                    break
                market = min(heads)
                bg = book_gaps.get(market, []) + book_gaps.get("", [])
                tg = trade_gaps.get(market, []) + trade_gaps.get("", [])
                states = self._states(src, market, snaps.take(market), deltas.take(market), start, end, bg)
                day_trades = [(int(ts), price, count) for _, ts, price, count in trades.take(market)]
                derive(market, states, day_trades, lo, hi, sorted(bg), sorted(tg), sink)
                for _ in deltas.take(market):  # what a market without a book leaves unread
                    pass

    @staticmethod
    def _states(
        src: ProductionSource,
        market: str,
        snap_rows: Iterator[tuple[Any, ...]],
        delta_rows: Iterator[tuple[Any, ...]],
        start: int,
        end: int,
        gaps: Gaps,
    ) -> Iterator[BookState]:
        snaps: list[Snap] = []
        bounds: list[int] = []
        first = src.snapshot(market, start, first=False)
        if first is not None:
            snaps.append(first)
            bounds.append(src.boundary(market, first.received_us))
        for _, received, yp, ys, np_, ns, gid, source, bound in snap_rows:
            yes, no = tuple(zip(yp, ys, strict=True)), tuple(zip(np_, ns, strict=True))
            snaps.append(Snap(int(received), yes, no, gid, source))
            bounds.append(int(bound))
        if not snaps:
            return iter(())
        least = min(bounds)
        early = src.deltas(market, least, start) if least < start else []
        day = ((int(ts), side, price, delta) for _, ts, side, price, delta in delta_rows)
        deltas = itertools.chain(early, day)
        return replay_stream(market, snaps, bounds, deltas, start, end, sorted(gaps), copy=False)
