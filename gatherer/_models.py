"""Pydantic models of the REST payloads the gatherer reads, and their conversion to core records.

Models check the identity fields and types at the edge; prices, quantities and times are converted by
core.conversions only (current `*_dollars`/`*_fp` fields preferred, legacy ones as fallback).
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict

from core.conversions import (
    PRICE_SCALE,
    iso_to_us,
    price_field,
    qty_field,
    seconds_to_us,
    side_to_bool,
    wire_levels,
)
from core.records import Event, Market, OrderbookSnapshot, Series, Trade


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class MarketPayload(_Payload):
    ticker: str
    event_ticker: str
    status: str
    series_ticker: str | None = None
    market_type: str | None = None
    title: str | None = None
    open_time: str | None = None
    close_time: str | None = None
    expiration_time: str | None = None
    updated_time: str | None = None
    result: str | None = None
    settlement_bounds_type: str | None = None
    price_level_structure: str | None = None
    price_ranges: list[dict[str, Any]] | None = None
    exchange_index: int | None = None


class EventPayload(_Payload):
    event_ticker: str
    series_ticker: str | None = None
    title: str | None = None
    sub_title: str | None = None
    category: str | None = None
    mutually_exclusive: bool | None = None
    strike_date: str | None = None


class SeriesPayload(_Payload):
    ticker: str
    title: str | None = None
    category: str | None = None
    frequency: str | None = None


def _iso(v: str | None) -> int | None:
    return iso_to_us(v) if v else None


def market_record(raw: dict[str, Any], gatherer_id: str, received_us: int) -> Market:
    m = MarketPayload.model_validate(raw)
    updated = _iso(m.updated_time) or received_us
    return Market(
        gatherer_id=gatherer_id,
        received_us=received_us,
        updated_us=updated,
        ticker=m.ticker,
        event_ticker=m.event_ticker,
        series_ticker=m.series_ticker,
        market_type=m.market_type,
        status=m.status,
        title=m.title,
        open_time_us=_iso(m.open_time),
        close_time_us=_iso(m.close_time),
        expiration_time_us=_iso(m.expiration_time),
        tick_size=None,  # removed from Kalshi's market object on 2026-05-07
        yes_bid=price_field(raw, "yes_bid"),
        yes_ask=price_field(raw, "yes_ask"),
        last_price=price_field(raw, "last_price"),
        volume=qty_field(raw, "volume"),
        open_interest=qty_field(raw, "open_interest"),
        result=m.result or None,
        raw_json=orjson.dumps(raw).decode(),
        settlement_bounds_type=m.settlement_bounds_type,
        settlement_floor=price_field(raw, "settlement_floor"),
        price_level_structure=m.price_level_structure,
        price_ranges_json=None if m.price_ranges is None else orjson.dumps(m.price_ranges).decode(),
        exchange_index=m.exchange_index,
        settlement_value=price_field(raw, "settlement_value"),
    )


def event_record(raw: dict[str, Any], gatherer_id: str, received_us: int) -> Event:
    e = EventPayload.model_validate(raw)
    slim = {k: v for k, v in raw.items() if k != "markets"}
    return Event(
        gatherer_id=gatherer_id,
        received_us=received_us,
        event_ticker=e.event_ticker,
        series_ticker=e.series_ticker,
        title=e.title,
        sub_title=e.sub_title,
        category=e.category,
        mutually_exclusive=e.mutually_exclusive,
        strike_date_us=_iso(e.strike_date),
        raw_json=orjson.dumps(slim).decode(),
    )


def series_record(raw: dict[str, Any], gatherer_id: str, received_us: int) -> Series:
    s = SeriesPayload.model_validate(raw)
    return Series(
        gatherer_id=gatherer_id,
        received_us=received_us,
        ticker=s.ticker,
        title=s.title,
        category=s.category,
        frequency=s.frequency,
        raw_json=orjson.dumps(raw).decode(),
    )


def rest_snapshot(body: dict[str, Any], ticker: str, gatherer_id: str, received_us: int) -> OrderbookSnapshot:
    ob = body.get("orderbook") or body.get("orderbook_fp") or {}
    if "yes_dollars" in ob or "no_dollars" in ob:
        yes, no = wire_levels(ob.get("yes_dollars")), wire_levels(ob.get("no_dollars"))
    else:
        yes, no = wire_levels(ob.get("yes")), wire_levels(ob.get("no"))
    return OrderbookSnapshot(
        gatherer_id=gatherer_id,
        received_us=received_us,
        exchange_ts_us=None,
        market_ticker=ticker,
        market_id=None,
        source="rest",
        sid=None,
        seq=None,
        yes_bids=yes,
        no_bids=no,
    )


class TradePayload(_Payload):
    trade_id: str
    ticker: str
    created_time: str | None = None
    ts: int | None = None
    taker_outcome_side: str | None = None
    taker_book_side: str | None = None
    taker_side: str | None = None
    is_block_trade: bool | None = None


def rest_trade(raw: dict[str, Any], gatherer_id: str, received_us: int) -> Trade:
    """A trade of GET /markets/trades as the record the WebSocket's copy of it makes (source 'rest').

    The WebSocket stamps a trade in whole milliseconds (ts_ms); `created_time` may carry microseconds, so it
    is cut to the millisecond: both copies then have the same (trade_id, exchange_ts_us) and are one row."""
    t = TradePayload.model_validate(raw)
    if t.created_time:
        ts = iso_to_us(t.created_time) // 1000 * 1000
    elif t.ts is not None:
        ts = seconds_to_us(t.ts)
    else:
        raise ValueError(f"trade {t.trade_id}: neither created_time nor ts")
    yes = price_field(raw, "yes_price")
    count = qty_field(raw, "count")
    if yes is None or count is None:
        raise ValueError(f"trade {t.trade_id}: no price or count")
    no = price_field(raw, "no_price")
    return Trade(
        gatherer_id=gatherer_id,
        received_us=received_us,
        exchange_ts_us=ts,
        market_ticker=t.ticker,
        trade_id=t.trade_id,
        yes_price=yes,
        no_price=no if no is not None else PRICE_SCALE - yes,
        count=count,
        taker_outcome_side=side_to_bool(t.taker_outcome_side) if t.taker_outcome_side else None,
        taker_book_side=t.taker_book_side,
        taker_side=side_to_bool(t.taker_side) if t.taker_side else None,
        is_block_trade=t.is_block_trade,
        source="rest",
    )
