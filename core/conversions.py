"""Exact conversions from Kalshi wire values to the platform's integers.

Prices become integer hundred-thousandths of a dollar ("0.4800" -> 48000, 48 cents -> 48000), contract
quantities integer hundredths of a contract ("136.00" -> 13600), times integer microseconds UTC, sides
bools (yes -> True). Nothing passes through a float: a float input is rejected, not rounded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from msgspec import UNSET

PRICE_SCALE = 100_000  # units per dollar: hundred-thousandths
PRICE_DECIMALS = 5
CENT = PRICE_SCALE // 100  # one cent in price units
QTY_SCALE = 100  # units per contract: hundredths
QTY_DECIMALS = 2

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_DECIMAL_RE = re.compile(r"^([+-]?)([0-9]+)(?:\.([0-9]*))?$")  # ASCII digits only: "٣" is not 3
_ISO_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$", re.ASCII)


class ConversionError(ValueError):
    """A wire value that cannot be converted exactly. Carries the offending value."""

    def __init__(self, kind: str, value: object, reason: str) -> None:
        self.kind = kind
        self.value = value
        self.reason = reason
        super().__init__(f"bad {kind} {value!r}: {reason}")


class OutOfRange(ConversionError):
    """A well-formed value no column can hold or no market can have (a price above $1, a time before 1970)."""


# What a stored value may be. Kalshi prices lie in [$0, $1]; quantities fit far inside bigint; exchange
# times lie between 1970 and 2100 (a negative or 20-digit time is a broken frame, not an event).
PRICE_MAX = PRICE_SCALE
QTY_LIMIT = 10**15  # hundredths of a contract: ten trillion contracts
TS_US_MAX = 4_102_444_800_000_000  # 2100-01-01T00:00:00Z
INT8_MAX = 2**63 - 1


def _price_in_range(kind: str, value: object, units: int) -> int:
    if not 0 <= units <= PRICE_MAX:
        raise OutOfRange(kind, value, "a price must lie between $0 and $1")
    return units


def _qty_in_range(kind: str, value: object, units: int) -> int:
    if not -QTY_LIMIT < units < QTY_LIMIT:
        raise OutOfRange(kind, value, "quantity out of range")
    return units


def ts_in_range(kind: str, value: object, us: int) -> int:
    if not 0 <= us < TS_US_MAX:
        raise OutOfRange(kind, value, "time outside 1970-2100")
    return us


def bounded_int(kind: str, value: object, low: int = -INT8_MAX, high: int = INT8_MAX) -> int | None:
    """A plain integer field stored as it is (dollar_volume...): None stays None, anything else must be an
    integer (not a bool) within [low, high]."""
    if value is None:
        return None
    v = _strict_int(kind, value)
    if not low <= v <= high:
        raise OutOfRange(kind, value, "integer out of range")
    return v


def _scaled_decimal(kind: str, value: object, decimals: int, *, signed: bool) -> int:
    """Parse a decimal string into an integer scaled by 10**decimals, exactly."""
    if type(value) is str:  # fast path for the wire's plain form: [-]digits[.digits]
        body = value[1:] if value[:1] == "-" else value
        whole, dot, frac = body.partition(".")
        if (
            whole.isdigit()
            and whole.isascii()
            and len(frac) <= decimals
            and (not dot or (frac.isdigit() and frac.isascii()))
            and (signed or body is value)
        ):
            units = int(whole) * 10**decimals + (int(frac) * 10 ** (decimals - len(frac)) if frac else 0)
            return int(-units if body is not value else units)
    if not isinstance(value, str):
        raise ConversionError(kind, value, f"expected a decimal string, got {type(value).__name__}")
    m = _DECIMAL_RE.match(value.strip())
    if m is None:
        raise ConversionError(kind, value, "not a decimal number")
    sign, whole, frac = m.group(1), m.group(2), m.group(3) or ""
    if sign == "-" and not signed:
        raise ConversionError(kind, value, "negative value not allowed")
    if len(frac) > decimals:
        if frac[decimals:].strip("0"):
            raise ConversionError(kind, value, f"more than {decimals} decimal places")
        frac = frac[:decimals]
    units = int(whole) * 10**decimals + int(frac.ljust(decimals, "0") or "0")
    return int(-units if sign == "-" else units)


def _strict_int(kind: str, value: object) -> int:
    # bool is an int subclass; a JSON true is never a price or a count.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConversionError(kind, value, f"expected an integer, got {type(value).__name__}")
    return value


# Wire values repeat endlessly (a few thousand prices, common sizes): remember their conversions.
_CACHE_LIMIT = 1 << 16
_price_cache: dict[str, int] = {}
_qty_cache: dict[str, int] = {}


def _cached(
    cache: dict[str, int],
    kind: str,
    value: object,
    decimals: int,
    signed: bool,
    in_range: Callable[[str, object, int], int],
) -> int:
    """A checked conversion, remembered per wire string; only values that passed the range check are cached."""
    if type(value) is str:
        hit = cache.get(value)
        if hit is not None:
            return hit
    units = in_range(kind, value, _scaled_decimal(kind, value, decimals, signed=signed))
    if type(value) is str:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[value] = units
    return units


def dollars_to_price(value: object) -> int:
    """'0.5250' -> 52500 (hundred-thousandths of a dollar). Up to 5 significant decimals, $0 to $1."""
    return _cached(_price_cache, "dollar price", value, PRICE_DECIMALS, False, _price_in_range)


CANDLE_SCALE = 1_000_000  # candle prices: millionths of a dollar (Kalshi's candles carry up to 6 decimals)
CANDLE_DECIMALS = 6


def _candle_in_range(kind: str, value: object, units: int) -> int:
    if not 0 <= units <= CANDLE_SCALE:
        raise OutOfRange(kind, value, "a price must lie between $0 and $1")
    return units


def dollars_to_candle(value: object) -> int | None:
    """A candlestick's dollar string ('0.523456') -> millionths of a dollar (523456); None stays None (no trade in
    the period). Candles are the one place prices come finer than the platform's 1e-5 unit (a mean)."""
    if value is None:
        return None
    return _candle_in_range(
        "candle price", value, _scaled_decimal("candle price", value, CANDLE_DECIMALS, signed=False)
    )


def candle_to_dollars(units: int) -> str:
    """523456 -> '0.523456' (the simulator's candles)."""
    whole, frac = divmod(units, CANDLE_SCALE)
    return f"{whole}.{frac:06d}"


def signed_dollars_to_price(value: object) -> int:
    """Like dollars_to_price, for amounts that may be negative (price changes)."""
    return _scaled_decimal("dollar amount", value, PRICE_DECIMALS, signed=True)


def cents_to_price(value: object) -> int:
    """Legacy integer cents (48) -> 48000."""
    return _price_in_range("cent price", value, _strict_int("cent price", value) * CENT)


def fp_to_qty(value: object) -> int:
    """Fixed-point contract string ('136.00', '-54.00', '2.5') -> hundredths (13600, -5400, 250)."""
    return _cached(_qty_cache, "fixed-point quantity", value, QTY_DECIMALS, True, _qty_in_range)


def count_to_qty(value: object) -> int:
    """Legacy integer contract count (136) -> hundredths (13600)."""
    return _qty_in_range("contract count", value, _strict_int("contract count", value) * QTY_SCALE)


def seconds_to_us(value: object) -> int:
    """Unix seconds (integer) -> microseconds, 1970 to 2100."""
    return ts_in_range("unix seconds", value, _strict_int("unix seconds", value) * 1_000_000)


def ms_to_us(value: object) -> int:
    """Unix milliseconds (integer) -> microseconds, 1970 to 2100."""
    return ts_in_range("unix milliseconds", value, _strict_int("unix milliseconds", value) * 1_000)


def iso_to_us(value: object) -> int:
    """ISO-8601 ('2025-11-08T14:36:53.091704Z', offset or Z; naive means UTC) -> unix microseconds."""
    if not isinstance(value, str):
        raise ConversionError("ISO-8601 time", value, f"expected a string, got {type(value).__name__}")
    m = _ISO_RE.match(value.strip())
    if m is None:
        raise ConversionError("ISO-8601 time", value, "not an ISO-8601 date-time")
    date, clock, frac, zone = m.groups()
    frac = frac or ""
    if len(frac) > 6:
        if frac[6:].strip("0"):
            raise ConversionError("ISO-8601 time", value, "finer than a microsecond")
        frac = frac[:6]
    if zone in (None, "Z"):
        zone = "+00:00"
    elif ":" not in zone:
        zone = zone[:3] + ":" + zone[3:]
    try:
        dt = datetime.fromisoformat(f"{date}T{clock}{zone}")
    except ValueError as exc:
        raise ConversionError("ISO-8601 time", value, str(exc)) from None
    return ts_in_range("ISO-8601 time", value, (dt - _EPOCH) // _ONE_US + int(frac.ljust(6, "0") or "0"))


def side_to_bool(value: object) -> bool:
    """'yes' -> True, 'no' -> False."""
    if value == "yes":
        return True
    if value == "no":
        return False
    raise ConversionError("side", value, "expected 'yes' or 'no'")


def bool_to_side(value: bool) -> str:
    return "yes" if value else "no"


# ---- the reverse direction, used by the simulator and by exports ----------------------------------


_dollars_cache: dict[tuple[int, int], str] = {}
_fp_cache: dict[int, str] = {}


def price_to_dollars(units: int, places: int = 4) -> str:
    """48000 -> '0.4800'. Exact: refuses to drop non-zero digits."""
    hit = _dollars_cache.get((units, places))  # the simulator formats every price it sends
    if hit is not None:
        return hit
    if len(_dollars_cache) >= _CACHE_LIMIT:
        _dollars_cache.clear()
    text = _dollars_cache[(units, places)] = _price_to_dollars(units, places)
    return text


def _price_to_dollars(units: int, places: int) -> str:
    sign = "-" if units < 0 else ""
    units = abs(units)
    whole, frac = divmod(units, PRICE_SCALE)
    digits = f"{frac:05d}"
    if digits[places:].strip("0"):
        raise ConversionError("price units", units, f"not representable with {places} decimal places")
    return f"{sign}{whole}.{digits[:places]}" if places else f"{sign}{whole}"


def qty_to_fp(units: int) -> str:
    """13600 -> '136.00', -5400 -> '-54.00'."""
    hit = _fp_cache.get(units)
    if hit is not None:
        return hit
    if len(_fp_cache) >= _CACHE_LIMIT:
        _fp_cache.clear()
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), QTY_SCALE)
    text = _fp_cache[units] = f"{sign}{whole}.{frac:02d}"
    return text


def us_to_iso(us: int) -> str:
    """Unix microseconds -> '2025-11-08T14:36:53.091704Z' (fraction omitted when zero)."""
    dt = _EPOCH + timedelta(microseconds=us)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def us_to_datetime(us: int) -> datetime:
    """Unix microseconds -> an aware UTC datetime (exact: datetimes hold microseconds)."""
    return _EPOCH + timedelta(microseconds=us)


def wire_ts_to_us(value: Any) -> int:
    """A legacy `ts` field: integer unix seconds, or an ISO-8601 string (orderbook deltas, late 2025)."""
    if isinstance(value, str):
        return iso_to_us(value)
    return seconds_to_us(value)


# ---- field pickers: prefer the current generation (*_dollars, *_fp, ts_ms), fall back to legacy -------
# Each takes the wire's two values of one field, the current one UNSET when its key is absent: the router's
# fast path hands them over from typed structs (router._fast), the general path from a dict (price_field...).


def price_value(dollars: Any, cents: Any) -> int | None:
    """A `{name}_dollars` string if its key is there (UNSET if not), else legacy integer cents, else None. An
    empty or null `_dollars` value means "no value" (an untraded market's ticker sends `"price_dollars": ""`
    next to `"price": 0`): None, without falling back to the legacy twin."""
    if dollars is not UNSET:
        # The router calls this for every price on the wire: a cache hit skips the call chain.
        hit = _price_cache.get(dollars) if type(dollars) is str else None
        if hit is not None:
            return hit
        return None if dollars is None or dollars == "" else dollars_to_price(dollars)
    return None if cents is None else cents_to_price(cents)


def qty_value(fp: Any, count: Any) -> int | None:
    """A `{name}_fp` fixed-point string if its key is there (UNSET if not), else a legacy integer count, else
    None; an empty or null `_fp` value is None."""
    if fp is not UNSET:
        hit = _qty_cache.get(fp) if type(fp) is str else None
        if hit is not None:
            return hit
        return None if fp is None or fp == "" else fp_to_qty(fp)
    return None if count is None else count_to_qty(count)


def ts_value(ts_ms: Any, ts: Any) -> int | None:
    """`ts_ms` (unix ms) if not null, else legacy `ts` (unix seconds or ISO-8601), else None."""
    if ts_ms is not None:
        if type(ts_ms) is int and 0 <= ts_ms < TS_US_MAX // 1_000:
            return ts_ms * 1_000
        return ms_to_us(ts_ms)
    return None if ts is None or ts == "" else wire_ts_to_us(ts)


def price_field(d: Mapping[str, Any], name: str) -> int | None:
    """price_value of `{name}_dollars` and `{name}` in a message."""
    return price_value(d.get(name + "_dollars", UNSET), d.get(name))


def qty_field(d: Mapping[str, Any], name: str) -> int | None:
    """qty_value of `{name}_fp` and `{name}` in a message."""
    return qty_value(d.get(name + "_fp", UNSET), d.get(name))


def ts_field(d: Mapping[str, Any]) -> int | None:
    """ts_value of a message's `ts_ms` and `ts`."""
    return ts_value(d.get("ts_ms"), d.get("ts"))


def wire_levels(raw: Any) -> list[tuple[int, int]]:
    """Order book levels `[[price, qty], ...]` in any generation -> [(price units, qty units)].

    Current: `["0.4800", "120.00"]` (dollar string, fixed-point string); legacy: `[48, 120]` (cents,
    integer contracts); mixed legacy `yes_dollars`: `["0.48", 120]`. Null or absent -> []."""
    if not raw:
        return []
    out = []
    for p, q in raw:
        price = dollars_to_price(p) if isinstance(p, str) else cents_to_price(p)
        qty = fp_to_qty(q) if isinstance(q, str) else count_to_qty(q)
        out.append((price, qty))
    return out


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)


def user_time_to_us(text: str, now_us: int | None = None) -> int:
    """A time a person types, as unix microseconds: an ISO date (midnight UTC) or time (offset or Z; naive is
    UTC), 'now', or unix seconds, milliseconds or microseconds told apart by their digits (10, 13 or 16: the
    years 2001-2286). Anything else raises ConversionError saying what is accepted."""
    t = text.strip()
    if t == "now":
        return now_us if now_us is not None else int(datetime.now(UTC).timestamp() * 1_000_000)
    if _DATE_RE.match(t):
        t += "T00:00:00Z"
    if t.isascii() and t.isdigit():
        scale = {10: 1_000_000, 13: 1_000, 16: 1}.get(len(t))
        if scale is None:
            raise ConversionError(
                "time", text, "a number must be unix seconds (10 digits), milliseconds (13) or microseconds (16)"
            )
        return int(t) * scale
    try:
        return iso_to_us(t)
    except ConversionError:
        raise ConversionError(
            "time", text, "give an ISO date or time (2026-12-06, 2026-12-06T15:30:00Z), unix seconds, ms or µs, or now"
        ) from None
