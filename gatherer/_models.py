"""Pydantic models of the REST payloads the gatherer reads, and their conversion to core records.

Models check the identity fields and types at the edge; prices, quantities and times are converted by
core.conversions only (current `*_dollars`/`*_fp` fields preferred, legacy ones as fallback).
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict

from core.conversions import iso_to_us, price_field, qty_field, wire_levels
from core.records import Event, Market, OrderbookSnapshot, Series


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
    tick_size: int | None = None
    result: str | None = None


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
        gatherer_id, received_us, updated, m.ticker, m.event_ticker, m.series_ticker, m.market_type, m.status,
        m.title, _iso(m.open_time), _iso(m.close_time), _iso(m.expiration_time),
        m.tick_size * 1000 if m.tick_size is not None else None,  # tick_size is in cents
        price_field(raw, "yes_bid"), price_field(raw, "yes_ask"), price_field(raw, "last_price"),
        qty_field(raw, "volume"), qty_field(raw, "open_interest"), m.result or None,
        orjson.dumps(raw).decode(),
    )  # fmt: skip


def event_record(raw: dict[str, Any], gatherer_id: str, received_us: int) -> Event:
    e = EventPayload.model_validate(raw)
    slim = {k: v for k, v in raw.items() if k != "markets"}
    return Event(
        gatherer_id, received_us, e.event_ticker, e.series_ticker, e.title, e.sub_title, e.category,
        e.mutually_exclusive, _iso(e.strike_date), orjson.dumps(slim).decode(),
    )  # fmt: skip


def series_record(raw: dict[str, Any], gatherer_id: str, received_us: int) -> Series:
    s = SeriesPayload.model_validate(raw)
    return Series(gatherer_id, received_us, s.ticker, s.title, s.category, s.frequency, orjson.dumps(raw).decode())


def rest_snapshot(body: dict[str, Any], ticker: str, gatherer_id: str, received_us: int) -> OrderbookSnapshot:
    ob = body.get("orderbook") or body.get("orderbook_fp") or {}
    if "yes_dollars" in ob or "no_dollars" in ob:
        yes, no = wire_levels(ob.get("yes_dollars")), wire_levels(ob.get("no_dollars"))
    else:
        yes, no = wire_levels(ob.get("yes")), wire_levels(ob.get("no"))
    return OrderbookSnapshot(gatherer_id, received_us, None, ticker, None, "rest", None, None, yes, no)
