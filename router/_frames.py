"""Frame parsing and normalisation: one parse per frame, then core records.

`parse` reads the envelope (type, sid, seq, id) so the connection can check `seq` before anything is
normalised: a repeated frame is dropped before it can bump an occurrence counter. The common data frames
decode into typed structs (router._fast); the rest, and any frame those do not take, go through orjson here,
the general path, which also names what is wrong with a frame. `FrameNormaliser` turns a data message into
records, numbering identical messages per subscription (router._occurrence).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from core import metrics
from core.conversions import (
    INT8_MAX,
    PRICE_SCALE,
    ConversionError,
    OutOfRange,
    bounded_int,
    price_field,
    qty_field,
    seconds_to_us,
    side_to_bool,
    ts_field,
    wire_levels,
    wire_ts_to_us,
)
from core.records import (
    EventFeeUpdate,
    EventLifecycle,
    Level,
    LifecycleEvent,
    OrderbookDelta,
    OrderbookSnapshot,
    Record,
    Ticker,
    Trade,
    lifecycle_digest,
)
from router._fast import (
    SID_MAX,
    DeltaFrame,
    FastFrame,
    NotFast,
    TickerFrame,
    decode_fast,
    fast_delta,
    fast_ticker,
    fast_trade,
    sent_value,
    time_fallback,
)
from router._occurrence import Occurrences

# Every message type Kalshi documents on the channels the gatherer subscribes to. event_lifecycle and
# event_fee_update arrive on the market_lifecycle_v2 subscription too; multivariate markets' lifecycle has
# its own channel and type since 2026-03-19.
LIFECYCLE_TYPES = frozenset({"market_lifecycle_v2", "multivariate_market_lifecycle"})
DATA_TYPES = (
    frozenset({"orderbook_snapshot", "orderbook_delta", "ticker", "trade", "event_lifecycle", "event_fee_update"})
    | LIFECYCLE_TYPES
)
CONTROL_TYPES = frozenset({"subscribed", "unsubscribed", "ok", "error"})


class FrameError(Exception):
    """A frame that cannot be routed; `reason` is the dead-letter reason (malformed, unknown_type, bad_value)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class Frame:
    type: str
    sid: int | None
    seq: int | None
    id: int | None
    msg: dict[str, Any]
    sending_ts_ms: Any = None  # as sent (kalshi-api.md: top level, unix ms, optional)


AnyFrame = Frame | FastFrame


def parse(raw: str | bytes) -> AnyFrame:
    """The frame's envelope and message: the common data frames as typed structs (router._fast), anything
    else through the general path, which also decides what is wrong with a frame."""
    # Non-ASCII bytes take the general path: msgspec skips a field it does not read without checking its UTF-8,
    # orjson refuses the frame (a dead letter). Kalshi's data frames are ASCII.
    if raw.isascii():
        try:
            return decode_fast(raw)
        except NotFast:
            pass
    return parse_general(raw)


def parse_general(raw: str | bytes) -> Frame:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FrameError("malformed", str(exc)) from None
    if type(obj) is not dict:
        raise FrameError("malformed", "frame is not a JSON object")
    mtype = obj.get("type")
    sid, seq, msg = obj.get("sid"), obj.get("seq"), obj.get("msg")
    # The common case, a data frame with an integer sid and seq and an object msg, takes one test.
    if (
        type(sid) is int
        and type(seq) is int
        and type(msg) is dict
        and type(mtype) is str
        and mtype in DATA_TYPES
        and 0 <= sid <= SID_MAX
        and 0 <= seq <= INT8_MAX
    ):
        return Frame(mtype, sid, seq, None, msg, obj.get("sending_ts_ms"))
    if not isinstance(mtype, str):
        raise FrameError("malformed", "frame has no type")
    if mtype not in DATA_TYPES and mtype not in CONTROL_TYPES:
        raise FrameError("unknown_type", mtype[:100])
    cid = obj.get("id")
    if msg is None:
        msg = {}
    if not isinstance(msg, dict):
        raise FrameError("malformed", "msg is not an object")
    if mtype in DATA_TYPES and not isinstance(sid, int):
        raise FrameError("malformed", "data frame without an integer sid")
    if seq is not None and not isinstance(seq, int):
        raise FrameError("malformed", "seq is not an integer")
    if (isinstance(sid, int) and not 0 <= sid <= SID_MAX) or (isinstance(seq, int) and not 0 <= seq <= INT8_MAX):
        raise FrameError("out_of_range", f"sid {sid!r} or seq {seq!r} out of range")
    sid_ = sid if isinstance(sid, int) else None
    return Frame(mtype, sid_, seq, cid if isinstance(cid, int) else None, msg, obj.get("sending_ts_ms"))


def _sent(f: Frame) -> int | None:
    """The message's sending_ts_ms in microseconds; one that is no time is counted and left out: the market data
    is what matters, and a send time is only the latency's measure."""
    try:
        return sent_value(f.sending_ts_ms)
    except ValueError:
        metrics.BAD_SENDING_TS.labels(f.type).inc()
        return None


def _snapshot_side(m: dict[str, Any], side: str) -> list[Level]:
    for key in (f"{side}_dollars_fp", f"{side}_dollars", side):
        if key in m:
            return wire_levels(m[key])
    return []


def _required(m: dict[str, Any], key: str) -> Any:
    v = m.get(key)
    if v is None:
        raise FrameError("bad_value", f"missing {key}")
    return v


def _exchange_ts(m: dict[str, Any], mtype: str, received_us: int) -> int:
    """ts_ms, else ts, else the receive time (time_fallback)."""
    ts = ts_field(m)
    return time_fallback(mtype, received_us) if ts is None else ts


def _json_text(v: Any) -> str | None:
    """A field kept as sent: a string as it is, anything else as JSON text."""
    if v is None or isinstance(v, str):
        return v
    return orjson.dumps(v, option=orjson.OPT_SORT_KEYS).decode()


def _opt_str(m: dict[str, Any], key: str) -> str | None:
    v = m.get(key)
    return None if v is None else str(v)


@dataclass
class FrameNormaliser:
    gatherer_id: str
    occurrences: Occurrences = field(default_factory=Occurrences)

    def forget_sid(self, sid: int) -> None:
        self.occurrences.forget_sid(sid)

    def normalise(self, f: AnyFrame, received_us: int) -> Record:
        """One data frame -> one record. Raises FrameError('bad_value') on values that do not convert."""
        if not isinstance(f, Frame):
            gid, occ = self.gatherer_id, self.occurrences
            try:  # the common frames as typed structs; a value that does not convert: the general path decides
                if isinstance(f, DeltaFrame):
                    return fast_delta(f, received_us, gid, occ)
                if isinstance(f, TickerFrame):
                    return fast_ticker(f, received_us, gid, occ)
                return fast_trade(f, received_us, gid, occ)
            except Exception:
                f = Frame(f.type, f.sid, f.seq, None, f.general(), f.sending_ts_ms)
        try:
            if f.type == "orderbook_delta":
                return self._delta(f, received_us)
            return self._normalise(f, received_us)
        except OutOfRange as exc:
            raise FrameError("out_of_range", str(exc)) from None
        except ConversionError as exc:
            raise FrameError("bad_value", str(exc)) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise FrameError("bad_value", f"{type(exc).__name__}: {exc}") from None

    # ---- the general path: any frame parse_general took ----------------------------------------------------
    def _delta(self, f: Frame, received_us: int) -> OrderbookDelta:
        m = f.msg
        sent = _sent(f)
        market = _required(m, "market_ticker")
        side = side_to_bool(m.get("side"))
        price = price_field(m, "price")
        delta = qty_field(m, "delta")
        if price is None or delta is None:
            raise FrameError("bad_value", "delta without price or quantity")
        ts = _exchange_ts(m, "orderbook_delta", received_us)
        sid = f.sid
        assert sid is not None
        occ = self.occurrences.occurrence(sid, market, ts, (side, price, delta))
        seq = f.seq
        # positional: keywords cost a measurable share of the router's CPU
        return OrderbookDelta(
            self.gatherer_id,
            received_us,
            ts,
            market,
            m.get("market_id"),
            side,
            price,
            delta,
            occ,
            sid,
            seq if seq is not None else 0,
            m.get("client_order_id"),
            sent,
        )

    def _normalise(self, f: Frame, received_us: int) -> Record:
        m, gid = f.msg, self.gatherer_id
        t = f.type
        sent = _sent(f)
        if t == "orderbook_snapshot":
            market = _required(m, "market_ticker")
            return OrderbookSnapshot(
                gatherer_id=gid,
                received_us=received_us,
                exchange_ts_us=ts_field(m),
                market_ticker=market,
                market_id=m.get("market_id"),
                source="ws",
                sid=f.sid,
                seq=f.seq,
                yes_bids=_snapshot_side(m, "yes"),
                no_bids=_snapshot_side(m, "no"),
                sent_us=sent,
            )
        if t == "trade":
            yes_price = price_field(m, "yes_price")
            no_price = price_field(m, "no_price")
            count = qty_field(m, "count")
            if yes_price is None or count is None:
                raise FrameError("bad_value", "trade without price or count")
            if no_price is None:
                no_price = PRICE_SCALE - yes_price
            outcome = m.get("taker_outcome_side")
            taker = m.get("taker_side")
            market = _required(m, "market_ticker")
            return Trade(
                gatherer_id=gid,
                received_us=received_us,
                exchange_ts_us=_exchange_ts(m, t, received_us),
                market_ticker=market,
                trade_id=str(_required(m, "trade_id")),
                yes_price=yes_price,
                no_price=no_price,
                count=count,
                taker_outcome_side=side_to_bool(outcome) if outcome is not None else None,
                taker_book_side=m.get("taker_book_side"),
                taker_side=side_to_bool(taker) if taker is not None else None,
                is_block_trade=m.get("is_block_trade"),
                source="ws",
                sent_us=sent,
            )
        if t == "ticker":
            ts, market = _exchange_ts(m, t, received_us), _required(m, "market_ticker")
            values = (
                price_field(m, "price"),
                price_field(m, "yes_bid"),
                price_field(m, "yes_ask"),
                qty_field(m, "yes_bid_size"),
                qty_field(m, "yes_ask_size"),
                qty_field(m, "last_trade_size"),
                qty_field(m, "volume"),
                qty_field(m, "open_interest"),
                bounded_int("dollar_volume", m.get("dollar_volume")),
                bounded_int("dollar_open_interest", m.get("dollar_open_interest")),
            )
            assert f.sid is not None
            occ = self.occurrences.occurrence(f.sid, market, ts, values)
            return Ticker(gid, received_us, ts, market, m.get("market_id"), *values, occ, sent)  # positional: hot path
        if t in LIFECYCLE_TYPES:

            def sec(k: str) -> int | None:
                v = m.get(k)
                return None if v is None else seconds_to_us(v)

            meta = m.get("additional_metadata")
            market = _required(m, "market_ticker")
            deactivated = m.get("is_deactivated")
            ev = LifecycleEvent(
                gatherer_id=gid,
                received_us=received_us,
                market_ticker=market,
                event_type=str(_required(m, "event_type")),
                open_ts_us=sec("open_ts"),
                close_ts_us=sec("close_ts"),
                determination_ts_us=sec("determination_ts"),
                settled_ts_us=sec("settled_ts"),
                result=_opt_str(m, "result"),
                is_deactivated=deactivated if isinstance(deactivated, bool) else None,
                metadata_json=orjson.dumps(meta, option=orjson.OPT_SORT_KEYS).decode() if meta else None,
                exchange_index=_json_text(m.get("exchange_index")),
                price_level_structure=_json_text(m.get("price_level_structure")),
                settlement_value=price_field(m, "settlement_value"),
                sent_us=sent,
            )
            occ = self.occurrences.repeat(f.sid, (market, ev.event_type, lifecycle_digest(ev)), received_us)
            return ev._replace(occurrence=occ) if occ else ev
        raw = orjson.dumps(m, option=orjson.OPT_SORT_KEYS).decode()
        if t == "event_lifecycle":
            strike = m.get("strike_date")
            return EventLifecycle(
                gatherer_id=gid,
                received_us=received_us,
                event_ticker=str(_required(m, "event_ticker")),
                series_ticker=_opt_str(m, "series_ticker"),
                title=_opt_str(m, "title"),
                subtitle=_opt_str(m, "subtitle"),
                collateral_return_type=_opt_str(m, "collateral_return_type"),
                strike_date_us=None if strike in (None, "") else wire_ts_to_us(strike),
                strike_period=_opt_str(m, "strike_period"),
                raw_json=raw,
                occurrence=self.occurrences.repeat(f.sid, (t, raw), received_us),
                sent_us=sent,
            )
        if t == "event_fee_update":
            mult = m.get("fee_multiplier_override")
            if mult is not None and (isinstance(mult, bool) or not isinstance(mult, int | float | str)):
                raise FrameError("bad_value", f"fee_multiplier_override {mult!r}")
            return EventFeeUpdate(
                gatherer_id=gid,
                received_us=received_us,
                event_ticker=str(_required(m, "event_ticker")),
                fee_type_override=_opt_str(m, "fee_type_override"),
                fee_multiplier_override=None if mult is None else (mult if isinstance(mult, str) else _json_text(mult)),
                raw_json=raw,
                occurrence=self.occurrences.repeat(f.sid, (t, raw), received_us),
                sent_us=sent,
            )
        raise FrameError("unknown_type", t)
