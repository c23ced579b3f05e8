"""JSON shapes of ../shared/kalshi-api.md, field by field, in both generations.

REST emits what Kalshi sends today by default (`*_dollars`/`*_fp` only, none of the fields removed in 2026);
`legacy=True` adds the integer twins and the removed fields (the official SDK 3.2.0 still requires them).
WebSocket emits the current set (`*_dollars`, `*_fp`, `ts_ms`, with `ts` beside it) by default;
`ws_fields="legacy"` the legacy set, `"both"` both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.conversions import price_to_dollars, qty_to_fp, us_to_iso
from simulator._book import CENT, CONTRACT, DOLLAR, Book, MarketState, price_ranges
from simulator._universe import AMENDED, DETERMINED, DISPUTED, FINALIZED, FLOOR_PRICE, Universe


def cents(price: int) -> int:
    """Legacy integer cents (sub-penny prices round down: legacy fields cannot carry them)."""
    return price // CENT


def whole(qty: int) -> int:
    """Legacy integer contracts (fractional quantities round down: legacy fields cannot carry them)."""
    return qty // CONTRACT


def iso_s(s: int) -> str:
    return us_to_iso(s * 1_000_000).replace(".000000Z", "Z")


def market_json(u: Universe, i: int, st: MarketState | None, *, legacy: bool, vocabulary: str) -> dict[str, Any]:
    e = u.event_of(i)
    s = u.series_of_event(e)
    t = u.times(i)
    deci = u.is_deci_cent(i)
    book = st.book if st else None
    yes_bid = (book.best(True) if book else None) or 0
    no_bid = (book.best(False) if book else None) or 0
    yes_ask = DOLLAR - no_bid if no_bid else DOLLAR
    no_ask = DOLLAR - yes_bid if yes_bid else DOLLAR
    last = st.last_price if st else 0
    volume = st.volume if st else 0
    oi = st.open_interest if st else 0
    ybs = book.yes.get(yes_bid, 0) if book and yes_bid else 0
    yas = book.no.get(no_bid, 0) if book and no_bid else 0
    strike = 40 + 5 * (i % 4)
    settled = u.status[i] in (DETERMINED, DISPUTED, AMENDED, FINALIZED)
    result = u.result(i)
    if vocabulary == "sdk" and result == "scalar":
        result = ""  # the official SDK 3.2.0 knows yes, no and "": a scalar market's value is in settlement_value
    m: dict[str, Any] = {
        "ticker": u.market_ticker(i),
        "event_ticker": u.event_ticker(e),
        "series_ticker": u.series_ticker(s),
        "market_type": "scalar" if u.is_scalar(i) else "binary",
        "title": f"Will the value be above {strike}?",
        "subtitle": f"{strike} or above",
        "yes_sub_title": f"{strike} or above",
        "no_sub_title": f"below {strike}",
        "created_time": iso_s(t.created_s),
        "updated_time": us_to_iso(u.updated_us.get(i, max(t.created_s, u.start_s) * 1_000_000)),
        "open_time": iso_s(t.open_s),
        "close_time": iso_s(t.close_s),
        "expected_expiration_time": iso_s(t.expiration_s),
        "expiration_time": iso_s(t.expiration_s),
        "latest_expiration_time": iso_s(t.expiration_s + 7 * 86_400),
        "settlement_timer_seconds": 3600,
        "status": u.status_name(i, vocabulary),
        "result": result,
        "can_close_early": True,
        "expiration_value": str(strike + 1) if settled else "",
        "category": u.category(s),
        "risk_limit_cents": 0,
        "strike_type": "between" if i % 8 == 3 else "greater",
        "floor_strike": strike,
        "rules_primary": f"If the value is above {strike}, the market resolves to Yes.",
        "rules_secondary": "",
        "price_level_structure": "deci_cent" if deci else "linear_cent",
        "price_ranges": price_ranges(deci),
        "settlement_bounds_type": "floor" if u.is_floor(i) else "default",
        "exchange_index": u.exchange_index(i),
        "is_provisional": False,
        "yes_bid_dollars": price_to_dollars(yes_bid),
        "yes_ask_dollars": price_to_dollars(yes_ask),
        "no_bid_dollars": price_to_dollars(no_bid),
        "no_ask_dollars": price_to_dollars(no_ask),
        "last_price_dollars": price_to_dollars(last),
        "previous_yes_bid_dollars": price_to_dollars(yes_bid),
        "previous_yes_ask_dollars": price_to_dollars(yes_ask),
        "previous_price_dollars": price_to_dollars(last),
        "notional_value_dollars": "1.0000",
        "volume_fp": qty_to_fp(volume),
        "volume_24h_fp": qty_to_fp(volume),
        "open_interest_fp": qty_to_fp(oi),
        "yes_bid_size_fp": qty_to_fp(ybs),
        "yes_ask_size_fp": qty_to_fp(yas),
    }
    if u.is_floor(i):
        m["settlement_floor_dollars"] = price_to_dollars(FLOOR_PRICE)
    if settled:
        m["settlement_value_dollars"] = price_to_dollars(u.settlement_value(i))
    if i % 8 == 3:  # a bracket market: the optional cap_strike (kalshi-api.md, Easy to miss)
        m["cap_strike"] = strike + 5
    if u.is_multivariate(i):  # optional fields (kalshi-api.md, Easy to miss)
        m["mve_collection_ticker"] = "KXMVECROSSCATEGORY"
        m["mve_selected_legs"] = [
            {"event_ticker": u.event_ticker(e), "market_ticker": u.market_ticker(e * 4), "side": "yes"}
        ]
    if legacy:  # the integer twins and the fields Kalshi removed in 2026, for clients that still need them
        m.update(
            response_price_units="usd_cent",
            tick_size=1,
            liquidity_dollars="0.0000",
            fractional_trading_enabled=bool(st.fractional) if st else False,
            yes_bid=cents(yes_bid),
            yes_ask=cents(yes_ask),
            no_bid=cents(no_bid),
            no_ask=cents(no_ask),
            last_price=cents(last),
            previous_yes_bid=cents(yes_bid),
            previous_yes_ask=cents(yes_ask),
            previous_price=cents(last),
            notional_value=100,
            liquidity=0,
            volume=whole(volume),
            volume_24h=whole(volume),
            open_interest=whole(oi),
        )
        if settled:
            m["settlement_value"] = u.settlement_value(i) // CENT
    return m


def event_json(u: Universe, e: int) -> dict[str, Any]:
    s = u.series_of_event(e)
    return {
        "event_ticker": u.event_ticker(e),
        "series_ticker": u.series_ticker(s),
        "title": f"{u.series_ticker(s)} value on {u.event_ticker(e).split('-', 1)[1]}",
        "sub_title": u.event_ticker(e).split("-", 1)[1],
        "collateral_return_type": "binary",
        "mutually_exclusive": False,
        "category": u.category(s),
        "strike_date": iso_s(u.times(e * 4).close_s),
        "strike_period": "day",
        "available_on_brokers": False,
        "product_metadata": {},
    }


def series_json(u: Universe, s: int) -> dict[str, Any]:
    t = u.series_ticker(s)
    return {
        "ticker": t,
        "frequency": "daily",
        "title": f"{t} daily",
        "category": u.category(s),
        "tags": [u.category(s).split()[0]],
        "settlement_sources": [{"name": "Simulated source", "url": "https://example.com"}],
        "contract_url": "https://example.com/contract.pdf",
        "contract_terms_url": "https://example.com/terms.pdf",
        "product_metadata": {},
        "fee_type": "quadratic",
        "fee_multiplier": 1,
        "additional_prohibitions": [],
    }


def orderbook_json(book: Book | None, depth: int, *, legacy: bool, shape: int = 0) -> dict[str, Any]:
    """GET /markets/{ticker}/orderbook. `shape` (any int, the server counts requests) picks among the shapes
    Kalshi is seen to send (kalshi-api.md): the object named `orderbook` or `orderbook_fp`, and a side
    without bids as `[]`, `null` or absent."""
    empty = shape % 3
    ob: dict[str, Any] = {}
    for name, yes in (("yes", True), ("no", False)):
        levels = book.levels(yes, depth) if book else []
        if levels or empty == 0:
            ob[f"{name}_dollars"] = [[price_to_dollars(p), qty_to_fp(q)] for p, q in levels]
        elif empty == 1:
            ob[f"{name}_dollars"] = None
        if legacy:
            ob[name] = [[cents(p), whole(q)] for p, q in levels] or None
    return {"orderbook_fp" if shape // 3 % 2 else "orderbook": ob}


def trade_json(row: tuple[Any, ...], *, legacy: bool) -> dict[str, Any]:
    trade_id, ticker, ts_us, yes_price, no_price, count, taker_yes, book_side = row
    side = "yes" if taker_yes else "no"
    t: dict[str, Any] = {
        "trade_id": trade_id,
        "ticker": ticker,
        "yes_price_dollars": price_to_dollars(yes_price),
        "no_price_dollars": price_to_dollars(no_price),
        "count_fp": qty_to_fp(count),
        "taker_outcome_side": side,
        "taker_book_side": book_side,
        "taker_side": side,
        "is_block_trade": False,
        "created_time": us_to_iso(ts_us),
        "ts": ts_us // 1_000_000,
    }
    if legacy:
        t.update(price=cents(yes_price), yes_price=cents(yes_price), no_price=cents(no_price), count=whole(count))
    return t


# ---- WebSocket message bodies (the "msg" object) ---------------------------------------------------------


def ws_snapshot(ticker: str, market_id: str, book: Book, ws_fields: str) -> dict[str, Any]:
    msg: dict[str, Any] = {"market_ticker": ticker, "market_id": market_id}
    for name, yes in (("yes", True), ("no", False)):
        levels = book.levels(yes)
        if ws_fields in ("current", "both"):
            msg[f"{name}_dollars_fp"] = [[price_to_dollars(p), qty_to_fp(q)] for p, q in levels]
        if ws_fields in ("legacy", "both") and levels:
            msg[name] = [[cents(p), whole(q)] for p, q in levels]
    return msg


def ws_delta(
    ticker: str,
    market_id: str,
    yes: bool,
    price: int,
    delta: int,
    ts_us: int,
    ws_fields: str,
    ts_beside: bool = False,
) -> dict[str, Any]:
    msg: dict[str, Any] = {"market_ticker": ticker, "market_id": market_id, "side": "yes" if yes else "no"}
    if ws_fields in ("current", "both"):
        msg["price_dollars"] = price_to_dollars(price)
        msg["delta_fp"] = ("-" if delta < 0 else "") + qty_to_fp(abs(delta))
        msg["ts_ms"] = ts_us // 1000
        if ts_beside:
            msg["ts"] = us_to_iso(ts_us - ts_us % 1000)  # deltas' `ts` is ISO-8601 on the live wire
    if ws_fields in ("legacy", "both"):
        msg["price"] = cents(price)
        msg["delta"] = delta // CONTRACT if delta >= 0 else -(-delta // CONTRACT)
        msg["ts"] = us_to_iso(ts_us)
    return msg


def ws_trade(row: tuple[Any, ...], ws_fields: str, ts_beside: bool = False) -> dict[str, Any]:
    trade_id, ticker, ts_us, yes_price, no_price, count, taker_yes, book_side = row
    side = "yes" if taker_yes else "no"
    msg: dict[str, Any] = {
        "trade_id": trade_id,
        "market_ticker": ticker,
        "taker_outcome_side": side,
        "taker_book_side": book_side,
        "taker_side": side,
    }
    if ws_fields in ("current", "both"):
        msg.update(
            yes_price_dollars=price_to_dollars(yes_price),
            no_price_dollars=price_to_dollars(no_price),
            count_fp=qty_to_fp(count),
            ts_ms=ts_us // 1000,
        )
        if ts_beside:
            msg["ts"] = ts_us // 1_000_000
    if ws_fields in ("legacy", "both"):
        msg.update(yes_price=cents(yes_price), no_price=cents(no_price), count=whole(count), ts=ts_us // 1_000_000)
    return msg


def ws_ticker(
    row: tuple[Any, ...], market_id: str, ws_fields: str, ts_beside: bool = False, partial: bool = False
) -> dict[str, Any]:
    """A ticker; price None is an untraded market: `"price": 0, "price_dollars": ""` as Kalshi sends it.
    `partial`: the message carries only the fields that changed, and a None value is a field left out."""
    (ticker, ts_us, price, yes_bid, yes_ask, ybs, yas, lts, volume, oi, dvol, doi) = row
    msg: dict[str, Any] = {"market_ticker": ticker, "market_id": market_id}
    if price is None and not partial:
        msg["price"] = 0
    if ws_fields in ("current", "both"):
        fields: dict[str, Any] = {
            "price_dollars": ("" if not partial else None) if price is None else price_to_dollars(price),
            "yes_bid_dollars": _maybe(price_to_dollars, yes_bid),
            "yes_ask_dollars": _maybe(price_to_dollars, yes_ask),
            "yes_bid_size_fp": _maybe(qty_to_fp, ybs),
            "yes_ask_size_fp": _maybe(qty_to_fp, yas),
            "last_trade_size_fp": _maybe(qty_to_fp, lts),
            "volume_fp": _maybe(qty_to_fp, volume),
            "open_interest_fp": _maybe(qty_to_fp, oi),
            "dollar_volume": dvol,
            "dollar_open_interest": doi,
        }
        _put_present(msg, fields)
        msg["ts_ms"] = ts_us // 1000
        if ts_beside:
            msg["ts"] = ts_us // 1_000_000
    if ws_fields in ("legacy", "both"):
        legacy: dict[str, Any] = {
            "price": (None if partial else 0) if price is None else cents(price),
            "yes_bid": _maybe(cents, yes_bid),
            "yes_ask": _maybe(cents, yes_ask),
            "volume": _maybe(whole, volume),
            "open_interest": _maybe(whole, oi),
            "dollar_volume": dvol,
            "dollar_open_interest": doi,
        }
        _put_present(msg, legacy)
        msg["ts"] = ts_us // 1_000_000
    return msg


def _maybe(convert: Callable[[int], Any], value: int | None) -> Any:
    return None if value is None else convert(value)


def _put_present(msg: dict[str, Any], fields: dict[str, Any]) -> None:
    """Only a partial ticker has None values (its unchanged fields): they stay out of the message."""
    msg.update((k, v) for k, v in fields.items() if v is not None)


def ws_lifecycle(row: tuple[Any, ...], metadata: dict[str, Any] | None) -> dict[str, Any]:
    ticker, event_type, open_us, close_us, det_us, settled_us, result, is_deactivated = row
    msg: dict[str, Any] = {"market_ticker": ticker, "event_type": event_type}
    for key, us in (
        ("open_ts", open_us),
        ("close_ts", close_us),
        ("determination_ts", det_us),
        ("settled_ts", settled_us),
    ):
        if us is not None:
            msg[key] = us // 1_000_000
    if result is not None:
        msg["result"] = result
    if is_deactivated is not None:
        msg["is_deactivated"] = is_deactivated
    if metadata:
        msg["additional_metadata"] = metadata
    return msg
