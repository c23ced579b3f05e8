"""A market's book at a moment, and its book through time, from any store of production's rows: production itself
or the lake (dedup._lake_read). One algorithm for both, so `kalshi-data book --lake` prints what `--dsn` prints and
the lake's book tables agree with production's books.

The book at t: the latest snapshot received at or before t (or the first one, `first`), plus every delta after its
boundary up to exchange time t. A snapshot carries no exchange time; its boundary is the newest exchange time of
the deltas any gatherer had received when it arrived (looking at most SKEW_US past its receive time: clock skew):
the deltas after that are the ones it does not hold. Exact
unless a snapshot lands inside a millisecond that carries deltas, or inside a coverage gap no snapshot verified
(reported: `inside_coverage_gap`). Deltas of one millisecond are applied together: their order inside it is
unknown, and the book after them is the same whatever it was.

`replay` gives the book after each change: at the start, after each millisecond with deltas, and when a newer
snapshot becomes the latest (the book then restarts from it). Between two of its states the book is the earlier
one: `book_at(t)` equals the last state at or before t.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import psycopg

from core.conversions import PRICE_SCALE as DOLLAR
from core.conversions import us_to_datetime
from dedup._book import apply_delta

Levels = dict[int, int]
Delta = tuple[int, bool, int, int]  # (exchange ts, side, price, delta), in (ts, occurrence) order
_NEVER = 1 << 62  # past any time
# A snapshot's boundary looks this far past its receive time: a delta stamped later by the exchange than its
# receipt by a gatherer is clock skew, never more than this under NTP (and it bounds the index walk).
SKEW_US = 1_000_000


@dataclass(frozen=True)
class Snap:
    received_us: int
    yes: tuple[tuple[int, int], ...]
    no: tuple[tuple[int, int], ...]
    gatherer_id: str
    source: str


class BookSource(Protocol):
    """What the book needs of a store: production (ProductionSource) or the lake (dedup._lake_read.LakeSource)."""

    def snapshot(self, market: str, at_us: int, first: bool) -> Snap | None:
        """The latest snapshot received at or before at_us (the first one, `first`)."""
        ...

    def snapshots_between(self, market: str, lo_us: int, hi_us: int) -> list[Snap]:
        """Snapshots received in (lo_us, hi_us], oldest first."""
        ...

    def boundary(self, market: str, received_us: int) -> int:
        """The newest exchange time, up to SKEW_US past received_us, of the market's deltas received at or before
        received_us (-1: none)."""
        ...

    def boundaries(self, market: str, received: list[int]) -> list[int]:
        """`boundary` of each receive time (one read where the store makes that cheaper)."""
        ...

    def deltas(self, market: str, after_us: int, upto_us: int) -> list[Delta]:
        """Deltas with after_us < exchange ts <= upto_us, in (ts, occurrence) order."""
        ...

    def gaps(self, market: str, lo_us: int, hi_us: int) -> list[tuple[int, int]]:
        """Unverified book coverage gaps of the market (or of every market) that overlap [lo_us, hi_us]."""
        ...

    def newest(self, market: str) -> int | None:
        """The newest exchange time of the market's deltas (None: none)."""
        ...


@dataclass
class BookState:
    """A market's book from `at_us` (exchange time) until the next state."""

    market: str
    at_us: int
    yes: Levels  # YES bids: price (1e-5 USD) -> size (1e-2 contracts)
    no: Levels  # NO bids; a YES ask at p is a NO bid at $1 - p of the same size
    in_gap: bool  # inside a coverage gap no snapshot showed complete: this book may lack something

    @property
    def at(self) -> datetime:
        return us_to_datetime(self.at_us)

    def best_yes_bid(self) -> tuple[int, int] | None:
        """(price, size) of the best YES bid; None when the side is empty."""
        return (p := max(self.yes), self.yes[p]) if self.yes else None

    def best_no_bid(self) -> tuple[int, int] | None:
        return (p := max(self.no), self.no[p]) if self.no else None

    def best_yes_ask(self) -> tuple[int, int] | None:
        """The best YES ask: the best NO bid seen from the YES side ($1 - its price, its size)."""
        return (DOLLAR - (p := max(self.no)), self.no[p]) if self.no else None


def _apply(yes: Levels, no: Levels, deltas: Iterable[Delta]) -> None:
    for _, side, price, delta in deltas:
        apply_delta(yes if side else no, price, delta)


def book_at(src: BookSource, market: str, at_us: int, start: str = "latest") -> dict[str, Any]:
    """The market's book at exchange time at_us, as `kalshi-data book` prints it."""
    from core.conversions import us_to_iso

    snap = src.snapshot(market, at_us, first=start == "first")
    if snap is None:
        raise LookupError(f"no snapshot of {market} at or before {us_to_iso(at_us)}")
    yes, no = dict(snap.yes), dict(snap.no)
    deltas = src.deltas(market, src.boundary(market, snap.received_us), at_us)
    _apply(yes, no, deltas)
    return {
        "ticker": market,
        "at_us": at_us,
        "snapshot_received_us": snap.received_us,
        "snapshot_source": snap.source,
        "snapshot_gatherer": snap.gatherer_id,
        "deltas_applied": len(deltas),
        "yes": sorted(yes.items(), reverse=True),
        "no": sorted(no.items(), reverse=True),
        "inside_coverage_gap": bool(src.gaps(market, snap.received_us, at_us)),
    }


def replay(src: BookSource, market: str, start_us: int, end_us: int, copy: bool = True) -> Iterator[BookState]:
    """The market's book from start_us to end_us (exchange times): the state at start_us (or at its first
    snapshot, if it had none by then), then each change (of a level, or into or out of a coverage gap), in exchange
    order. copy=False yields one BookState updated in place (valid until the next one)."""
    first = src.snapshot(market, start_us, first=False)
    snaps = ([first] if first is not None else []) + src.snapshots_between(market, start_us, end_us)
    if not snaps:
        return
    bounds = src.boundaries(market, [s.received_us for s in snaps])
    deltas = src.deltas(market, min(bounds), end_us)
    gaps = src.gaps(market, start_us, end_us)
    last: tuple[Levels, Levels, bool] | None = None
    for state in replay_stream(market, snaps, bounds, deltas, start_us, end_us, gaps, copy):
        now = (state.yes, state.no, state.in_gap)
        if now != last:  # a snapshot that shows the book as it was, a millisecond whose deltas cancel: no change
            last = (dict(state.yes), dict(state.no), state.in_gap) if not copy else now
            yield state


def replay_stream(
    market: str,
    snaps: list[Snap],
    bounds: list[int],
    deltas: Iterable[Delta],
    start_us: int,
    end_us: int,
    gaps: list[tuple[int, int]],
    copy: bool = True,
) -> Iterator[BookState]:
    """`replay` over given inputs: the snapshots (the latest at or before start_us first, if any, then those up to
    end_us, oldest first), their boundaries, and the deltas from the least boundary on, in (ts, occurrence) order
    (read as they come: a day of a market need not be in memory)."""
    # deltas past the boundary of a snapshot still to come are kept: it is rebuilt from them when it arrives
    pending_bound = [min(bounds[k:]) for k in range(1, len(bounds))] + [_NEVER]
    recent: deque[Delta] = deque()
    stream = iter(deltas)
    head: Delta | None = next(stream, None)

    def take(upto: int) -> list[Delta]:
        """The next deltas with ts <= upto, remembered for rebuilding a later snapshot."""
        nonlocal head
        out = []
        while head is not None and head[0] <= upto:
            out.append(head)
            head = next(stream, None)
        recent.extend(out)
        return out

    def in_gap(t: int) -> bool:
        return any(f <= t < to for f, to in gaps)

    def forget() -> None:
        while recent and recent[0][0] <= pending_bound[k]:
            recent.popleft()

    def rebase(upto: int) -> None:
        take(upto)
        state.yes, state.no = dict(snaps[k].yes), dict(snaps[k].no)
        _apply(state.yes, state.no, (d for d in recent if bounds[k] < d[0] <= upto))
        forget()

    def emit(t: int) -> BookState:
        state.at_us, state.in_gap = t, in_gap(t)
        return BookState(market, t, dict(state.yes), dict(state.no), state.in_gap) if copy else state

    def last_of(k: int) -> int:
        """Snapshots received in one microsecond (copies by several gatherers): the latest is the last."""
        while k + 1 < len(snaps) and snaps[k + 1].received_us == snaps[k].received_us:
            k += 1
        return k

    state = BookState(market, 0, {}, {}, False)
    k = 0 if snaps[0].received_us <= start_us else last_of(0)
    t = start_us if snaps[0].received_us <= start_us else snaps[0].received_us
    rebase(t)
    yield emit(t)  # states come at strictly increasing times from here on
    while True:
        next_ts = head[0] if head is not None else None
        activation = snaps[k + 1].received_us if k + 1 < len(snaps) else None
        if activation is not None and (next_ts is None or activation <= next_ts):
            k = last_of(k + 1)  # a newer snapshot is the latest from its receive time: the book restarts from it
            rebase(activation)
            yield emit(activation)
            continue
        if next_ts is None or next_ts > end_us:
            return
        group = take(next_ts)  # a millisecond's deltas together: their order inside it is unknown
        if next_ts > bounds[k]:
            _apply(state.yes, state.no, group)
        forget()
        yield emit(next_ts)


# ---- production as a source -----------------------------------------------------------------------------------


def _snap(row: tuple[Any, ...]) -> Snap:
    received, yp, ys, np_, ns, gid, source = row
    return Snap(int(received), tuple(zip(yp, ys, strict=True)), tuple(zip(np_, ns, strict=True)), gid, source)


_SNAP_COLUMNS = "received_us, yes_bid_prices, yes_bid_sizes, no_bid_prices, no_bid_sizes, gatherer_id, source"


class ProductionSource:
    """Production's tables (PostgreSQL)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def snapshot(self, market: str, at_us: int, first: bool) -> Snap | None:
        order = "ASC" if first else "DESC"
        row = self.conn.execute(
            f"SELECT {_SNAP_COLUMNS} FROM orderbook_snapshots WHERE market_ticker = %s AND received_us <= %s "
            f"ORDER BY received_us {order}, gatherer_id {order}, source {order} LIMIT 1",
            (market, at_us),
        ).fetchone()
        return None if row is None else _snap(row)

    def snapshots_between(self, market: str, lo_us: int, hi_us: int) -> list[Snap]:
        rows = self.conn.execute(
            f"SELECT {_SNAP_COLUMNS} FROM orderbook_snapshots WHERE market_ticker = %s AND received_us > %s "
            "AND received_us <= %s ORDER BY received_us, gatherer_id, source",
            (market, lo_us, hi_us),
        ).fetchall()
        return [_snap(r) for r in rows]

    def boundary(self, market: str, received_us: int) -> int:
        row = self.conn.execute(  # walks the market's index back from the skew bound
            "SELECT exchange_ts_us FROM orderbook_deltas WHERE market_ticker = %s AND exchange_ts_us <= %s "
            "AND received_us <= %s ORDER BY exchange_ts_us DESC LIMIT 1",
            (market, received_us + SKEW_US, received_us),
        ).fetchone()
        return int(row[0]) if row else -1

    def boundaries(self, market: str, received: list[int]) -> list[int]:
        return [self.boundary(market, r) for r in received]  # an index walk each: as cheap as one batch

    def deltas(self, market: str, after_us: int, upto_us: int) -> list[Delta]:
        return [
            (int(ts), side, price, delta)
            for ts, side, price, delta in self.conn.execute(
                "SELECT exchange_ts_us, side, price, delta FROM orderbook_deltas WHERE market_ticker = %s "
                "AND exchange_ts_us > %s AND exchange_ts_us <= %s ORDER BY exchange_ts_us, occurrence",
                (market, after_us, upto_us),
            )
        ]

    def gaps(self, market: str, lo_us: int, hi_us: int) -> list[tuple[int, int]]:
        return [
            (int(f), int(t))
            for f, t in self.conn.execute(
                "SELECT from_us, to_us FROM coverage_gaps WHERE market_ticker IN (%s, '') AND channel = "
                "'orderbook_delta' AND NOT verified_complete AND from_us <= %s AND to_us >= %s ORDER BY from_us",
                (market, hi_us, lo_us),
            )
        ]

    def newest(self, market: str) -> int | None:
        row = self.conn.execute(
            "SELECT max(exchange_ts_us) FROM orderbook_deltas WHERE market_ticker = %s", (market,)
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])


def rebuild_book(conn: psycopg.Connection[Any], ticker: str, at_us: int, start: str = "latest") -> dict[str, Any]:
    """The book of a market at a moment, from production (book_at on ProductionSource)."""
    return book_at(ProductionSource(conn), ticker, at_us, start)
