"""The exchange engine: moves books, makes trades and tickers, runs market lifecycles, records the ledger
once per event and hands each message to the hub, which fans it out to subscriptions."""

from __future__ import annotations

import random
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from core.conversions import price_to_dollars
from core.records import REPEAT_WINDOW_US
from simulator import _wire
from simulator._book import DOLLAR, MarketState, initial_book, next_ops
from simulator._ledger import Ledger
from simulator._universe import ACTIVE, CLOSED, DETERMINED, FINALIZED, INACTIVE, INITIALIZED, MarketTimes, Universe

# (channel, market ticker, message type, msg JSON): what the hub fans out.
Publish = Callable[[str, str, str, str], None]


@dataclass
class ExchangeOptions:
    seed: int = 1
    markets: int = 2_000
    active: int = 200  # markets with living books
    duplicate_rate: float = 0.03  # share of adds emitted twice in one exchange millisecond
    fractional_every: int = 4  # every 4th hot market trades fractional contracts
    lifecycle_interval_s: float = 1.0  # one lifecycle transition per interval (0 = none)
    ws_fields: str = "current"
    # The live wire's variants (kalshi-api.md, "Easy to miss"), each on its own knob:
    untraded_empty_dollars: bool = True  # an untraded market's ticker: "price": 0, "price_dollars": ""
    ts_beside_ts_ms: bool = True  # trade/ticker/delta messages carry `ts` next to `ts_ms`
    event_lifecycle_rate: float = 0.3  # per lifecycle tick: an event_lifecycle message (both lifecycle channels)
    fee_update_rate: float = 0.1  # per lifecycle tick: an event_fee_update (on market_lifecycle_v2)
    # share of series that are multivariate (KXMVE...): their markets' lifecycle goes to its own channel only
    multivariate_share: float = 0.6
    # share of tickers that carry only the fields that changed since the market's previous ticker
    # ("a ticker message may carry only the fields that changed"); the rest carry every field
    ticker_changed_only_share: float = 0.25


@dataclass
class Exchange:
    opts: ExchangeOptions
    ledger: Ledger
    publish: Publish = field(default=lambda *a: None)
    universe: Universe = field(init=False)
    states: dict[int, MarketState] = field(default_factory=dict)
    hot: list[int] = field(default_factory=list)
    rng: random.Random = field(init=False)
    _occ_ms: int = -1
    _changed_only: int = field(init=False, default=0)  # of 10,000 tickers, how many carry only what changed
    # identical messages in the current millisecond: a delta's (ticker, side, price, qty), a ticker's (ticker, values)
    _occ: dict[tuple[Any, ...], int] = field(default_factory=dict)
    events: int = 0  # exchange events generated (ledger rows of exchange kinds)
    _sent: dict[tuple[Any, ...], list[int]] = field(default_factory=dict)  # lifecycle-like messages: send times
    last_ts_us: int = 0
    initial_markets: int = 0  # the universe's size at the start: markets from here on were created during the run

    def __post_init__(self) -> None:
        o = self.opts
        self.rng = random.Random(o.seed)
        # by a hash of (market, time), not self.rng: a share of 0 leaves every seed's market as it was
        self._changed_only = round(o.ticker_changed_only_share * 10_000)
        self.universe = Universe(
            o.seed, o.markets, int(time.time()), min(o.active, o.markets), mve_share=o.multivariate_share
        )
        self.initial_markets = o.markets
        now_us = self.now_us()
        for i in range(self.universe.hot):
            self._make_hot(i, now_us)

    # ---- time ---------------------------------------------------------------------------------------
    def now_us(self) -> int:
        """Exchange time in whole milliseconds (as Kalshi's ts_ms), never going backwards."""
        t = (time.time_ns() // 1_000_000) * 1000
        self.last_ts_us = max(self.last_ts_us, t)
        return self.last_ts_us

    # ---- state ---------------------------------------------------------------------------------------
    def _make_hot(self, i: int, now_us: int) -> MarketState:
        u = self.universe
        if i in self.states:  # a market already observed (e.g. unopened, empty book) keeps its book
            self.hot.append(i)
            return self.states[i]
        rng = random.Random(f"{self.opts.seed}:book:{i}")
        deci = u.is_deci_cent(i)
        if self.opts.ws_fields == "legacy":
            deci = False  # legacy fields carry whole cents only
        st = MarketState(i, u.market_ticker(i), u.market_id(i), initial_book(rng, deci), deci, self._fractional(i))
        self.states[i] = st
        self.hot.append(i)
        self.ledger.record("book_init", (st.ticker, now_us, dict(st.book.yes), dict(st.book.no)))
        return st

    def _fractional(self, i: int) -> bool:
        return self.opts.ws_fields != "legacy" and i % self.opts.fractional_every == 1

    def state(self, i: int) -> MarketState:
        """The market's state; a market outside the hot set gets a static book the first time it is asked."""
        st = self.states.get(i)
        if st is None:
            now = self.now_us()
            rng = random.Random(f"{self.opts.seed}:book:{i}")
            deci = self.universe.is_deci_cent(i) and self.opts.ws_fields != "legacy"
            book = initial_book(rng, deci)
            if self.universe.status[i] not in (ACTIVE, INACTIVE):
                book.clear()  # unopened and finished markets have no resting orders
            u = self.universe
            st = self.states[i] = MarketState(i, u.market_ticker(i), u.market_id(i), book, deci, self._fractional(i))
            self.ledger.record("book_init", (st.ticker, now, dict(book.yes), dict(book.no)))
        return st

    # ---- one step ------------------------------------------------------------------------------------
    def step(self, now_us: int) -> int:
        """One operation on one hot market at exchange time now_us. Returns exchange events generated."""
        if not self.hot:
            return 0
        i = self.hot[self.rng.randrange(len(self.hot))]
        st = self.states[i]
        ticker, mid = st.ticker, st.market_id
        ms = now_us // 1000
        if ms != self._occ_ms:
            self._occ_ms = ms
            self._occ.clear()
        before = (st.book.best(True), st.book.best(False))
        n = 0
        traded = False
        for op, yes, price, qty in next_ops(self.rng, st, self.opts.duplicate_rate):
            if op == "delta":
                self._delta(st, ticker, mid, yes, price, qty, now_us)
                n += 1
            else:
                n += self._trade(st, ticker, mid, yes, price, qty, now_us)
                traded = True
        if traded or (st.book.best(True), st.book.best(False)) != before:
            self._ticker(st, ticker, mid, now_us)
            n += 1
        self.events += n
        return n

    def _delta(self, st: MarketState, ticker: str, mid: str, yes: bool, price: int, qty: int, now_us: int) -> None:
        st.book.apply(yes, price, qty)
        key = (ticker, yes, price, qty)
        occ = self._occ.get(key, 0)
        self._occ[key] = occ + 1
        self.ledger.record("delta", (ticker, now_us, yes, price, qty, occ))
        body = _wire.ws_delta(ticker, mid, yes, price, qty, now_us, self.opts.ws_fields, self.opts.ts_beside_ts_ms)
        self.publish("orderbook_delta", ticker, "orderbook_delta", orjson.dumps(body).decode())

    def _trade(self, st: MarketState, ticker: str, mid: str, taker_yes: bool, hit: int, count: int, now_us: int) -> int:
        # The taker of YES pays $1 - (NO bid it lifts); the NO bid level loses count.
        yes_price = DOLLAR - hit if taker_yes else hit
        trade_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        row = (trade_id, ticker, now_us, yes_price, DOLLAR - yes_price, count, taker_yes, "ask")
        self.ledger.record("trade", row)
        body = _wire.ws_trade(row, self.opts.ws_fields, self.opts.ts_beside_ts_ms)
        self.publish("trade", ticker, "trade", orjson.dumps(body).decode())
        self._delta(st, ticker, mid, not taker_yes, hit, -count, now_us)
        st.last_price = yes_price
        st.last_trade_size = count
        st.volume += count
        if self.rng.random() < 0.6:
            st.open_interest += count
        else:
            st.open_interest = max(0, st.open_interest - count)
        st.dollar_volume = st.volume * yes_price // DOLLAR // 100  # whole dollars of notional traded
        return 2

    def _ticker(self, st: MarketState, ticker: str, mid: str, now_us: int) -> None:
        b = st.book
        yb, nb = b.best(True) or 0, b.best(False) or 0
        # legacy-only frames carry no dollar string to leave empty: there an untraded market's price is 0
        untraded = self.opts.untraded_empty_dollars and not st.volume and self.opts.ws_fields != "legacy"
        last = st.last_ticker
        row: tuple[Any, ...] = (
            ticker,
            now_us,
            None if untraded else st.last_price,
            yb,
            DOLLAR - nb if nb else DOLLAR,
            b.yes.get(yb, 0),
            b.no.get(nb, 0),
            st.last_trade_size,
            st.volume,
            st.open_interest,
            st.dollar_volume,
            st.open_interest * st.last_price // DOLLAR // 100,
        )
        st.last_ticker = sent = row  # the full state: what the next ticker's changes are measured against
        if last is not None and zlib.crc32(f"{ticker}{now_us}".encode()) % 10_000 < self._changed_only:
            # only what changed: the rest is absent from the message, None in the ledger and NULL when stored
            sent = (*row[:2], *(None if v == was else v for v, was in zip(row[2:], last[2:], strict=True)))
        key = (ticker, sent[2:])  # the same state again within the millisecond is another event
        occ = self._occ.get(key, 0)
        self._occ[key] = occ + 1
        self.ledger.record("ticker", (*sent, occ))
        body = _wire.ws_ticker(sent, mid, self.opts.ws_fields, self.opts.ts_beside_ts_ms, partial=sent is not row)
        self.publish("ticker", ticker, "ticker", orjson.dumps(body).decode())

    # ---- lifecycle -------------------------------------------------------------------------------------
    def _pick(self, codes: set[int], hot_ok: bool = False) -> int | None:
        u = self.universe
        hot = set(self.hot) if not hot_ok else set()
        for _ in range(64):
            i = self.rng.randrange(u.n_markets)
            if u.status[i] in codes and i not in hot:
                return i
        return None

    def lifecycle_step(self, now_us: int) -> str | None:
        """One lifecycle transition, cycling through every kind the reference lists."""
        u = self.universe
        now_s = now_us // 1_000_000
        kind = self.rng.choice(("created", "activated", "deactivated", "close_date_updated", "determined", "settled"))
        i: int | None
        row: tuple[str, str, int | None, int | None, int | None, int | None, str | None, bool | None]
        meta: dict[str, Any] | None = None
        extra: dict[str, Any] = {}
        if kind == "created":
            i = u.add_market(now_s)
            t = u.times(i)
            row = (u.market_ticker(i), kind, t.open_s * 1_000_000, t.close_s * 1_000_000, None, None, None, None)
            meta = {"event_ticker": u.event_ticker(u.event_of(i)), "title": "new market"}
            extra = {"price_level_structure": "linear_cent", "exchange_index": i}
        elif kind == "activated":
            i = self._pick({INITIALIZED, INACTIVE})
            if i is None:
                return None
            was_inactive = u.status[i] == INACTIVE
            self.state(i)  # an unopened market opens with an empty book that fills through deltas
            u.status[i] = ACTIVE
            t = u.times(i)
            u.time_overrides[i] = MarketTimes(t.created_s, now_s, max(t.close_s, now_s + 3600), t.expiration_s)
            row = (
                u.market_ticker(i),
                kind,
                now_s * 1_000_000,
                None,
                None,
                None,
                None,
                False if was_inactive else None,
            )
            if i not in self.states:
                self._make_hot(i, now_us)  # newly opened markets start trading: gatherers must subscribe
        elif kind == "deactivated":
            i = self._pick({ACTIVE})
            if i is None:
                return None
            u.status[i] = INACTIVE
            row = (u.market_ticker(i), kind, None, None, None, None, None, True)
        elif kind == "close_date_updated":
            i = self._pick({ACTIVE})
            if i is None:
                return None
            u.status[i] = CLOSED
            t = u.times(i)
            u.time_overrides[i] = MarketTimes(t.created_s, min(t.open_s, now_s), now_s, now_s + 3600)
            row = (u.market_ticker(i), kind, None, now_s * 1_000_000, None, None, None, None)
        elif kind == "determined":
            i = self._pick({CLOSED})
            if i is None:
                return None
            u.status[i] = DETERMINED
            u.results[i] = "scalar" if u.is_scalar(i) else self.rng.choice(("yes", "no"))
            row = (u.market_ticker(i), kind, None, None, now_s * 1_000_000, None, u.results[i], None)
        else:
            i = self._pick({DETERMINED})
            if i is None:
                return None
            u.status[i] = FINALIZED
            row = (u.market_ticker(i), kind, None, None, None, now_s * 1_000_000, u.result(i), None)
        if kind in ("determined", "settled"):
            extra = {"settlement_value_dollars": price_to_dollars(u.settlement_value(i))}
        settlement = None if "settlement_value_dollars" not in extra else u.settlement_value(i)
        u.touch(i, now_us)
        plevels = extra.get("price_level_structure")
        index = str(extra["exchange_index"]) if "exchange_index" in extra else None
        full = (*row, index, plevels, settlement)
        self.ledger.record("lifecycle", (*full, self._repeat(full, now_us)))
        self.events += 1
        body = orjson.dumps(_wire.ws_lifecycle(row, meta) | extra).decode()
        if u.is_multivariate(i):  # since 2026-03-19 on their own channel only
            self.publish("multivariate_market_lifecycle", row[0], "multivariate_market_lifecycle", body)
        else:
            self.publish("market_lifecycle_v2", row[0], "market_lifecycle_v2", body)
        self._event_messages(i)
        return kind

    def _repeat(self, key: tuple[Any, ...], now_us: int) -> int:
        """Identical messages sent within REPEAT_WINDOW_US before this one (what the platform numbers them by)."""
        times = [t for t in self._sent.get(key, ()) if t > now_us - REPEAT_WINDOW_US]
        self._sent[key] = [*times, now_us]
        return len(times)

    def _event_messages(self, i: int) -> None:
        """Event-level messages on the lifecycle subscriptions: event_lifecycle (on both lifecycle channels,
        as Kalshi sends it) and event_fee_update (on market_lifecycle_v2)."""
        u, o = self.universe, self.opts
        event = u.event_ticker(u.event_of(i))
        if self.rng.random() < o.event_lifecycle_rate:
            msg = {
                "event_ticker": event,
                "series_ticker": event.split("-", 1)[0],
                "title": f"Event {event}",
                "subtitle": f"rev {self.events}",
                "collateral_return_type": "MECNET",
                "strike_date": self.now_us() // 1_000_000 + 86_400,
                "strike_period": "day",
            }
            key = (event, orjson.dumps(msg, option=orjson.OPT_SORT_KEYS).decode())
            self.ledger.record("event_lifecycle", (*key, self._repeat(("event_lifecycle", *key), self.now_us())))
            self.events += 1
            body = orjson.dumps(msg).decode()
            self.publish("market_lifecycle_v2", "", "event_lifecycle", body)  # "": no market, all-market subscribers
            self.publish("multivariate_market_lifecycle", "", "event_lifecycle", body)
        if self.rng.random() < o.fee_update_rate:
            fee = {
                "event_ticker": event,
                "fee_type_override": self.rng.choice(("quadratic", "flat")),
                "fee_multiplier_override": self.rng.choice((1, 0.5, 2)),
            }
            key = (event, orjson.dumps(fee, option=orjson.OPT_SORT_KEYS).decode())
            self.ledger.record("event_fee_update", (*key, self._repeat(("event_fee_update", *key), self.now_us())))
            self.events += 1
            self.publish("market_lifecycle_v2", "", "event_fee_update", orjson.dumps(fee).decode())
