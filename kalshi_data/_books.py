"""What the API hands out: a book at a moment (Book), a state of a replay (BookState, dedup's), units and times."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from core.conversions import PRICE_SCALE, QTY_SCALE, us_to_datetime, user_time_to_us
from dedup import BookSource, BookState, book_at, replay

Level = tuple[int, int]  # (price in 1e-5 USD, size in 1e-2 contracts)
TimeLike = datetime | str | int


def dollars(price: int) -> Decimal:
    """A price in the API's units (hundred-thousandths of a dollar) as exact dollars."""
    return Decimal(price) / PRICE_SCALE


def contracts(size: int) -> Decimal:
    """A size in the API's units (hundredths of a contract) as exact contracts."""
    return Decimal(size) / QTY_SCALE


def to_us(at: TimeLike) -> int:
    """A time as unix microseconds: a datetime (naive is UTC), ISO text, unix s/ms/µs (int or digits), "now"."""
    if isinstance(at, datetime):
        return user_time_to_us(at.isoformat())
    if isinstance(at, int):
        return user_time_to_us(str(at))
    return user_time_to_us(at)


@dataclass(frozen=True)
class Book:
    """A market's book at a moment: the latest snapshot at or before it plus every delta after, best first."""

    ticker: str
    at_us: int
    yes: list[Level]  # YES bids, best (highest) first
    no: list[Level]  # NO bids, best first; a YES ask at p is a NO bid at $1 - p
    snapshot_received_us: int
    snapshot_source: str  # "ws" or "rest"
    snapshot_gatherer: str
    deltas_applied: int
    inside_coverage_gap: bool  # an unverified coverage gap overlaps the rebuild: the book may lack something
    newest_us: int | None  # the newest delta the store holds of this market (a book past it is its book then)

    @property
    def at(self) -> datetime:
        return us_to_datetime(self.at_us)


def book(src: BookSource, ticker: str, at: TimeLike, start: str = "latest") -> Book:
    b = book_at(src, ticker, to_us(at), start)
    return Book(
        ticker=b["ticker"],
        at_us=b["at_us"],
        yes=b["yes"],
        no=b["no"],
        snapshot_received_us=b["snapshot_received_us"],
        snapshot_source=b["snapshot_source"],
        snapshot_gatherer=b["snapshot_gatherer"],
        deltas_applied=b["deltas_applied"],
        inside_coverage_gap=b["inside_coverage_gap"],
        newest_us=src.newest(ticker),
    )


def replay_many(src: BookSource, markets: str | Sequence[str], start: TimeLike, end: TimeLike) -> Iterator[BookState]:
    """Each market's book states between start and end, merged in exchange order (ties by market)."""
    lo, hi = to_us(start), to_us(end)
    names = [markets] if isinstance(markets, str) else list(dict.fromkeys(markets))
    streams: list[Iterable[BookState]] = [replay(src, m, lo, hi) for m in names]
    if len(streams) == 1:
        return iter(streams[0])
    return heapq.merge(*streams, key=lambda s: (s.at_us, s.market))
