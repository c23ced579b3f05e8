"""Order books and the seeded random process that moves them.

Prices are integer hundred-thousandths of a dollar and quantities integer hundredths of a contract,
the platform's own units, so the ledger compares with the database without conversion. Each side holds
resting bids only (as Kalshi reports them): a YES bid at p and a NO bid at q never cross (p + q < $1).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

DOLLAR = 100_000
CENT = 1_000
DECI_CENT = 100
CONTRACT = 100  # quantity units per contract


def tick_at(price: int, deci_cent: bool) -> int:
    """The tick at a price: 1 cent; 0.1 cent in the tails ($0.00-0.10, $0.90-1.00) of deci-cent markets."""
    if deci_cent and (price < 10 * CENT or price >= 90 * CENT):
        return DECI_CENT
    return CENT


def price_ranges(deci_cent: bool) -> list[dict[str, str]]:
    if not deci_cent:
        return [{"start": "0.0000", "end": "1.0000", "step": "0.0100"}]
    return [
        {"start": "0.0000", "end": "0.1000", "step": "0.0010"},
        {"start": "0.1000", "end": "0.9000", "step": "0.0100"},
        {"start": "0.9000", "end": "1.0000", "step": "0.0010"},
    ]


_RECOMPUTE = -1  # a side's cached best bid is unknown (its best level went away)


@dataclass
class Book:
    """Resting bids per side. Change levels through apply() (or clear()) once best() has been asked:
    the best bid per side is cached, since the exchange asks for it on every step."""

    yes: dict[int, int] = field(default_factory=dict)  # price -> quantity of resting YES bids
    no: dict[int, int] = field(default_factory=dict)
    _best: list[int | None] = field(default_factory=lambda: [_RECOMPUTE, _RECOMPUTE], repr=False, compare=False)

    def side(self, yes: bool) -> dict[int, int]:
        return self.yes if yes else self.no

    def best(self, yes: bool) -> int | None:
        b = self._best[yes]
        if b == _RECOMPUTE:
            s = self.yes if yes else self.no
            b = self._best[yes] = max(s) if s else None
        return b

    def apply(self, yes: bool, price: int, delta: int) -> None:
        s = self.side(yes)
        q = s.get(price, 0) + delta
        if q < 0:
            raise ValueError(f"delta {delta} at {price} would leave {q}")
        if q == 0:
            s.pop(price, None)
            if self._best[yes] == price:
                self._best[yes] = _RECOMPUTE
        else:
            s[price] = q
            b = self._best[yes]
            if b != _RECOMPUTE and (b is None or price > b):
                self._best[yes] = price

    def clear(self) -> None:
        self.yes.clear()
        self.no.clear()
        self._best[:] = [None, None]

    def levels(self, yes: bool, depth: int = 0) -> list[tuple[int, int]]:
        """Bids best first (highest price first)."""
        lv = sorted(self.side(yes).items(), reverse=True)
        return lv[:depth] if depth > 0 else lv

    def copy(self) -> Book:
        return Book(dict(self.yes), dict(self.no))


@dataclass
class MarketState:
    """A market's book plus the ticker statistics derived from its trades."""

    index: int
    ticker: str  # the market's identities, derived once (a blake2b each) rather than per step
    market_id: str
    book: Book
    deci_cent: bool
    fractional: bool
    last_price: int = 0
    volume: int = 0
    open_interest: int = 0
    dollar_volume: int = 0  # whole dollars, as Kalshi's integer dollar_volume
    last_trade_size: int = 0
    last_ticker: tuple[Any, ...] | None = None  # the full state the market's previous ticker stood for


def initial_book(rng: random.Random, deci_cent: bool) -> Book:
    book = Book()
    mid = rng.randrange(15, 86) * CENT
    for k in range(1, 1 + rng.randrange(3, 12)):
        p = mid - k * CENT
        if p > 0:
            book.yes[p] = rng.randrange(1, 500) * CONTRACT
    for k in range(1, 1 + rng.randrange(3, 12)):
        p = DOLLAR - mid - k * CENT
        if p > 0:
            book.no[p] = rng.randrange(1, 500) * CONTRACT
    if deci_cent:  # a few sub-penny levels deep in the tails
        book.yes[rng.randrange(1, 100) * DECI_CENT] = rng.randrange(1, 50) * CONTRACT
    return book


# One step of the process: ("delta", yes, price, delta) or ("trade", taker_yes, price_of_hit_level, count)
Op = tuple[str, bool, int, int]


def next_ops(rng: random.Random, m: MarketState, duplicate_rate: float) -> list[Op]:
    """The operations of one step on one market. All ops of a step share an exchange timestamp."""
    book = m.book
    r = rng.random()
    qty_unit = 1 if m.fractional and rng.random() < 0.2 else CONTRACT  # fractional counts sometimes
    if r < 0.45 or not (book.yes or book.no):
        yes = rng.random() < 0.5
        own_best, other_best = book.best(yes), book.best(not yes)
        ceiling = DOLLAR - (other_best if other_best is not None else 0)  # a bid must stay below the ask
        anchor = own_best if own_best is not None else ceiling - 5 * CENT
        price = anchor - rng.randrange(-1, 8) * tick_at(anchor, m.deci_cent)
        tick = tick_at(price, m.deci_cent)
        price = (price // tick) * tick
        if price <= 0 or price >= ceiling:
            price = min(ceiling - tick, max(tick, anchor))
            if price <= 0 or price >= ceiling:
                return []
        q = rng.randrange(1, 300) * qty_unit
        ops: list[Op] = [("delta", yes, price, q)]
        if rng.random() < duplicate_rate:  # two identical orders in one exchange millisecond
            ops.append(("delta", yes, price, q))
        return ops
    if r < 0.85:
        yes = rng.random() < 0.5
        side = book.side(yes)
        if not side:
            return []
        price = rng.choice(list(side))
        have = side[price]
        # a partial cancel of a whole-contract market cancels whole contracts (a legacy client, which reads
        # integer counts, would otherwise see a book drift from the exchange's)
        unit = 1 if m.fractional else CONTRACT
        q = have if rng.random() < 0.4 else max(unit, have // rng.randrange(2, 6) // unit * unit)
        return [("delta", yes, price, -q)]
    # A taker buying YES lifts the best NO bid (YES ask = $1 - NO bid), and vice versa.
    taker_yes = rng.random() < 0.5
    hit = book.best(not taker_yes)
    if hit is None:
        return []
    have = book.side(not taker_yes)[hit]
    count = min(have, rng.randrange(1, 100) * qty_unit)
    return [("trade", taker_yes, hit, count)]
