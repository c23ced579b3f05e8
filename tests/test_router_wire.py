"""The live wire's oddities through the router and the sink: empty dollar strings, missing times, the
message types that arrive on the lifecycle subscriptions, values no column can hold, records msgpack cannot
encode; then a fuzz test of router plus sink on mutated frames against a real Redis."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import metrics
from core.codec import PAYLOAD_FIELD, decode_batch
from core.config import RedisConfig
from core.records import EventFeeUpdate, EventLifecycle, LifecycleEvent, Ticker, Trade
from core.redisconn import async_redis_from_config
from router import FrameError, FrameNormaliser, RedisSink, parse
from tests.services import PrivateRedis


def frame(t: str, msg: dict[str, Any], sid: int = 3, seq: int | None = 1) -> bytes:
    # the standard library's encoder: it writes integers past 64 bits, as a broken exchange could
    return json.dumps({"type": t, "sid": sid, "seq": seq, "msg": msg}, ensure_ascii=False).encode()


def norm(raw: bytes) -> Any:
    return FrameNormaliser("g1").normalise(parse(raw), 111)


def test_untraded_market_ticker_empty_dollars_is_null_not_a_dead_letter() -> None:
    t = norm(
        frame(
            "ticker",
            {
                "market_ticker": "T1",
                "price": 0,
                "price_dollars": "",
                "yes_bid_dollars": "0.0100",
                "yes_ask_dollars": None,
                "volume_fp": "",
                "open_interest_fp": "0.00",
                "dollar_volume": 0,
                "ts_ms": 1732467841000,
            },
        )
    )
    assert isinstance(t, Ticker)
    assert (t.price, t.yes_bid, t.yes_ask, t.volume, t.open_interest) == (None, 1000, None, None, 0)


def test_a_message_without_any_time_takes_its_receive_time_and_is_counted() -> None:
    before = metrics.TIME_FALLBACKS.labels("orderbook_delta")._value.get()
    d = norm(frame("orderbook_delta", {"market_ticker": "T1", "price": 48, "delta": 7, "side": "yes"}))
    assert d.exchange_ts_us == 111 and d.price == 48_000
    assert metrics.TIME_FALLBACKS.labels("orderbook_delta")._value.get() == before + 1


def test_ts_beside_ts_ms_prefers_ts_ms() -> None:
    t = norm(
        frame(
            "trade",
            {
                "trade_id": "x",
                "market_ticker": "T1",
                "yes_price_dollars": "0.3600",
                "no_price_dollars": "0.6400",
                "count_fp": "1.00",
                "ts_ms": 1732467841123,
                "ts": 1732467841,
            },
        )
    )
    assert isinstance(t, Trade) and t.exchange_ts_us == 1732467841123000


def test_event_lifecycle_and_fee_update_on_the_lifecycle_subscription() -> None:
    ev = norm(
        frame(
            "event_lifecycle",
            {
                "event_ticker": "KXE-1",
                "series_ticker": "KXE",
                "title": "T",
                "subtitle": "S",
                "collateral_return_type": "MECNET",
                "strike_date": 1780099428,
                "strike_period": "week",
            },
        )
    )
    assert isinstance(ev, EventLifecycle)
    assert (ev.event_ticker, ev.series_ticker, ev.strike_date_us, ev.strike_period) == (
        "KXE-1",
        "KXE",
        1780099428000000,
        "week",
    )
    assert orjson.loads(ev.raw_json)["collateral_return_type"] == "MECNET"
    fee = norm(
        frame(
            "event_fee_update",
            {"event_ticker": "KXE-1", "fee_type_override": "quadratic", "fee_multiplier_override": 1},
        )
    )
    assert isinstance(fee, EventFeeUpdate)
    assert (fee.event_ticker, fee.fee_type_override, fee.fee_multiplier_override) == ("KXE-1", "quadratic", "1")


def test_multivariate_lifecycle_and_the_2026_lifecycle_fields() -> None:
    lc = norm(
        frame(
            "multivariate_market_lifecycle",
            {
                "market_ticker": "KXMVESPORTS-1",
                "event_type": "created",
                "open_ts": 1780000000,
                "close_ts": 1780090000,
                "price_level_structure": "linear_cent",
                "exchange_index": 7,
            },
        )
    )
    assert isinstance(lc, LifecycleEvent)
    assert (lc.market_ticker, lc.price_level_structure, lc.exchange_index) == ("KXMVESPORTS-1", "linear_cent", "7")
    settled = {
        "market_ticker": "T1",
        "event_type": "settled",
        "result": "yes",
        "settled_ts": 1780099428,
        "settlement_value_dollars": "1.0000",
    }
    st_ = norm(frame("market_lifecycle_v2", settled))
    assert st_.settlement_value == 100_000 and st_.result == "yes"


@pytest.mark.parametrize(
    ("msg", "reason"),
    [
        ({"price_dollars": "99999999999999999999"}, "out_of_range"),
        ({"price_dollars": "1.5"}, "out_of_range"),
        ({"price": 101}, "out_of_range"),
        ({"price_dollars": "0.٣"}, "bad_value"),  # a non-ASCII digit is not a digit here
        ({"delta_fp": "99999999999999999999.00"}, "out_of_range"),
        ({"ts_ms": -5}, "out_of_range"),
        ({"ts_ms": 99999999999999999999}, "bad_value"),  # orjson reads it as a float: not an integer
        ({"ts_ms": 9999999999999999}, "out_of_range"),
        ({"ts": "2250-01-01T00:00:00Z"}, "out_of_range"),
    ],
)
def test_values_no_column_can_hold_are_out_of_range_dead_letters(msg: dict[str, Any], reason: str) -> None:
    base: dict[str, Any] = {
        "market_ticker": "T1",
        "price_dollars": "0.5000",
        "delta_fp": "1.00",
        "side": "yes",
        "ts_ms": 1,
    }
    if "price" in msg:
        del base["price_dollars"]
    if "ts" in msg:
        del base["ts_ms"]
    with pytest.raises(FrameError) as err:
        norm(frame("orderbook_delta", base | msg))
    assert err.value.reason == reason


def test_huge_seq_or_sid_is_out_of_range() -> None:
    for sid, seq in ((3, 2**63), (2**31, 1), (-1, 1)):
        with pytest.raises(FrameError) as err:
            parse(frame("ticker", {"market_ticker": "T1"}, sid=sid, seq=seq))
        assert err.value.reason == "out_of_range"


def test_dollar_volume_must_be_a_bounded_integer() -> None:
    for bad in (10**20, "12", True):
        with pytest.raises(FrameError):
            norm(frame("ticker", {"market_ticker": "T1", "dollar_volume": bad, "ts_ms": 1}))


async def read_stream(r: aioredis.Redis, stream: str) -> list[Any]:
    out: list[Any] = []
    entries: Any = await r.xrange(stream)
    for _id, fields in entries:
        out += decode_batch(fields[PAYLOAD_FIELD])[1]
    return out


async def test_an_unencodable_record_is_a_dead_letter_and_the_batch_goes_on(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    r = async_redis_from_config(RedisConfig(url=private_redis.url))
    sink = RedisSink(r, "kd", "g1", tmp_path)
    good = [Trade("g1", 1, 1, "T1", f"t{i}", 50_000, 50_000, 100, True, None, True, None) for i in range(3)]
    bad = good[0]._replace(trade_id="bad", count=10**25)  # what the range checks exist to stop
    sink.put_nowait([good[0], bad, good[1], good[2]])
    assert await sink.flush()
    assert [t.trade_id for t in await read_stream(r, "kd:g1:trades")] == ["t0", "t1", "t2"]
    dead: Any = await r.xrange("kd:g1:deadletter")
    assert len(dead) == 1 and dead[0][1][b"reason"] == b"unencodable" and b"bad" in dead[0][1][b"raw"]
    assert sink.healthy
    await r.aclose()


GOOD = [
    frame(
        "orderbook_delta",
        {"market_ticker": "T1", "price_dollars": "0.4800", "delta_fp": "-54.00", "side": "yes", "ts_ms": 1780099428263},
    ),
    frame(
        "trade",
        {
            "trade_id": "u1",
            "market_ticker": "T1",
            "yes_price_dollars": "0.3600",
            "no_price_dollars": "0.6400",
            "count_fp": "136.00",
            "taker_outcome_side": "no",
            "ts_ms": 1732467841000,
        },
    ),
    frame(
        "ticker",
        {
            "market_ticker": "T1",
            "price_dollars": "",
            "yes_bid_dollars": "0.4500",
            "volume_fp": "10.00",
            "dollar_volume": 16948,
            "ts_ms": 1732467841000,
        },
    ),
    frame(
        "market_lifecycle_v2",
        {"market_ticker": "T1", "event_type": "determined", "result": "no", "determination_ts": 1732467841},
    ),
    frame("event_fee_update", {"event_ticker": "E1", "fee_type_override": "quadratic", "fee_multiplier_override": 1}),
]
MUTANTS = st.one_of(
    st.just(None),
    st.just(""),
    st.just("abc"),
    st.just("1.5"),
    st.just("99999999999999999999"),
    st.just("-0.01"),
    st.just("٣"),
    st.just(-1),
    st.just(2**70),
    st.just(True),
    st.just([]),
    st.just({}),
    st.just(0.5),
    st.text(max_size=6),
    st.integers(),
    st.floats(allow_nan=True),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_router_and_sink_every_frame_is_a_record_in_range_or_a_dead_letter(
    private_redis: PrivateRedis, tmp_path: Path, data: st.DataObject
) -> None:
    frames: list[bytes] = []
    for _ in range(data.draw(st.integers(1, 6))):
        base = orjson.loads(data.draw(st.sampled_from(GOOD)))
        target = base["msg"] if data.draw(st.booleans()) else base
        key = data.draw(st.sampled_from(sorted(target)))
        target[key] = data.draw(MUTANTS)
        frames.append(json.dumps(base, ensure_ascii=False).encode())
    frames += GOOD  # the good frames after the bad ones must all arrive

    async def run() -> tuple[list[Any], int]:
        r = async_redis_from_config(RedisConfig(url=private_redis.url))
        await r.flushdb()
        sink = RedisSink(r, "kd", "g1", tmp_path / "spill")
        n = FrameNormaliser("g1")
        records = dead = 0
        for raw in frames:
            try:
                f = parse(raw)
                if f.type in ("subscribed", "unsubscribed", "ok", "error"):
                    continue  # a mutated type can make a control frame: not data, nothing to store
                sink.put_one(n.normalise(f, 1_780_000_000_000_000))
                records += 1
            except FrameError as exc:
                sink.dead_letter(raw, exc.reason, exc.detail, "c1", 1)
                dead += 1
        assert await sink.flush()
        stored = []
        for kind in ("deltas", "trades", "tickers", "lifecycle"):
            stored += await read_stream(r, f"kd:g1:{kind}")
        dead_entries: Any = await r.xrange("kd:g1:deadletter")
        n_dead = len(dead_entries)
        await r.aclose()
        assert len(stored) + n_dead == records + dead  # nothing vanished between router and Redis
        return stored, n_dead

    stored, _ = asyncio.run(run())
    for rec in stored:
        for name in ("price", "yes_price", "no_price", "yes_bid", "yes_ask", "settlement_value"):
            v = getattr(rec, name, None)
            assert v is None or 0 <= v <= 100_000, (name, v)
        ts = getattr(rec, "exchange_ts_us", None)
        assert ts is None or 0 <= ts < 4_102_444_800_000_000
    assert sum(1 for rec in stored if getattr(rec, "trade_id", None) == "u1") >= 1  # the good trade got through


def test_streams_deadletter_counts_by_reason_with_raw_frames(tmp_path: Path) -> None:
    """`kalshi-data streams deadletter` against a password-protected Redis: counts per reason, raw frames."""
    srv = PrivateRedis(str(tmp_path), password="pw-" + tmp_path.name[-6:])
    srv.start()
    try:
        r = redis.Redis.from_url(srv.url, password=srv.password)
        for k in range(5):
            reason = "unknown_type" if k % 2 else "out_of_range"
            r.xadd(
                "kd:g7:deadletter",
                {"raw": f'{{"type":"x{k}"}}', "reason": reason, "detail": "d", "connection": "c1", "received_us": "1"},
            )
        cfg = tmp_path / "gatherer.yaml"
        cfg.write_text(json.dumps({"gatherer_id": "g7", "redis": {"url": srv.url, "password": "${KD_T_PW}"}}))
        out = subprocess.run(
            [sys.executable, "-m", "cli.main", "streams", "deadletter", "--config", str(cfg), "--examples", "1"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "KD_T_PW": str(srv.password)},
        )
        assert out.returncode == 0, out.stderr[-2000:]
        rows = [json.loads(line) for line in out.stdout.splitlines()]
        assert [(row["reason"], row["count"]) for row in rows] == [("out_of_range", 3), ("unknown_type", 2)]
        assert rows[0]["examples"][0]["raw"] == '{"type":"x4"}'  # newest first
    finally:
        srv.stop()
