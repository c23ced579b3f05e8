"""JSON shapes of the simulator's past (kalshi-api.md, "History"): a settled market and its event as today's
objects, and a candle as the live endpoints' Candle or the historical endpoint's HistoricalCandle."""

from __future__ import annotations

from typing import Any

from core.conversions import candle_to_dollars, price_to_dollars, qty_to_fp
from simulator._book import DOLLAR, price_ranges
from simulator._history import PastMarket
from simulator._universe import Universe
from simulator._wire import iso_s


def past_market_json(u: Universe, m: PastMarket) -> dict[str, Any]:
    """A settled market of the simulator's past: today's Market object."""
    s = m.series
    value = DOLLAR if m.result == "yes" else 0
    return {
        "ticker": m.ticker,
        "event_ticker": m.event_ticker,
        "series_ticker": u.series_ticker(s),
        "market_type": "binary",
        "title": f"Will the value be above {m.strike}?",
        "subtitle": f"{m.strike} or above",
        "yes_sub_title": f"{m.strike} or above",
        "no_sub_title": f"below {m.strike}",
        "created_time": iso_s(m.open_s - 3_600),
        "updated_time": iso_s(m.settled_s),
        "open_time": iso_s(m.open_s),
        "close_time": iso_s(m.close_s),
        "expected_expiration_time": iso_s(m.close_s),
        "expiration_time": iso_s(m.close_s),
        "latest_expiration_time": iso_s(m.close_s + 7 * 86_400),
        "settlement_timer_seconds": m.settled_s - m.close_s,
        "status": "finalized",
        "result": m.result,
        "can_close_early": True,
        "expiration_value": str(m.strike + 1),
        "category": u.category(s),
        "risk_limit_cents": 0,
        "strike_type": "greater",
        "floor_strike": m.strike,
        "rules_primary": f"If the value is above {m.strike}, the market resolves to Yes.",
        "rules_secondary": "",
        "price_level_structure": "linear_cent",
        "price_ranges": price_ranges(False),
        "settlement_bounds_type": "default",
        "exchange_index": 0,
        "is_provisional": False,
        "yes_bid_dollars": "0.0000",
        "yes_ask_dollars": "1.0000",
        "no_bid_dollars": "0.0000",
        "no_ask_dollars": "1.0000",
        "last_price_dollars": price_to_dollars(value),
        "notional_value_dollars": "1.0000",
        "volume_fp": "0.00",
        "volume_24h_fp": "0.00",
        "open_interest_fp": "0.00",
        "settlement_value_dollars": price_to_dollars(value),
    }


def candle_json(row: tuple[Any, ...], *, historical: bool) -> dict[str, Any]:
    """A ledger 'candle' row as the live endpoints' Candle or the historical endpoint's HistoricalCandle (their
    field names differ, kalshi-api.md)."""
    _t, _period, end_us, *prices, volume, oi = row
    bid, ask, price = prices[0:4], prices[4:8], prices[8:14]
    money = [None if v is None else candle_to_dollars(v) for v in price]
    if historical:
        ohlc = ("open", "high", "low", "close")
        return {
            "end_period_ts": end_us // 1_000_000,
            "yes_bid": dict(zip(("open", "high", "low", "close"), map(candle_to_dollars, bid), strict=True)),
            "yes_ask": dict(zip(ohlc, map(candle_to_dollars, ask), strict=True)),
            "price": dict(zip((*ohlc, "mean", "previous"), money, strict=True)),
            "volume": qty_to_fp(volume),
            "open_interest": qty_to_fp(oi),
        }
    ohlc = ("open_dollars", "high_dollars", "low_dollars", "close_dollars")
    price_obj = dict(zip((*ohlc, "mean_dollars", "previous_dollars"), money, strict=True))
    price_obj["min_dollars"], price_obj["max_dollars"] = money[2], money[1]
    return {
        "end_period_ts": end_us // 1_000_000,
        "yes_bid": dict(zip(ohlc, map(candle_to_dollars, bid), strict=True)),
        "yes_ask": dict(zip(ohlc, map(candle_to_dollars, ask), strict=True)),
        "price": price_obj,
        "volume_fp": qty_to_fp(volume),
        "open_interest_fp": qty_to_fp(oi),
    }


def past_event_json(u: Universe, m: PastMarket) -> dict[str, Any]:
    """The event of a past market."""
    code = m.event_ticker.split("-", 1)[1]
    return {
        "event_ticker": m.event_ticker,
        "series_ticker": u.series_ticker(m.series),
        "title": f"{u.series_ticker(m.series)} value on {code}",
        "sub_title": code,
        "collateral_return_type": "binary",
        "mutually_exclusive": False,
        "category": u.category(m.series),
        "strike_date": iso_s(m.close_s),
        "strike_period": "day",
        "product_metadata": {},
    }
