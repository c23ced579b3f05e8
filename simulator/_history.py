"""The simulator's past: markets listed, traded and settled on the days before the run, their trades and their
one-minute candlesticks (computed from those trades), and the cutoff that splits what the live endpoints serve
from what only `/historical/*` serves (kalshi-api.md, "History").

Every past event belongs to an existing series (`{series}-P{yymmdd}`), opened an hour into its day and closed an
hour before its end, settled half an hour after its close (finalized, with a result). Everything is a function
of the seed and the run's start, so two simulators with the same options have the same past. The trades and the
candles go to the ledger ('trade' and 'candle'), so a comparison of production with the ledger covers them.
"""

from __future__ import annotations

import uuid
from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from simulator._book import DOLLAR
from simulator._ledger import Ledger
from simulator._universe import DAY_S, Universe, _h

MARKETS_PER_PAST_EVENT = 2
MINUTE_US = 60_000_000
CENT = 1_000  # price units (1e-5 USD) in a cent
MICRO = 10  # candle units (1e-6 USD) per price unit
SETTLE_AFTER_CLOSE_S = 1_800


@dataclass(frozen=True)
class PastMarket:
    ticker: str
    event_ticker: str
    series: int  # the universe's series index
    strike: int
    open_s: int
    close_s: int
    settled_s: int
    result: str  # 'yes' | 'no'

    @property
    def settled_us(self) -> int:
        return self.settled_s * 1_000_000


@dataclass
class Cutoff:
    """GET /historical/cutoff: markets settled before market_settled_us and trades before trades_created_us
    are served by the historical endpoints only."""

    market_settled_us: int
    trades_created_us: int
    orders_updated_us: int


@dataclass
class History:
    universe: Universe
    days: int
    seed: int
    ledger: Ledger
    series_count: int = 12  # how many series had past events (plain ones first)
    trades_per_market: int = 35  # on average (half to one and a half times this)
    markets: list[PastMarket] = field(default_factory=list)
    by_ticker: dict[str, PastMarket] = field(default_factory=dict)
    # per market: trades oldest first, as ledger rows (trade_id, ticker, ts_us, yes, no, count, taker_yes, side)
    trades: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    candles: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)  # ledger 'candle' rows, oldest first
    cutoff: Cutoff = field(init=False)
    every_ts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        today = self.universe.start_s // DAY_S * DAY_S
        # plain series first; a small universe of multivariate series only has a past too (any seed, any size)
        by_kind = sorted(range(self.universe.n_series), key=lambda s: (self.universe.is_mve_series(s), s))
        series = by_kind[: self.series_count]
        for d in range(self.days, 0, -1):
            day_s = today - d * DAY_S
            for s in series:
                self._event(s, day_s)
        # every trade of the past, in time order, before anything live (the REST listing reads the ledger in order)
        every = sorted((r for rows in self.trades.values() for r in rows), key=lambda r: (r[2], r[0]))
        for row in every:
            self.ledger.record("trade", row)
        # the ledger's first trades are these, in this order: a listing finds its time span by bisection
        self.every_ts = [r[2] for r in every]
        for rows in self.candles.values():
            for c in rows:
                self.ledger.record("candle", c)
        # half the past is archived at the start: both endpoints have something to serve
        mid = (today - (self.days * DAY_S) // 2) * 1_000_000
        self.cutoff = Cutoff(mid, mid + 6 * 3_600_000_000, mid)

    def _event(self, s: int, day_s: int) -> None:
        u = self.universe
        code = _yymmdd(day_s)
        event = f"{u.series_ticker(s)}-P{code}"
        for k in range(MARKETS_PER_PAST_EVENT):
            strike = 40 + 5 * k
            ticker = f"{event}-T{strike}"
            h = _h(self.seed, "past", ticker)
            open_s, close_s = day_s + 3_600, day_s + DAY_S - 3_600
            m = PastMarket(
                ticker, event, s, strike, open_s, close_s, close_s + SETTLE_AFTER_CLOSE_S, "yes" if h % 2 else "no"
            )
            self.markets.append(m)
            self.by_ticker[ticker] = m
            self.trades[ticker] = self._trades(m, h)
            self.candles[ticker] = _candles(ticker, self.trades[ticker])

    def _trades(self, m: PastMarket, h: int) -> list[tuple[Any, ...]]:
        n = max(1, self.trades_per_market // 2 + h % (self.trades_per_market + 1))
        span_ms = (m.close_s - m.open_s) * 1_000
        # distinct milliseconds, drawn from the hash (the exchange's times have millisecond resolution)
        times = sorted({_h(self.seed, "pt", m.ticker, j) % span_ms for j in range(n)})
        price = 20 + h % 60  # cents
        rows = []
        for j, t_ms in enumerate(times):
            step = _h(self.seed, "pp", m.ticker, j)
            price = min(99, max(1, price + (step % 7) - 3))
            yes_price = price * CENT
            count = (1 + step % 40) * 100 + (50 if step % 5 == 0 else 0)  # some fractional contracts
            taker_yes = bool(step >> 8 & 1)
            trade_id = str(uuid.UUID(int=_h(self.seed, "tid", m.ticker, j) << 64 | _h(self.seed, "tid2", j), version=4))
            ts_us = (m.open_s * 1_000 + t_ms) * 1_000
            rows.append((trade_id, m.ticker, ts_us, yes_price, DOLLAR - yes_price, count, taker_yes, "ask"))
        return rows

    # ---- what the endpoints serve ---------------------------------------------------------------------------
    def move_cutoff(self, market_settled_us: int | None = None, trades_created_us: int | None = None) -> Cutoff:
        """The cutoffs only move forward (Kalshi archives; it never un-archives)."""
        c = self.cutoff
        if market_settled_us is not None:
            c.market_settled_us = max(c.market_settled_us, market_settled_us)
        if trades_created_us is not None:
            c.trades_created_us = max(c.trades_created_us, trades_created_us)
        c.orders_updated_us = max(c.orders_updated_us, c.trades_created_us)
        return c

    def is_archived(self, m: PastMarket) -> bool:
        return m.settled_us < self.cutoff.market_settled_us

    def listed(self, series: str | None, events: list[str] | None, tickers: list[str] | None) -> list[PastMarket]:
        """Past markets that pass a listing's filters, in listing order, on both sides of the cutoff (a listing
        checks the side as it goes, so its cursor stays valid when the cutoff moves)."""
        out = []
        for m in self.markets:
            if tickers is not None and m.ticker not in tickers:
                continue
            if events is not None and m.event_ticker not in events:
                continue
            if series is not None and self.universe.series_ticker(m.series) != series:
                continue
            out.append(m)
        return out

    def trades_between(self, ticker: str | None, archived: bool) -> list[tuple[Any, ...]]:
        """Past trades (of one market, or all), oldest first, on the side of the trades cutoff asked for."""
        cut = self.cutoff.trades_created_us
        rows = self.trades.get(ticker, []) if ticker else [r for m in self.markets for r in self.trades[m.ticker]]
        return [r for r in rows if (r[2] < cut) == archived]

    def candles_of(self, ticker: str, start_s: int, end_s: int) -> list[tuple[Any, ...]]:
        """One-minute candles whose period ends in [start_s, end_s]."""
        rows = self.candles.get(ticker, [])
        lo = bisect_left([c[2] for c in rows], start_s * 1_000_000)
        return [c for c in rows[lo:] if c[2] <= end_s * 1_000_000]


def _yymmdd(day_s: int) -> str:
    return datetime.fromtimestamp(day_s, UTC).strftime("%y%m%d")


def _candles(ticker: str, trades: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """One-minute candles of a market's trades, as the ledger's 'candle' rows (the candlesticks table's columns):
    a period only where something traded; the quotes follow the trade price a cent either side; prices in 1e-6
    USD; the mean weighted by contracts, rounded down; open interest as the running sum of contracts."""
    out: list[tuple[Any, ...]] = []
    i, previous, oi = 0, None, 0
    while i < len(trades):
        minute = trades[i][2] // MINUTE_US
        j = i
        while j < len(trades) and trades[j][2] // MINUTE_US == minute:
            j += 1
        ps = [t[3] * MICRO for t in trades[i:j]]
        counts = [t[5] for t in trades[i:j]]
        volume = sum(counts)
        oi += volume
        mean = sum(p * c for p, c in zip(ps, counts, strict=True)) // volume
        bids = [max(0, p - CENT * MICRO) for p in ps]
        asks = [min(DOLLAR * MICRO, p + CENT * MICRO) for p in ps]
        end_us = (minute + 1) * MINUTE_US
        out.append((ticker, 1, end_us, *_ohlc(bids), *_ohlc(asks), *_ohlc(ps), mean, previous, volume, oi))
        previous = ps[-1]
        i = j
    return out


def _ohlc(xs: list[int]) -> tuple[int, int, int, int]:
    return xs[0], max(xs), min(xs), xs[-1]
