"""The common data frames (orderbook deltas, tickers, trades) decoded straight into typed structs (msgspec).

Nine frames in ten take this path: one decode validates the envelope and the types of the fields the router
reads, with no dict built per frame. A frame it does not take (another type, a control frame, a value of an
unexpected type) goes to the general path (`router._frames`), which decides; a struct whose values do not
convert goes there too (`general`), so both paths give the same record or the same dead letter
(tests/test_router_fast.py holds them to it on a large mixed corpus).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from core import metrics
from core.conversions import INT8_MAX, PRICE_SCALE, TS_US_MAX, bounded_int, price_value, qty_value, ts_value
from core.records import OrderbookDelta, Ticker, Trade
from router._occurrence import Occurrences

# A record built in C: a NamedTuple's own __new__ is a Python function, 5 % of a frame's instructions here
# (callgrind). It skips the arity check; tests/test_router_fast.py holds each record equal to the general path's.
_new = tuple.__new__

SID_MAX = 2**31 - 1  # an int4 column
TS_MS_MAX = TS_US_MAX // 1_000
# orjson, the general path, reads a JSON integer past 64 bits as a float, where msgspec keeps an int: a value
# outside int64 takes the general path, to be judged the same
Int = Annotated[int, Meta(ge=-(2**63), le=INT8_MAX)]
Sid = Annotated[int, Meta(ge=0, le=SID_MAX)]
Seq = Annotated[int, Meta(ge=0, le=INT8_MAX)]
Side = Literal["yes", "no"]
# A current-generation field: UNSET when its key is absent (then the legacy twin counts), None when null.
Current = str | None | UnsetType


class DeltaMsg(Struct):
    market_ticker: str
    side: Side
    price_dollars: Current = UNSET
    price: Int | None = None
    delta_fp: Current = UNSET
    delta: Int | None = None
    ts_ms: Int | None = None
    ts: Int | str | None = None
    market_id: str | None = None
    client_order_id: str | None = None


class TickerMsg(Struct):
    market_ticker: str
    market_id: str | None = None
    price_dollars: Current = UNSET
    price: Int | None = None
    yes_bid_dollars: Current = UNSET
    yes_bid: Int | None = None
    yes_ask_dollars: Current = UNSET
    yes_ask: Int | None = None
    yes_bid_size_fp: Current = UNSET
    yes_bid_size: Int | None = None
    yes_ask_size_fp: Current = UNSET
    yes_ask_size: Int | None = None
    last_trade_size_fp: Current = UNSET
    last_trade_size: Int | None = None
    volume_fp: Current = UNSET
    volume: Int | None = None
    open_interest_fp: Current = UNSET
    open_interest: Int | None = None
    dollar_volume: Int | None = None
    dollar_open_interest: Int | None = None
    ts_ms: Int | None = None
    ts: Int | str | None = None


class TradeMsg(Struct):
    market_ticker: str
    trade_id: str
    yes_price_dollars: Current = UNSET
    yes_price: Int | None = None
    no_price_dollars: Current = UNSET
    no_price: Int | None = None
    count_fp: Current = UNSET
    count: Int | None = None
    taker_outcome_side: Side | None = None
    taker_book_side: str | None = None
    taker_side: Side | None = None
    is_block_trade: bool | None = None
    ts_ms: Int | None = None
    ts: Int | str | None = None


class _FastFrame(Struct):
    """The envelope as `router.Frame` has it: type, sid, seq, id, msg."""

    id: ClassVar[int | None] = None  # data frames answer no command

    def general(self) -> dict[str, Any]:
        """The message as the general path's dict: what was on the wire of the fields read (an absent
        current-generation field stays absent)."""
        msg = self.msg  # type: ignore[attr-defined]
        return {k: v for k in msg.__struct_fields__ if (v := getattr(msg, k)) is not UNSET}


class DeltaFrame(_FastFrame, tag="orderbook_delta", tag_field="type"):
    type: ClassVar[str] = "orderbook_delta"
    sid: Sid
    msg: DeltaMsg
    seq: Seq | None = None
    sending_ts_ms: Int | None = None


class TickerFrame(_FastFrame, tag="ticker", tag_field="type"):
    type: ClassVar[str] = "ticker"
    sid: Sid
    msg: TickerMsg
    seq: Seq | None = None
    sending_ts_ms: Int | None = None


class TradeFrame(_FastFrame, tag="trade", tag_field="type"):
    type: ClassVar[str] = "trade"
    sid: Sid
    msg: TradeMsg
    seq: Seq | None = None
    sending_ts_ms: Int | None = None


FastFrame = DeltaFrame | TickerFrame | TradeFrame
_decoder = msgspec.json.Decoder(FastFrame)
decode_fast = _decoder.decode
NotFast = msgspec.DecodeError  # ValidationError is one too


# ---- the same records as the general path (router._frames), from the structs -------------------------------
# Nothing may change state before the last conversion: a failure goes on to the general path, which must
# find the counters as they were.


def sent_value(ms: Any) -> int | None:
    """sending_ts_ms (unix ms) -> microseconds; None when absent. A value that is no time raises (the general
    path then decides: it keeps the message, with no send time, and counts it)."""
    if ms is None:
        return None
    if type(ms) is int and 0 < ms < TS_MS_MAX:
        return ms * 1_000
    raise ValueError(f"sending_ts_ms {ms!r}")


def time_fallback(mtype: str, received_us: int) -> int:
    """A message with no time (deltas of older documents) takes its receive time, counted in
    kd_router_time_fallbacks_total: kept, though copies from other gatherers then do not collapse."""
    metrics.TIME_FALLBACKS.labels(mtype).inc()
    return received_us


def fast_delta(f: DeltaFrame, received_us: int, gatherer_id: str, occurrences: Occurrences) -> OrderbookDelta:
    m = f.msg
    price = price_value(m.price_dollars, m.price)
    delta = qty_value(m.delta_fp, m.delta)
    if price is None or delta is None:
        raise ValueError("delta without price or quantity")
    ts = ts_value(m.ts_ms, m.ts)
    if ts is None:
        ts = time_fallback("orderbook_delta", received_us)
    side = m.side == "yes"
    market, sid, seq = m.market_ticker, f.sid, f.seq
    sent = sent_value(f.sending_ts_ms)
    occ = occurrences.occurrence(sid, market, ts, (side, price, delta))  # last: it changes state
    return _new(
        OrderbookDelta,
        (
            gatherer_id,
            received_us,
            ts,
            market,
            m.market_id,
            side,
            price,
            delta,
            occ,
            sid,
            seq if seq is not None else 0,
            m.client_order_id,
            sent,
        ),
    )


def fast_ticker(f: TickerFrame, received_us: int, gatherer_id: str, occurrences: Occurrences) -> Ticker:
    m = f.msg
    values = (
        price_value(m.price_dollars, m.price),
        price_value(m.yes_bid_dollars, m.yes_bid),
        price_value(m.yes_ask_dollars, m.yes_ask),
        qty_value(m.yes_bid_size_fp, m.yes_bid_size),
        qty_value(m.yes_ask_size_fp, m.yes_ask_size),
        qty_value(m.last_trade_size_fp, m.last_trade_size),
        qty_value(m.volume_fp, m.volume),
        qty_value(m.open_interest_fp, m.open_interest),
        bounded_int("dollar_volume", m.dollar_volume),
        bounded_int("dollar_open_interest", m.dollar_open_interest),
    )
    ts = ts_value(m.ts_ms, m.ts)
    if ts is None:
        ts = time_fallback("ticker", received_us)
    market = m.market_ticker
    sent = sent_value(f.sending_ts_ms)
    occ = occurrences.occurrence(f.sid, market, ts, values)  # the last thing that can fail is before this
    return _new(Ticker, (gatherer_id, received_us, ts, market, m.market_id, *values, occ, sent))


def fast_trade(f: TradeFrame, received_us: int, gatherer_id: str, occurrences: Occurrences) -> Trade:
    m = f.msg
    yes_price = price_value(m.yes_price_dollars, m.yes_price)
    no_price = price_value(m.no_price_dollars, m.no_price)
    count = qty_value(m.count_fp, m.count)
    if yes_price is None or count is None:
        raise ValueError("trade without price or count")
    ts = ts_value(m.ts_ms, m.ts)
    if ts is None:
        ts = time_fallback("trade", received_us)
    outcome, taker = m.taker_outcome_side, m.taker_side
    sent = sent_value(f.sending_ts_ms)
    return _new(
        Trade,
        (
            gatherer_id,
            received_us,
            ts,
            m.market_ticker,
            m.trade_id,
            yes_price,
            PRICE_SCALE - yes_price if no_price is None else no_price,
            count,
            None if outcome is None else outcome == "yes",
            m.taker_book_side,
            None if taker is None else taker == "yes",
            m.is_block_trade,
            "ws",
            sent,
        ),
    )
