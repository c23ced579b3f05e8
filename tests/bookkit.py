"""A production database holding a few markets' books and trades around a midnight, and the slow, obvious
reading of them that the lake's book tables and the replay are checked against.

What it holds varies with the seed: the midnight, the market names (ones whose order differs between collations),
how many deltas share a millisecond, snapshots by three gatherers (WebSocket and REST, some in the same
microsecond), a market whose book first appears mid-window, one that only trades, a side that empties, and
deltas lost for everyone inside an unverified coverage gap that a later snapshot ends; besides, an all-market
trade gap, and a verified gap that must flag nothing."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg

from core.records import OrderbookDelta, OrderbookSnapshot, Trade
from tests.dedupkit import DAY0, store

DAY_US = 86_400_000_000
SECOND_US = 1_000_000
MINUTE_US = 60_000_000
DOLLAR = 100_000
SKEW_US = 1_000_000
DEPTH = 10
NAMES = ("KXA-26JAN01-T1", "KXa-26JAN01-T1", "KX_B-26JAN01", "KX-B-26JAN01", "KXZ-26JAN01-B9.5", "KXM-1")


@dataclass
class Scenario:
    midnight: int
    start: int  # the window the rows lie in
    end: int
    markets: list[str]
    lost: dict[str, tuple[int, int]] = field(default_factory=dict)  # market -> the gap its lost deltas lie in


def fill_books(dsn: str, seed: int) -> Scenario:
    rng = random.Random(seed)
    midnight = DAY0 + rng.randrange(0, 40) * DAY_US
    start, end = midnight - 150 * SECOND_US, midnight + 150 * SECOND_US
    markets = rng.sample(NAMES, 5)
    sc = Scenario(midnight, start, end, markets)
    deltas: list[Any] = []
    snaps: list[Any] = []
    trades: list[Any] = []
    gaps: list[tuple[str, str, int, int, bool]] = []
    for n, market in enumerate(markets):
        trades_only = n == 4
        late_book = n == 3  # its first snapshot comes mid-window: no book before
        prices = [p * 1000 for p in rng.sample(range(1, 100), 8)]
        book: dict[tuple[bool, int], int] = {}
        for _ in range(rng.randrange(0, 6)):
            book[(rng.random() < 0.5, rng.choice(prices))] = rng.randrange(1, 50) * 100
        initial = dict(book)
        events: list[tuple[int, bool, int, int]] = []
        t = start + rng.randrange(0, 2000) * 1000
        t_empty = rng.randrange(start, end) if rng.random() < 0.7 else end  # every NO bid pulled at once
        instants = [midnight, midnight + MINUTE_US]  # a change of the best on the instant a minute starts
        while t < end and not trades_only:
            while instants and t >= instants[0]:
                at = instants.pop(0)
                bids = [p for (sd, p), q in book.items() if sd and q > 0]
                above = max(bids, default=0) + 500  # a new best YES bid for a second and a half
                events += [(at, True, above, 100), (at + 1_500_000, True, above, -100)]
            if t >= t_empty:
                events += [(t, False, p, -q) for (sd, p), q in book.items() if not sd and q]
                book = {k: (0 if not k[0] else q) for k, q in book.items()}
                t_empty = end
            for _ in range(1 if rng.random() < 0.7 else rng.randrange(2, 4)):  # some milliseconds carry several
                side, price = rng.random() < 0.5, rng.choice(prices)
                have = book.get((side, price), 0)
                delta = -have if have and rng.random() < 0.35 else rng.randrange(1, 30) * 100
                book[(side, price)] = have + delta
                events.append((t, side, price, delta))
            t += rng.choice((1, 2, 5, 40, 300, 900, 2500, 7000)) * 1000
        events.sort(key=lambda e: e[0])
        behind = n == 2  # this gatherer's clock runs behind the exchange's: some deltas arrive "before" they happen
        received = start
        seen: list[tuple[int, int, bool, int, int]] = []  # (received, ts, side, price, delta)
        for ts, side, price, delta in events:
            lag = -rng.randrange(1000, 400_000) if behind else rng.randrange(1000, 60_000)
            received = max(received, ts + lag)  # one socket: received in order
            seen.append((received, ts, side, price, delta))
        lost: tuple[int, int] | None = None
        ends = 0
        if n == 1 and len(seen) > 20:  # deltas lost for everyone, inside an unverified gap
            a = rng.randrange(5, len(seen) - 10)
            b = a + rng.randrange(2, 8)
            lost = (seen[a][0] - 500, seen[b][0] + 500)
            sc.lost[market] = lost
            ends = lost[1] + rng.randrange(3, 7) * SECOND_US  # the snapshot that ends the gap
            gaps.append((market, "orderbook_delta", lost[0], ends, False))
        occurrences: dict[tuple[int, bool, int, int], int] = defaultdict(int)
        for k, (rec, ts, side, price, delta) in enumerate(seen):
            occ = occurrences[(ts, side, price, delta)]
            occurrences[(ts, side, price, delta)] += 1
            if lost and lost[0] <= rec <= lost[1]:
                continue
            deltas.append(OrderbookDelta("g1", rec, ts, market, None, side, price, delta, occ, 1, k))

        def true_book(
            at: int, initial: dict[tuple[bool, int], int] = initial, seen: list[tuple[int, int, bool, int, int]] = seen
        ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
            """The exchange's book with every delta received by `at` (what a snapshot then shows)."""
            levels: dict[tuple[bool, int], int] = defaultdict(int, initial)
            for rec, _ts, sd, p, d in seen:
                if rec <= at:
                    levels[(sd, p)] += d
            return [(p, q) for (sd, p), q in levels.items() if sd and q], [
                (p, q) for (sd, p), q in levels.items() if not sd and q
            ]

        first = start + rng.randrange(20, 200) * SECOND_US if late_book else start - rng.randrange(1, 400) * SECOND_US
        times = sorted({first, *(rng.randrange(start, end) for _ in range(rng.randrange(2, 6)))})
        if lost:
            times.append(ends)
        if not trades_only:
            for at in sorted(times):
                if late_book and at < first:
                    continue
                yes, no = true_book(at)
                for gid in rng.sample(("g1", "g2", "g3"), rng.randrange(1, 4)):  # copies in one microsecond
                    src = rng.choice(("ws", "rest"))
                    snaps.append(OrderbookSnapshot(gid, at, None, market, None, src, 1, 1, yes, no))
        for _ in range(rng.randrange(3, 25)):
            ts = rng.randrange(start, end) // 1000 * 1000
            yes_price = rng.choice(prices)
            tid = f"{rng.getrandbits(64):016x}-{rng.choice(('a', 'B', '-', '_'))}"
            trades.append(Trade("g1", ts + 3000, ts, market, tid, yes_price, DOLLAR - yes_price, rng.randrange(1, 500),
                                True, "ask", True, False))  # fmt: skip
    # every market's trades lost for a while; and a gap a snapshot proved complete: it flags nothing
    t0 = rng.randrange(start, end - 30 * SECOND_US)
    gaps.append(("", "trade", t0, t0 + rng.randrange(1, 90) * SECOND_US, False))
    gaps.append((markets[0], "orderbook_delta", start + 10 * SECOND_US, end - 10 * SECOND_US, True))
    store(dsn, deltas + snaps + trades)
    with psycopg.connect(dsn) as conn:
        for market, channel, f, t, verified in gaps:
            conn.execute(
                "INSERT INTO coverage_gaps (market_ticker, channel, from_us, to_us, sources, verified_complete) "
                "VALUES (%s, %s, %s, %s, ARRAY['g1'], %s)",
                (market, channel, f, t, verified),
            )
        conn.execute(
            "INSERT INTO sync_cursors (source, table_name, caught_up_us) VALUES ('g1', 'trades', %s) "
            "ON CONFLICT (source, table_name) DO UPDATE SET caught_up_us = EXCLUDED.caught_up_us",
            (midnight + 2 * DAY_US,),
        )
    return sc


# ---- the slow, obvious reading --------------------------------------------------------------------------------


Book = tuple[dict[int, int], dict[int, int]] | None


class Raw:
    """Production's rows of a market in Python lists, and the book at t by the definition: the latest snapshot
    received at or before t (ties: gatherer, source), plus the sum of every delta after its boundary up to t."""

    def __init__(self, dsn: str) -> None:
        with psycopg.connect(dsn) as conn:
            self.deltas = conn.execute(
                "SELECT market_ticker, exchange_ts_us, received_us, side, price, delta FROM orderbook_deltas"
            ).fetchall()
            self.snaps = conn.execute(
                "SELECT market_ticker, received_us, gatherer_id, source, yes_bid_prices, yes_bid_sizes, "
                "no_bid_prices, no_bid_sizes FROM orderbook_snapshots"
            ).fetchall()
            self.trades = conn.execute(
                "SELECT market_ticker, exchange_ts_us, trade_id, yes_price, count FROM trades"
            ).fetchall()
            self.gaps = conn.execute(
                "SELECT market_ticker, channel, from_us, to_us FROM coverage_gaps WHERE NOT verified_complete"
            ).fetchall()
        self.markets = sorted({r[0] for r in self.deltas} | {r[0] for r in self.snaps} | {r[0] for r in self.trades})

    def book_at(self, market: str, t: int) -> Book:
        snaps = sorted((s for s in self.snaps if s[0] == market and s[1] <= t), key=lambda s: (s[1], s[2], s[3]))
        if not snaps:
            return None
        s = snaps[-1]
        bound = max(
            (d[1] for d in self.deltas if d[0] == market and d[2] <= s[1] and d[1] <= s[1] + SKEW_US), default=-1
        )
        yes: dict[int, int] = defaultdict(int, zip(s[4], s[5], strict=True))
        no: dict[int, int] = defaultdict(int, zip(s[6], s[7], strict=True))
        for d in self.deltas:
            if d[0] == market and bound < d[1] <= t:
                (yes if d[3] else no)[d[4]] += d[5]
        return {p: q for p, q in yes.items() if q}, {p: q for p, q in no.items() if q}

    def times(self, market: str) -> list[int]:
        """Every time the market's book can change: a delta's exchange time, a snapshot's receive time."""
        return sorted({d[1] for d in self.deltas if d[0] == market} | {s[1] for s in self.snaps if s[0] == market})

    def in_gap(self, market: str, channel: str, lo: int, hi: int | None = None) -> bool:
        """An unverified gap of the market (or of all) holds t = lo, or overlaps [lo, hi)."""
        for m, c, f, t in self.gaps:
            if m in (market, "") and c == channel and (f <= lo < t if hi is None else f < hi and t > lo):
                return True
        return False


def best(book: Book) -> tuple[int | None, int | None, int | None, int | None]:
    if book is None:
        return (None, None, None, None)
    yes, no = book
    y = max(yes) if yes else None
    n = max(no) if no else None
    return (y, yes[y] if y is not None else None, n, no[n] if n is not None else None)


def slow_tables(raw: Raw, lo: int, hi: int) -> dict[str, list[tuple[Any, ...]]]:
    """bbo, book_1s and bars_1m over [lo, hi), from their definitions (dedup/_derive.py's docstring)."""
    out: dict[str, list[tuple[Any, ...]]] = {"bbo": [], "book_1s": [], "bars_1m": []}
    for m in raw.markets:
        changes = [t for t in raw.times(m) if raw.book_at(m, t) != raw.book_at(m, t - 1)]
        for t in changes:
            if lo <= t < hi and best(raw.book_at(m, t)) != best(raw.book_at(m, t - 1)):
                out["bbo"].append((m, t, *best(raw.book_at(m, t)), raw.in_gap(m, "orderbook_delta", t)))
        seconds = sorted(
            {s for t in changes for s in range(-(-t // SECOND_US) * SECOND_US, t + 2 * SECOND_US, SECOND_US)}
        )
        for s in seconds:
            if lo <= s < hi and any(s - 2 * SECOND_US < t <= s for t in changes):
                yes, no = raw.book_at(m, s) or ({}, {})
                yp, np_ = sorted(yes, reverse=True)[:DEPTH], sorted(no, reverse=True)[:DEPTH]
                out["book_1s"].append((m, s, yp, [yes[p] for p in yp], np_, [no[p] for p in np_],
                                       raw.in_gap(m, "orderbook_delta", s)))  # fmt: skip
        trades = sorted((r for r in raw.trades if r[0] == m), key=lambda r: (r[1], r[2]))
        minutes = sorted({t - t % MINUTE_US for t in changes} | {r[1] - r[1] % MINUTE_US for r in trades})
        for mn in minutes:
            if not lo <= mn < hi:
                continue
            e = min(mn + MINUTE_US, hi)
            inside = [t for t in changes if mn <= t < e]
            tr = [r for r in trades if mn <= r[1] < e]
            if not inside and not tr:
                continue
            states = [best(raw.book_at(m, mn))] + [best(raw.book_at(m, t)) for t in inside]
            o, c = states[0], best(raw.book_at(m, e - 1))
            bids = [s[0] for s in states if s[0] is not None]
            asks = [DOLLAR - s[2] for s in states if s[2] is not None]
            prices = [r[3] for r in tr]

            def ask(b: tuple[int | None, ...]) -> int | None:
                return None if b[2] is None else DOLLAR - b[2]

            mid = None if c[0] is None or c[2] is None else (c[0] + DOLLAR - c[2]) * 5
            out["bars_1m"].append((
                m, mn, o[0], max(bids, default=None), min(bids, default=None), c[0],
                ask(o), max(asks, default=None), min(asks, default=None), ask(c),
                prices[0] if prices else None, max(prices, default=None), min(prices, default=None),
                prices[-1] if prices else None, len(tr), sum(r[4] for r in tr), sum(r[3] * r[4] for r in tr), mid,
                raw.in_gap(m, "orderbook_delta", mn, e), raw.in_gap(m, "trade", mn, e),
            ))  # fmt: skip
    return out
