from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.conversions import (
    ConversionError,
    cents_to_price,
    count_to_qty,
    dollars_to_price,
    fp_to_qty,
    iso_to_us,
    ms_to_us,
    price_to_dollars,
    qty_to_fp,
    seconds_to_us,
    side_to_bool,
    us_to_iso,
    wire_ts_to_us,
)


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("0.52", 52000),
        ("0.5250", 52500),
        ("0.0880", 8800),
        ("1.0000", 100000),
        ("0", 0),
        ("0.00001", 1),
        ("0.123450", 12345),
    ],
)
def test_dollars_exact(text: str, units: int) -> None:
    assert dollars_to_price(text) == units


@pytest.mark.parametrize(
    "bad", ["0.123456", "abc", "", "-0.10", "0.5.1", "1e-2", " ", "0x10", "12.5", "1.00001", "٠.٥", "0.٥"]
)
def test_dollars_rejects(bad: str) -> None:
    with pytest.raises(ConversionError) as ei:
        dollars_to_price(bad)
    assert ei.value.value == bad


@pytest.mark.parametrize("bad", [0.52, 52, None, True, [1]])
def test_dollars_rejects_non_strings(bad: object) -> None:
    with pytest.raises(ConversionError) as ei:
        dollars_to_price(bad)
    assert ei.value.value == bad


def test_fp_quantities() -> None:
    assert fp_to_qty("136.00") == 13600
    assert fp_to_qty("-54.00") == -5400
    assert fp_to_qty("2.5") == 250
    assert fp_to_qty("0.01") == 1
    with pytest.raises(ConversionError):
        fp_to_qty("0.001")
    assert count_to_qty(136) == 13600
    with pytest.raises(ConversionError):
        count_to_qty(1.5)
    with pytest.raises(ConversionError):
        count_to_qty(True)


def test_cents() -> None:
    assert cents_to_price(48) == 48000
    with pytest.raises(ConversionError):
        cents_to_price("48")


def test_times() -> None:
    assert seconds_to_us(1732467841) == 1732467841_000000
    assert ms_to_us(1780099428263) == 1780099428263_000
    assert iso_to_us("2025-11-08T14:36:53.091704Z") == 1762612613_091704
    assert iso_to_us("2025-11-08T14:36:53Z") == 1762612613_000000
    assert iso_to_us("2025-11-08T16:36:53.5+02:00") == 1762612613_500000
    assert iso_to_us("2025-11-08T14:36:53.091704000Z") == 1762612613_091704
    assert wire_ts_to_us("2025-11-08T14:36:53.091704Z") == 1762612613_091704
    assert wire_ts_to_us(1762612613) == 1762612613_000000
    for bad in ["2025-11-08", "2025-13-08T00:00:00Z", "2025-11-08T14:36:53.0917041Z", "yesterday"]:
        with pytest.raises(ConversionError):
            iso_to_us(bad)
    with pytest.raises(ConversionError):
        ms_to_us(1.5)


def test_sides() -> None:
    assert side_to_bool("yes") is True
    assert side_to_bool("no") is False
    for bad in ["YES", "", None, 1]:
        with pytest.raises(ConversionError):
            side_to_bool(bad)


@given(st.integers(min_value=0, max_value=100_000))
def test_price_round_trip(units: int) -> None:
    assert dollars_to_price(price_to_dollars(units, places=5)) == units


@given(st.integers(min_value=0, max_value=10**4))
def test_four_decimal_prices_round_trip(units: int) -> None:
    units = units * 10  # 4-decimal prices are multiples of 10 units
    assert dollars_to_price(price_to_dollars(units)) == units


def test_price_to_dollars_refuses_to_drop_digits() -> None:
    with pytest.raises(ConversionError):
        price_to_dollars(12345, places=4)


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_qty_round_trip(units: int) -> None:
    assert fp_to_qty(qty_to_fp(units)) == units


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2099, 12, 31)))
def test_iso_round_trip(dt: datetime) -> None:
    us = (dt.replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert iso_to_us(us_to_iso(us)) == us


@given(st.text(max_size=12))
def test_dollars_never_crash_with_other_errors(s: str) -> None:
    try:
        v = dollars_to_price(s)
    except ConversionError as exc:
        assert exc.value == s
    else:
        assert isinstance(v, int) and v >= 0


def test_field_pickers_prefer_current_generation() -> None:
    from core.conversions import price_field, qty_field, ts_field

    assert price_field({"yes_bid_dollars": "0.0880", "yes_bid": 9}, "yes_bid") == 8800
    assert price_field({"yes_bid": 9}, "yes_bid") == 9000
    assert price_field({}, "yes_bid") is None
    assert qty_field({"volume_fp": "2.50", "volume": 2}, "volume") == 250
    assert qty_field({"volume": 2}, "volume") == 200
    assert ts_field({"ts_ms": 1732467841123, "ts": 1732467841}) == 1732467841123000
    assert ts_field({"ts": 1732467841}) == 1732467841000000
    assert ts_field({"ts": "2025-11-08T14:36:53.091704Z"}) == 1762612613091704
    assert ts_field({}) is None
    with pytest.raises(ConversionError):
        price_field({"yes_bid_dollars": 0.5}, "yes_bid")
