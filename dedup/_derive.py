"""The lake's book tables, derived from production's exact books and trades: one pass over a market's day.

- `bbo`: each change of the best YES bid or the best NO bid (price and size; NULL for an empty side), at the
  exchange time of the change. The YES ask is $1 minus the NO bid, of the same size.
- `book_1s`: at each whole second T, the top 10 levels of each side of the book at T (every change at or before
  T), for each market whose book changed in (T - 2 s, T]: a market's rows stop two seconds after its last change
  (its book stands until its next row) and idle markets have none.
- `bars_1m`: for each minute in which a market's book changed or it traded: open, high, low, close of the best
  YES bid, the best YES ask and the trade price (YES), the trade count, contracts and notional (contracts x YES
  price), the mid (best bid and ask at the minute's close, NULL if a side is empty), and whether the minute
  overlaps an unverified coverage gap of the book or of trades. Open is the book at the minute's start (changes
  at that instant included), close at its last microsecond, high and low over every state between.

"The book at t" is `dedup._replay`'s (the latest snapshot plus the deltas after it), whose states come at strictly
increasing times. A change is a state whose levels differ from the one before. tests/test_derive.py
rebuilds all three the slow way from the raw rows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from core.tables import DOLLAR
from dedup._replay import BookState, Levels

SECOND_US = 1_000_000
MINUTE_US = 60_000_000
DEPTH = 10
LOOKBACK_US = 3 * SECOND_US  # a day's replay starts here before it: book_1s at the first second looks 2 s back
BOOK_TABLES = ("bbo", "book_1s", "bars_1m")

Best = tuple[int | None, int | None, int | None, int | None]  # YES bid price, size; NO bid price, size
Gaps = list[tuple[int, int]]
Trade = tuple[int, int, int]  # (exchange ts, YES price, count), in (ts, trade id) order


def best_of(yes: Levels, no: Levels) -> Best:
    y = max(yes) if yes else None
    n = max(no) if no else None
    return (y, None if y is None else yes[y], n, None if n is None else no[n])


def top(levels: Levels) -> tuple[list[int], list[int]]:
    prices = sorted(levels, reverse=True)[:DEPTH]
    return prices, [levels[p] for p in prices]


def _overlaps(gaps: Gaps, lo: int, hi: int) -> bool:
    return bool(gaps) and any(f < hi and to > lo for f, to in gaps)


def _inside(gaps: Gaps, t: int) -> bool:
    return bool(gaps) and any(f <= t < to for f, to in gaps)


@dataclass
class _Bar:
    minute: int
    end: int
    open: Best
    high_bid: int | None = None
    low_bid: int | None = None
    high_ask: int | None = None
    low_ask: int | None = None
    trades: list[Trade] = field(default_factory=list)

    def see(self, best: Best) -> None:
        bid, ask = best[0], None if best[2] is None else DOLLAR - best[2]
        if bid is not None:
            self.high_bid = bid if self.high_bid is None else max(self.high_bid, bid)
            self.low_bid = bid if self.low_bid is None else min(self.low_bid, bid)
        if ask is not None:
            self.high_ask = ask if self.high_ask is None else max(self.high_ask, ask)
            self.low_ask = ask if self.low_ask is None else min(self.low_ask, ask)


_NONE: Best = (None, None, None, None)


class MarketDay:
    """The three tables' rows of one market over [lo, hi), fed its book states from lo - LOOKBACK_US on (one
    BookState updated in place will do: what it keeps, it copies) and its trades of [lo, hi), merged in time order
    (`run`)."""

    def __init__(self, market: str, lo: int, hi: int, book_gaps: Gaps, trade_gaps: Gaps) -> None:
        self.market, self.lo, self.hi = market, lo, hi
        self.book_gaps, self.trade_gaps = book_gaps, trade_gaps
        self.bbo: list[tuple[object, ...]] = []
        self.book_1s: list[tuple[object, ...]] = []
        self.bars: list[tuple[object, ...]] = []
        self._yes: Levels | None = None  # the book holding now (None: none yet)
        self._no: Levels = {}
        self._best: Best = _NONE
        self._top: tuple[list[int], list[int], list[int], list[int]] | None = None
        self._seconds: deque[int] = deque()  # whole seconds whose row waits for the book at them
        self._bar: _Bar | None = None

    def run(self, states: Iterable[BookState], trades: Iterable[Trade]) -> MarketDay:
        book = iter(states)
        trade_iter = iter(trades)
        s, t = next(book, None), next(trade_iter, None)
        while s is not None or t is not None:
            if t is None or (s is not None and s.at_us <= t[0]):  # a state before a trade of the same time
                assert s is not None
                self._state(s)
                s = next(book, None)
            else:
                self._trade(t)
                t = next(trade_iter, None)
        self._advance(self.hi)
        return self

    def _advance(self, t: int) -> None:
        """Everything that ends before t: the seconds before it, a minute that ended."""
        while self._seconds and self._seconds[0] < t:
            second = self._seconds.popleft()
            if self._top is None:  # the top levels of the book holding now, once per change
                yes, no = top(self._yes or {}), top(self._no)
                self._top = (yes[0], yes[1], no[0], no[1])
            self.book_1s.append((self.market, second, *self._top, _inside(self.book_gaps, second)))
        if self._bar is not None and t >= self._bar.end:
            self._close_bar()

    def _open_bar(self, at: int, open_best: Best) -> _Bar:
        minute = at - at % MINUTE_US
        if self._bar is None or self._bar.minute != minute:
            self._bar = _Bar(minute, min(minute + MINUTE_US, self.hi), open_best)
            self._bar.see(open_best)
        return self._bar

    def _close_bar(self) -> None:
        bar, close = self._bar, self._best
        assert bar is not None
        self._bar = None
        o, c = bar.open, close
        ask_o = None if o[2] is None else DOLLAR - o[2]
        ask_c = None if c[2] is None else DOLLAR - c[2]
        prices = [p for _, p, _ in bar.trades]
        mid = None if c[0] is None or ask_c is None else (c[0] + ask_c) * 5  # 1e-6 USD: half a price unit exact
        self.bars.append((
            self.market, bar.minute, o[0], bar.high_bid, bar.low_bid, c[0], ask_o, bar.high_ask, bar.low_ask, ask_c,
            prices[0] if prices else None, max(prices) if prices else None, min(prices) if prices else None,
            prices[-1] if prices else None, len(prices), sum(n for _, _, n in bar.trades),
            sum(p * n for _, p, n in bar.trades), mid,
            _overlaps(self.book_gaps, bar.minute, bar.end), _overlaps(self.trade_gaps, bar.minute, bar.end),
        ))  # fmt: skip

    def _state(self, s: BookState) -> None:
        t = s.at_us
        self._advance(t)
        if self._yes is not None and s.yes == self._yes and s.no == self._no:
            return  # no change
        before = self._best
        self._yes, self._no = dict(s.yes), dict(s.no)
        self._best, self._top = best_of(self._yes, self._no), None
        first = t + (-t % SECOND_US)  # the seconds whose 2-second window holds t
        for second in (first, first + SECOND_US):
            if self.lo <= second < self.hi and (not self._seconds or self._seconds[-1] < second):
                self._seconds.append(second)
        if t < self.lo:
            return
        if self._best != before:
            y, ys, n, ns = self._best
            self.bbo.append((self.market, t, y, ys, n, ns, _inside(self.book_gaps, t)))
        # a minute's open is the book at its first instant: this state's if it changed just then
        bar = self._open_bar(t, self._best if t % MINUTE_US == 0 else before)
        bar.see(self._best)

    def _trade(self, trade: Trade) -> None:
        self._advance(trade[0])
        self._open_bar(trade[0], self._best).trades.append(trade)


def derive(
    market: str,
    states: Iterable[BookState],
    trades: Iterable[Trade],
    lo: int,
    hi: int,
    book_gaps: Gaps,
    trade_gaps: Gaps,
    sink: Callable[[str, list[tuple[object, ...]]], None],
) -> None:
    """One market's rows of the three tables over [lo, hi), handed to sink(table, rows)."""
    day = MarketDay(market, lo, hi, book_gaps, trade_gaps).run(states, trades)
    sink("bbo", day.bbo)
    sink("book_1s", day.book_1s)
    sink("bars_1m", day.bars)
