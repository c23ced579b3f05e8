"""Router: frame parsing and normalisation in both field generations, dead-letter reasons, and the Redis
sink that never drops (memory, then disk spill, replayed when Redis answers again)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from core.codec import PAYLOAD_FIELD, decode_batch
from core.config import RedisConfig
from core.records import LifecycleEvent, OrderbookDelta, OrderbookSnapshot, Ticker, Trade
from core.redisconn import async_redis_from_config
from router import FrameError, FrameNormaliser, RedisSink, parse
from tests.services import PrivateRedis


def frame(t: str, msg: dict[str, Any], sid: int = 3, seq: int | None = 1) -> bytes:
    return orjson.dumps({"type": t, "sid": sid, "seq": seq, "msg": msg})


def norm(raw: bytes, n: FrameNormaliser | None = None) -> Any:
    return (n or FrameNormaliser("g1")).normalise(parse(raw), 111)


def test_delta_current_and_legacy_fields() -> None:
    cur = norm(
        frame(
            "orderbook_delta",
            {
                "market_ticker": "T1",
                "market_id": "u",
                "price_dollars": "0.0880",
                "delta_fp": "-54.50",
                "side": "no",
                "ts_ms": 1780099428263,
            },
        )
    )
    assert cur == OrderbookDelta("g1", 111, 1780099428263000, "T1", "u", False, 8800, -5450, 0, 3, 1, None)
    old = norm(
        frame(
            "orderbook_delta",
            {"market_ticker": "T1", "price": 48, "delta": 7, "side": "yes", "ts": "2025-11-08T14:36:53.091704Z"},
        )
    )
    assert (old.price, old.delta, old.side, old.exchange_ts_us) == (48000, 700, True, 1762612613091704)


def test_identical_deltas_numbered_per_sid_and_their_counts_read_for_a_handover() -> None:
    n = FrameNormaliser("g1")
    d = {"market_ticker": "T1", "price_dollars": "0.5000", "delta_fp": "10.00", "side": "yes", "ts_ms": 5}
    occ = [norm(frame("orderbook_delta", d, seq=k), n).occurrence for k in range(3)]
    assert occ == [0, 1, 2]
    assert norm(frame("orderbook_delta", {**d, "ts_ms": 6}), n).occurrence == 0
    assert norm(frame("orderbook_delta", {**d, "ts_ms": 6}, sid=4), n).occurrence == 0  # another sid
    # what a resync's handover reads: the counts of the current millisecond, per market, as a copy
    counts = n.occurrences.counters(3)
    assert counts == {"T1": (6000, {(True, 50_000, 1000): 1})}
    norm(frame("orderbook_delta", {**d, "ts_ms": 6}), n)
    assert counts["T1"][1] == {(True, 50_000, 1000): 1}
    assert n.occurrences.counters(99) == {}


def test_a_ticker_state_repeated_in_one_millisecond_is_numbered() -> None:
    n = FrameNormaliser("g1")
    a = {"market_ticker": "T1", "yes_ask_dollars": "1.0000", "yes_ask_size_fp": "0.00", "ts_ms": 5}
    b = {**a, "yes_ask_dollars": "0.2900", "yes_ask_size_fp": "22.00"}
    occ = [norm(frame("ticker", m, sid=2, seq=k), n).occurrence for k, m in enumerate((a, b, a, a), 1)]
    assert occ == [0, 0, 1, 2]
    assert [norm(frame("ticker", m, sid=9), n).occurrence for m in (a, b, a)] == [0, 0, 1]  # the redundant connection
    assert norm(frame("ticker", {**a, "ts_ms": 6}, sid=2), n).occurrence == 0


def test_snapshot_ticker_trade_lifecycle() -> None:
    levels = [["0.4500", "100.00"], ["0.4400", "20.00"]]
    snap = norm(frame("orderbook_snapshot", {"market_ticker": "T1", "market_id": "u", "yes_dollars_fp": levels}))
    assert snap == OrderbookSnapshot("g1", 111, None, "T1", "u", "ws", 3, 1, [(45000, 10000), (44000, 2000)], [])
    legacy = norm(frame("orderbook_snapshot", {"market_ticker": "T1", "yes": [[45, 100]], "no": [[50, 3]]}))
    assert (legacy.yes_bids, legacy.no_bids) == ([(45000, 10000)], [(50000, 300)])
    tick = norm(
        frame(
            "ticker",
            {
                "market_ticker": "T1",
                "price_dollars": "0.4800",
                "volume_fp": "33896.00",
                "dollar_volume": 16948,
                "ts_ms": 1732467841000,
            },
        )
    )
    assert isinstance(tick, Ticker)
    assert (tick.price, tick.volume, tick.dollar_volume, tick.yes_bid) == (48000, 3389600, 16948, None)
    tr = norm(
        frame(
            "trade",
            {
                "trade_id": "x",
                "market_ticker": "T1",
                "yes_price_dollars": "0.3600",
                "no_price_dollars": "0.6400",
                "count_fp": "136.00",
                "taker_outcome_side": "no",
                "taker_book_side": "ask",
                "taker_side": "no",
                "ts_ms": 1732467841000,
            },
        )
    )
    assert tr == Trade("g1", 111, 1732467841000000, "T1", "x", 36000, 64000, 13600, False, "ask", False, None, "ws")
    old = norm(
        frame(
            "trade",
            {
                "trade_id": "y",
                "market_ticker": "T1",
                "yes_price": 36,
                "no_price": 64,
                "count": 3,
                "taker_side": "yes",
                "ts": 1732467841,
            },
        )
    )
    assert (old.yes_price, old.count, old.taker_outcome_side, old.taker_side) == (36000, 300, None, True)
    lc = norm(
        frame(
            "market_lifecycle_v2",
            {
                "market_ticker": "T1",
                "event_type": "settled",
                "settled_ts": 17,
                "result": "yes",
                "additional_metadata": {"b": 1, "a": 2},
            },
        )
    )
    assert lc == LifecycleEvent("g1", 111, "T1", "settled", None, None, None, 17_000_000, "yes", None, '{"a":2,"b":1}')


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "malformed"),
        (b"[1,2]", "malformed"),
        (b'{"sid": 1}', "malformed"),
        (b'{"type": "orderbook_delta", "msg": {}}', "malformed"),
        (b'{"type": "mystery", "sid": 1, "msg": {}}', "unknown_type"),
        (b'{"type": "ticker", "sid": 1, "msg": []}', "malformed"),
    ],
)
def test_parse_errors(raw: bytes, reason: str) -> None:
    with pytest.raises(FrameError) as err:
        parse(raw)
    assert err.value.reason == reason


@pytest.mark.parametrize(
    "msg",
    [
        {"market_ticker": "T1", "price_dollars": "abc", "delta_fp": "1.00", "side": "yes", "ts_ms": 1},
        {"market_ticker": "T1", "price_dollars": "0.50", "delta_fp": "1.001", "side": "yes", "ts_ms": 1},
        {"market_ticker": "T1", "price_dollars": "0.50", "delta_fp": "1.00", "side": "maybe", "ts_ms": 1},
        {"market_ticker": "T1", "price_dollars": "", "delta_fp": "1.00", "side": "yes", "ts_ms": 1},
        {"market_ticker": "T1", "price": 0.5, "delta_fp": "1.00", "side": "yes", "ts_ms": 1},
        {"price_dollars": "0.50", "delta_fp": "1.00", "side": "yes", "ts_ms": 1},
    ],
)
def test_bad_values_are_typed_errors(msg: dict[str, Any]) -> None:
    with pytest.raises(FrameError) as err:
        norm(frame("orderbook_delta", msg))
    assert err.value.reason == "bad_value"


def deltas(n: int, start: int = 0) -> list[OrderbookDelta]:
    return [OrderbookDelta("g1", 1, 1_000 + i, "T1", None, True, 50_000, 100, 0, 1, i) for i in range(start, start + n)]


async def read_all(r: aioredis.Redis, stream: str) -> list[Any]:
    out = []
    entries: Any = await r.xrange(stream)
    for _id, fields in entries:
        _kind, records = decode_batch(fields[PAYLOAD_FIELD])
        out += records
    return out


async def test_sink_batches_per_kind_and_dead_letters_keep_raw(private_redis: PrivateRedis, tmp_path: Path) -> None:
    r = async_redis_from_config(RedisConfig(url=private_redis.url))
    sink = RedisSink(r, "kd", "g1", tmp_path / "spill", records_per_entry=100)
    sink.put_nowait(deltas(250))
    sink.dead_letter(b"{broken", "malformed", "unexpected end", "g1:orderbook:1", 42)
    assert await sink.flush()
    assert await r.xlen("kd:g1:deltas") == 3  # 100 + 100 + 50 records
    assert await read_all(r, "kd:g1:deltas") == deltas(250)
    dead: Any = await r.xrange("kd:g1:deadletter")
    [(_, dl)] = dead
    assert dl[b"raw"] == b"{broken" and dl[b"reason"] == b"malformed" and dl[b"connection"] == b"g1:orderbook:1"
    await r.aclose()


async def test_sink_survives_redis_down_in_memory_and_on_disk(private_redis: PrivateRedis, tmp_path: Path) -> None:
    r = async_redis_from_config(RedisConfig(url=private_redis.url), socket_connect_timeout=1)
    spill = tmp_path / "spill"
    sink = RedisSink(
        r, "kd", "g1", spill, records_per_entry=50, memory_limit=300, flush_interval_s=0.01, op_timeout_s=1
    )
    task = asyncio.create_task(sink.run())
    sink.put_nowait(deltas(100))
    await asyncio.sleep(0.2)
    private_redis.stop()
    for k in range(10):  # 1000 records while Redis is down: past the memory limit, so some spill
        sink.put_nowait(deltas(100, 100 + 100 * k))
        await asyncio.sleep(0.05)
    for _ in range(50):
        if sink.spilled_entries:
            break
        await asyncio.sleep(0.05)
    assert not sink.redis_up
    assert sink.spilled_entries > 0 and list(spill.glob("spill-*.bin"))
    private_redis.start()
    for _ in range(200):
        if sink.redis_up and not sink.buffered and not list(spill.glob("spill-*.bin")):
            break
        await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    got = await read_all(r, "kd:g1:deltas")
    assert sorted(got, key=lambda d: d.seq) == deltas(1100)  # every record, exactly once
    assert sink.replayed_entries > 0
    await r.aclose()


async def test_sink_close_spills_what_redis_did_not_take(private_redis: PrivateRedis, tmp_path: Path) -> None:
    r = async_redis_from_config(RedisConfig(url=private_redis.url), socket_connect_timeout=0.5)
    spill = tmp_path / "spill"
    private_redis.stop()
    sink = RedisSink(r, "kd", "g1", spill, records_per_entry=50, op_timeout_s=0.5)
    sink.put_nowait(deltas(120))
    await sink.close(timeout_s=0.5)
    files = list(spill.glob("spill-*.bin"))
    assert len(files) == 1
    # a new process with the same spill directory replays it
    private_redis.start()
    r2 = async_redis_from_config(RedisConfig(url=private_redis.url))
    sink2 = RedisSink(r2, "kd", "g1", spill, records_per_entry=50)
    assert await sink2.flush()
    assert await read_all(r2, "kd:g1:deltas") == deltas(120)
    assert not list(spill.glob("spill-*.bin"))
    await r.aclose()
    await r2.aclose()


async def test_sink_stops_when_cancelled_as_it_wakes(private_redis: PrivateRedis, tmp_path: Path) -> None:
    """On Python 3.11 asyncio.wait_for can swallow a cancel that lands as the wait ends; the sink's loop then
    ran on and a gatherer's shutdown hung (seen in make demo). With wait_for this failed ~12 times in 300. Each
    sink has records to write, so the cancel lands in the Redis call too (redis-py with a socket_timeout sends
    inside wait_for: that lost 9 in 300 here)."""
    import random

    r = async_redis_from_config(RedisConfig(url=private_redis.url))
    rng = random.Random(1)
    still_running = 0
    for k in range(300):
        sink = RedisSink(r, "kd", "g1", tmp_path / f"spill{k}", flush_interval_s=0.001)
        sink.put_nowait(deltas(3))
        task = asyncio.create_task(sink.run())
        await asyncio.sleep(rng.random() * 0.01)
        sink.put_nowait(deltas(3, 3))
        sink._wake.set()  # the wake and the cancel in the same loop iteration
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=1.0)
        if not done:
            still_running += 1
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
    await r.aclose()
    assert still_running == 0


async def test_sink_stop_returns_promptly_in_any_phase_even_with_redis_down(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    """Shutdown asks the sink to stop (a flag, not a cancel, which would cut a flush short): it returns
    within a flush whatever it was doing, including backing off from a Redis that does not answer."""
    import random

    r = async_redis_from_config(RedisConfig(url=private_redis.url), socket_connect_timeout=1)
    rng = random.Random(2)
    slow = 0
    for k in range(200):
        if k == 100:
            private_redis.stop()  # the second half: every flush fails and the loop backs off
        sink = RedisSink(r, "kd", "g1", tmp_path / f"spill{k}", flush_interval_s=0.001, op_timeout_s=1)
        sink.put_nowait(deltas(3))
        task = asyncio.create_task(sink.run())
        await asyncio.sleep(rng.random() * 0.01)
        sink.stop()
        done, _ = await asyncio.wait({task}, timeout=3.0)
        slow += not done
        if not done:
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    private_redis.start()
    await r.aclose()
    assert slow == 0


def test_sending_ts_ms_is_the_records_send_time_and_a_bad_one_loses_nothing_else() -> None:
    """kalshi-api.md: top level, unix ms, optional. Every kind of record the router makes keeps it (sent_us); a
    message without it has none; one that is no time keeps the message, with no send time, counted."""
    from core import metrics

    d = {"market_ticker": "T1", "price_dollars": "0.5000", "delta_fp": "10.00", "side": "yes", "ts_ms": 5}
    lifecycle = {"market_ticker": "T1", "event_type": "activated", "open_ts": 1}
    frames = [
        ("orderbook_delta", d),
        ("ticker", {"market_ticker": "T1", "price_dollars": "0.5000", "ts_ms": 5}),
        ("trade", {"trade_id": "t1", "market_ticker": "T1", "yes_price_dollars": "0.36", "count_fp": "1.00",
                   "ts_ms": 5}),
        ("orderbook_snapshot", {"market_ticker": "T1", "yes_dollars_fp": [["0.4500", "1.00"]]}),
        ("market_lifecycle_v2", lifecycle),
        ("event_lifecycle", {"event_ticker": "E1"}),
        ("event_fee_update", {"event_ticker": "E1", "fee_type_override": "flat"}),
    ]  # fmt: skip
    for t, msg in frames:
        raw = {"type": t, "sid": 3, "seq": 1, "msg": msg, "sending_ts_ms": 1_790_000_000_123}
        assert norm(orjson.dumps(raw)).sent_us == 1_790_000_000_123_000, t
        assert norm(orjson.dumps({k: v for k, v in raw.items() if k != "sending_ts_ms"})).sent_us is None, t
    before = metrics.BAD_SENDING_TS.labels("orderbook_delta")._value.get()
    for bad in ("soon", 1.5, -1, 10**17, True):
        raw = {"type": "orderbook_delta", "sid": 3, "seq": 1, "msg": d, "sending_ts_ms": bad}
        rec = norm(orjson.dumps(raw))
        assert (rec.sent_us, rec.delta) == (None, 1000), bad
    assert metrics.BAD_SENDING_TS.labels("orderbook_delta")._value.get() == before + 5
