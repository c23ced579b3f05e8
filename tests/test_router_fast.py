"""The router's two paths agree: every frame gives the same record, or the same dead letter, whether it is
decoded into typed structs (router._fast, what `parse` tries first) or read by the general path alone
(`parse_general`, orjson into dicts). The corpus is the simulator's frames in each field generation under
several seeds, then the same frames mutated the ways a wire or a broken peer can: fields dropped, nulled,
emptied or of another type, numbers past 64 bits, bad strings, duplicate keys, envelopes broken. One
normaliser per path reads the whole corpus in order, so occurrence counters must agree too (a frame the fast
path gives up on must leave them as it found them)."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

import orjson
import pytest

from core.records import Trade
from router import Frame, FrameError, FrameNormaliser, parse
from router._fast import DeltaFrame, TickerFrame, TradeFrame
from router._frames import parse_general
from simulator import Exchange, ExchangeOptions, Ledger

ODD_VALUES: list[Any] = [
    None,
    "",
    " ",
    0,
    -1,
    1.5,
    2.0,
    True,
    False,
    [],
    {},
    "0.5",
    "0.4800",
    "0.12345",
    "0.123456",
    "1.0000",
    "1.5",
    "-0.01",
    "12.00",
    "-54.00",
    "1e2",
    "0.٣",
    "yes",
    "no",
    "YES",
    "maybe",
    "2025-11-08T14:36:53.091704Z",
    "2250-01-01T00:00:00Z",
    1780099428263,
    -5,
    2**63 - 1,
    2**63,
    2**64,
    10**30,
    "\u00e9",
    "\x00",
]


def simulator_frames(seed: int, ws_fields: str, n: int) -> list[bytes]:
    """Delta, ticker and trade frames as one connection per channel gets them (sids 1, 2, 3)."""
    frames: list[bytes] = []
    seq = {1: 0, 2: 0, 3: 0}
    sid_of = {"orderbook_delta": 1, "ticker": 2, "trade": 3}

    def publish(channel: str, ticker: str, mtype: str, body: str) -> None:
        sid = sid_of.get(channel)
        if sid is not None:
            seq[sid] += 1
            # Kalshi's send time since 2026-10-01, on three frames in four (older frames lack it)
            sent = f',"sending_ts_ms":{1_790_000_000_000 + len(frames)}' if len(frames) % 4 else ""
            frames.append(f'{{"type":"{mtype}","sid":{sid},"seq":{seq[sid]},"msg":{body}{sent}}}'.encode())

    ex = Exchange(
        ExchangeOptions(seed=seed, markets=300, active=60, lifecycle_interval_s=0, ws_fields=ws_fields),
        Ledger(keep_in_memory=False),
        publish,
    )
    while len(frames) < n:
        ex.step(ex.now_us())
    return frames[:n]


def mutate(raw: bytes, rng: random.Random) -> bytes:
    obj = orjson.loads(raw)
    msg = obj["msg"]
    what = rng.randrange(12)
    key = rng.choice(sorted(msg))
    if what <= 3:
        msg[key] = rng.choice(ODD_VALUES)
    elif what == 4:
        del msg[key]
    elif what == 5:  # a field of the other generation, or an unknown one
        msg[rng.choice(["price", "delta", "count", "yes_price", "volume", "ts", "client_order_id", "novel"])] = (
            rng.choice(ODD_VALUES)
        )
    elif what == 6:
        obj[rng.choice(["sid", "seq", "type", "msg", "id", "sending_ts_ms", "sending_ts_ms"])] = rng.choice(
            [*ODD_VALUES, "orderbook_delta", "ticker", "trade", "orderbook_snapshot", "subscribed", "ticker_v2"]
        )
    elif what == 7:
        del obj[rng.choice(["sid", "seq", "type", "msg"])]
    elif what == 8:  # a duplicate key: the last one counts
        text = json.dumps(obj, separators=(",", ":"))
        return text.replace('"msg":{', f'"msg":{{"{key}":{json.dumps(rng.choice(ODD_VALUES))},', 1).encode()
    elif what == 9:  # bytes that are not JSON, or not UTF-8
        cut = rng.randrange(1, len(raw))
        return rng.choice([raw[:cut], raw + b"x", raw.replace(b'"', b"'", 1), raw[:cut] + b"\xff" + raw[cut:]])
    elif what == 10:  # integers past 64 bits where the wire has integers
        for k in ("ts_ms", "dollar_volume", "price", "count"):
            if k in msg:
                msg[k] = rng.choice([2**64, -(2**63) - 1, 10**20, 2**63])
        obj["seq"] = rng.choice([obj.get("seq"), 2**63, 2**64])
    else:  # the same frame again, to exercise the counters after a frame the fast path gave up on
        return raw
    # (the standard library writes integers past 64 bits; as \u escapes or not, both paths read them)
    return json.dumps(obj, ensure_ascii=rng.random() < 0.5).encode()


def outcome(n: FrameNormaliser, raw: bytes, received_us: int, general: bool) -> tuple[str, Any]:
    """(the path that decoded the frame: fast, general or none; its record or its dead letter)."""
    try:
        f = parse_general(raw) if general else parse(raw)
    except FrameError as exc:
        return "unparsed", ("dead letter", exc.reason, exc.detail)
    path = "general" if isinstance(f, Frame) else "fast"
    if f.type not in ("orderbook_delta", "ticker", "trade", "orderbook_snapshot") or f.sid is None:
        return path, ("not normalised here", f.type, f.sid, f.seq)
    try:
        return path, (f.sid, f.seq, n.normalise(f, received_us))
    except FrameError as exc:
        return path, ("dead letter", exc.reason, exc.detail)


@pytest.mark.parametrize(("seed", "ws_fields"), [(1, "current"), (7, "both"), (23, "legacy"), (61, "current")])
def test_fast_and_general_paths_give_the_same_records_and_dead_letters(seed: int, ws_fields: str) -> None:
    rng = random.Random(seed)
    base = simulator_frames(seed, ws_fields, 6_000)
    corpus = [*base, *(mutate(rng.choice(base), rng) for _ in range(6_000))]
    rng.shuffle(corpus)
    fast, general = FrameNormaliser("g1"), FrameNormaliser("g1")
    taken: Counter[tuple[str, str]] = Counter()
    clock = 1_790_000_000_000_000
    for raw in corpus:
        clock += rng.choice([0, 0, 1, 250, 1_000])  # ties too: identical messages within one millisecond
        path, got = outcome(fast, raw, clock, False)
        assert got == outcome(general, raw, clock, True)[1], raw
        taken[path, "dead letter" if got[0] == "dead letter" else "kept"] += 1
    # every way through was taken, in numbers: decoded fast and kept; decoded fast, then a value the general
    # path turned into a dead letter; left to the general path, kept or dead-lettered; not parseable at all
    assert taken["fast", "kept"] > 6_000 and taken["fast", "dead letter"] > 100, taken
    assert taken["general", "kept"] > 300 and taken["general", "dead letter"] > 500, taken
    assert taken["unparsed", "dead letter"] > 300, taken
    assert fast.occurrences._occ == general.occurrences._occ


def test_every_well_formed_simulator_frame_takes_the_fast_path() -> None:
    for ws_fields in ("current", "both", "legacy"):
        for raw in simulator_frames(5, ws_fields, 3_000):
            assert isinstance(parse(raw), DeltaFrame | TickerFrame | TradeFrame), raw


def test_the_one_difference_a_number_no_double_holds_in_a_field_the_router_does_not_read() -> None:
    """JSON allows 1e999; orjson cannot hold it and refuses the whole frame (a dead letter), msgspec skips a
    field the router does not read. The fast path keeps such a frame's record: the old path lost it to the
    dead-letter stream (raw kept), so nothing that was stored before is stored differently."""
    raw = (
        b'{"type":"trade","sid":3,"seq":1,"msg":{"trade_id":"t1","market_ticker":"T1","yes_price_dollars":"0.3600",'
        b'"count_fp":"1.00","ts_ms":1732467841000,"novel":1e999}}'
    )
    with pytest.raises(FrameError):
        parse_general(raw)
    rec = FrameNormaliser("g1").normalise(parse(raw), 5)
    assert isinstance(rec, Trade)
    assert (rec.trade_id, rec.yes_price, rec.no_price, rec.count) == ("t1", 36_000, 64_000, 100)
