"""Kalshi's candlesticks as rows of production's `candlesticks` table: the live and batch endpoints' Candle and
the historical endpoint's HistoricalCandle (their field names differ, kalshi-api.md "History"), prices exactly in
millionths of a dollar, quantities in hundredths of a contract."""

from __future__ import annotations

from typing import Any

from core.conversions import ConversionError, dollars_to_candle, fp_to_qty

_OHLC = ("open", "high", "low", "close")


def candle_row(raw: dict[str, Any], ticker: str, period_minutes: int, source: str, received_us: int) -> tuple[Any, ...]:
    """One candle as a row in the table's column order. Raises ConversionError on a value that is not one."""
    historical = source == "historical"
    suffix = "" if historical else "_dollars"
    end = raw.get("end_period_ts")
    if not isinstance(end, int) or isinstance(end, bool):
        raise ConversionError("end_period_ts", end, "expected unix seconds")
    quotes: list[int | None] = []
    for side in ("yes_bid", "yes_ask"):
        obj = raw.get(side) or {}
        quotes.extend(dollars_to_candle(obj.get(f"{p}{suffix}")) for p in _OHLC)
    price = raw.get("price") or {}
    prices = [dollars_to_candle(price.get(f"{p}{suffix}")) for p in (*_OHLC, "mean", "previous")]
    volume = raw.get("volume" if historical else "volume_fp")
    oi = raw.get("open_interest" if historical else "open_interest_fp")
    return (
        ticker,
        period_minutes,
        end * 1_000_000,
        *quotes,
        *prices,
        None if volume is None else fp_to_qty(volume),
        None if oi is None else fp_to_qty(oi),
        source,
        received_us,
    )
