"""The simulator's WebSocket: every command, response and error code; seq per subscription; the ledger
equals what a perfect raw client receives."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import orjson
import pytest

from core.conversions import dollars_to_price, fp_to_qty, ms_to_us, price_field, qty_field, side_to_bool
from simulator import diff_rows
from simulator._book import Book
from tests.simkit import raw_client, running_sim


def sent_now(m: dict[str, Any]) -> dict[str, Any]:
    """kalshi-api.md: replies carry sending_ts_ms (unix ms, when Kalshi queued them): it is now, give or take."""
    sent = m.pop("sending_ts_ms")
    assert abs(sent - time.time() * 1000) < 5_000, sent
    return m


async def test_subscribe_snapshot_then_deltas_with_seq() -> None:
    async with running_sim(markets=50, active=5) as sim, raw_client(sim) as c:
        u = sim.exchange.universe
        tickers = [u.market_ticker(i) for i in range(3)]
        cid = await c.send("subscribe", channels=["orderbook_delta"], market_tickers=tickers)
        m = sent_now(await c.recv())
        assert m == {"id": cid, "type": "subscribed", "msg": {"channel": "orderbook_delta", "sid": 1}}
        snaps = [await c.recv() for _ in tickers]
        assert [s["type"] for s in snaps] == ["orderbook_snapshot"] * 3
        assert [s["seq"] for s in snaps] == [1, 2, 3]
        assert [s["msg"]["market_ticker"] for s in snaps] == tickers
        assert all(s["sid"] == 1 for s in snaps)
        first = snaps[0]["msg"]
        assert first["market_id"] == u.market_id(0)
        assert all(len(lv) == 2 and isinstance(lv[0], str) for lv in first["yes_dollars_fp"])
        for _ in range(300):
            sim.exchange.step(sim.exchange.now_us())
        frames = [orjson.loads(f) for f in await c.drain()]
        deltas = [f for f in frames if f["type"] == "orderbook_delta"]
        assert deltas, "hot markets among the subscribed ones must move"
        assert [d["seq"] for d in deltas] == list(range(4, 4 + len(deltas)))
        assert {d["msg"]["market_ticker"] for d in deltas} <= set(tickers)
        d = deltas[0]["msg"]
        assert set(d) == {"market_ticker", "market_id", "price_dollars", "delta_fp", "side", "ts_ms", "ts"}
        assert isinstance(d["ts_ms"], int)


async def test_all_market_channels_each_have_their_own_sid_and_seq() -> None:
    async with running_sim(markets=40, active=10) as sim, raw_client(sim) as c:
        cid = await c.send("subscribe", channels=["ticker", "trade", "market_lifecycle_v2"])
        subs = [await c.recv() for _ in range(3)]
        assert [(s["id"], s["msg"]["channel"], s["msg"]["sid"]) for s in subs] == [
            (cid, "ticker", 1),
            (cid, "trade", 2),
            (cid, "market_lifecycle_v2", 3),
        ]
        for _ in range(500):
            sim.exchange.step(sim.exchange.now_us())
        for _ in range(6):
            sim.exchange.lifecycle_step(sim.exchange.now_us())
        frames = [orjson.loads(f) for f in await c.drain()]
        by_sid: dict[int, list[int]] = defaultdict(list)
        for f in frames:
            by_sid[f["sid"]].append(f["seq"])
        assert set(by_sid) == {1, 2, 3}
        for seqs in by_sid.values():
            assert seqs == list(range(1, len(seqs) + 1))


async def test_unsubscribe_and_update_subscription() -> None:
    async with running_sim(markets=40, active=10) as sim, raw_client(sim) as c:
        u = sim.exchange.universe
        await c.send("subscribe", channels=["orderbook_delta"], market_tickers=[u.market_ticker(0)])
        await c.recv_until(lambda m: m["type"] == "orderbook_snapshot")
        cid = await c.send("update_subscription", sids=[1], market_tickers=[u.market_ticker(1)], action="add_markets")
        ok = sent_now(await c.recv())
        assert ok == {
            "id": cid,
            "sid": 1,
            "seq": 1,
            "type": "ok",
            "msg": {"market_tickers": sorted([u.market_ticker(0), u.market_ticker(1)])},
        }
        snap = await c.recv()
        assert (snap["type"], snap["seq"], snap["msg"]["market_ticker"]) == (
            "orderbook_snapshot",
            2,
            u.market_ticker(1),
        )
        cid = await c.send(
            "update_subscription", sids=[1], market_tickers=[u.market_ticker(0)], action="delete_markets"
        )
        ok = await c.recv()
        assert (ok["id"], ok["type"], ok["msg"]["market_tickers"]) == (cid, "ok", [u.market_ticker(1)])
        cid = await c.send("unsubscribe", sids=[1])
        assert sent_now(await c.recv()) == {"id": cid, "sid": 1, "type": "unsubscribed"}
        for _ in range(200):
            sim.exchange.step(sim.exchange.now_us())
        assert await c.drain() == []


ERROR_CASES: list[tuple[str, Any, int]] = [
    ("invalid json", "{nope", 1),
    ("no params", {"id": 1, "cmd": "subscribe"}, 2),
    ("no channels", {"id": 1, "cmd": "subscribe", "params": {}}, 3),
    ("no sids", {"id": 1, "cmd": "unsubscribe", "params": {}}, 4),
    ("unknown command", {"id": 1, "cmd": "dance", "params": {}}, 5),
    ("unknown sid", {"id": 1, "cmd": "unsubscribe", "params": {"sids": [99]}}, 7),
    ("unknown channel", {"id": 1, "cmd": "subscribe", "params": {"channels": ["weather"]}}, 8),
    ("private channel", {"id": 1, "cmd": "subscribe", "params": {"channels": ["fill"]}}, 9),
    ("invalid parameter", {"id": 1, "cmd": "subscribe", "params": {"channels": ["ticker"], "market_tickers": "X"}}, 11),
    ("two sids", {"id": 1, "cmd": "update_subscription", "params": {"sids": [1, 2], "action": "add_markets"}}, 12),
    ("bad action", {"id": 1, "cmd": "update_subscription", "params": {"sids": [1], "action": "swap"}}, 13),
    ("orderbook without tickers", {"id": 1, "cmd": "subscribe", "params": {"channels": ["orderbook_delta"]}}, 14),
    ("no action", {"id": 1, "cmd": "update_subscription", "params": {"sids": [1]}}, 15),
    (
        "unknown market",
        {"id": 1, "cmd": "subscribe", "params": {"channels": ["orderbook_delta"], "market_tickers": ["NOPE-1"]}},
        16,
    ),
]


@pytest.mark.parametrize(("case", "frame", "code"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
async def test_error_codes(case: str, frame: Any, code: int) -> None:
    async with running_sim(markets=20, active=2) as sim, raw_client(sim) as c:
        await c.ws.send(frame if isinstance(frame, str) else orjson.dumps(frame).decode())
        m = await c.recv()
        assert m["type"] == "error"
        assert m["msg"]["code"] == code
        assert isinstance(m["msg"]["msg"], str) and m["msg"]["msg"]
        if isinstance(frame, dict):
            assert m["id"] == 1
        # the connection survives every error
        await c.send("subscribe", channels=["ticker"])
        assert (await c.recv())["type"] == "subscribed"


async def test_already_subscribed_and_channel_error() -> None:
    async with running_sim(markets=20, active=2) as sim, raw_client(sim) as c:
        await c.send("subscribe", channels=["ticker"])
        await c.recv()
        cid = await c.send("subscribe", channels=["ticker"])
        assert await c.recv() == {"id": cid, "type": "error", "msg": {"code": 6, "msg": "Already subscribed"}}
        cid = await c.send(
            "update_subscription",
            sids=[1],
            market_tickers=[sim.exchange.universe.market_ticker(0)],
            action="add_markets",
        )
        m = await c.recv()
        assert (m["id"], m["msg"]["code"]) == (cid, 10)


async def test_server_pings_with_heartbeat_payload_and_answers_pings() -> None:
    import aiohttp

    async with running_sim(markets=10, active=1, ping_interval_s=0.2) as sim:
        async with aiohttp.ClientSession() as http, http.ws_connect(sim.ws_url, autoping=False) as ws:
            msg = await ws.receive(timeout=2)
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.PING, b"heartbeat")
            await ws.ping(b"client")
            msg = await ws.receive(timeout=2)
            while msg.type == aiohttp.WSMsgType.PING:
                msg = await ws.receive(timeout=2)
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.PONG, b"client")


def normalise(frames: list[dict[str, Any]]) -> tuple[dict[str, list[tuple[Any, ...]]], dict[str, Book]]:
    """What a perfect client stores: canonical ledger rows, plus the books it rebuilt."""
    rows: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    books: dict[str, Book] = {}
    occ: dict[tuple[Any, ...], int] = {}
    repeats: dict[tuple[Any, ...], int] = {}
    for f in frames:
        t, m = f["type"], f.get("msg", {})
        if t == "orderbook_snapshot":
            books[m["market_ticker"]] = Book(
                {dollars_to_price(p): fp_to_qty(q) for p, q in m.get("yes_dollars_fp", [])},
                {dollars_to_price(p): fp_to_qty(q) for p, q in m.get("no_dollars_fp", [])},
            )
        elif t == "orderbook_delta":
            side, price = side_to_bool(m["side"]), dollars_to_price(m["price_dollars"])
            q = fp_to_qty(m["delta_fp"].lstrip("-")) * (-1 if m["delta_fp"].startswith("-") else 1)
            ts = ms_to_us(m["ts_ms"])
            key = (m["market_ticker"], ts, side, price, q)
            n = occ.get(key, 0)
            occ[key] = n + 1
            rows["delta"].append((*key, n))
            books[m["market_ticker"]].apply(side, price, q)
        elif t == "trade":
            rows["trade"].append(
                (
                    m["trade_id"],
                    m["market_ticker"],
                    ms_to_us(m["ts_ms"]),
                    dollars_to_price(m["yes_price_dollars"]),
                    dollars_to_price(m["no_price_dollars"]),
                    fp_to_qty(m["count_fp"]),
                    side_to_bool(m["taker_outcome_side"]),
                    m["taker_book_side"],
                )
            )
        elif t == "ticker":
            market, ts = m["market_ticker"], ms_to_us(m["ts_ms"])
            # a ticker may carry only the fields that changed: an absent field is None
            values = (
                price_field(m, "price"),
                price_field(m, "yes_bid"),
                price_field(m, "yes_ask"),
                qty_field(m, "yes_bid_size"),
                qty_field(m, "yes_ask_size"),
                qty_field(m, "last_trade_size"),
                qty_field(m, "volume"),
                qty_field(m, "open_interest"),
                m.get("dollar_volume"),
                m.get("dollar_open_interest"),
            )
            n = occ.get((market, ts, values), 0)  # the same state again in one millisecond is another event
            occ[(market, ts, values)] = n + 1
            rows["ticker"].append((market, ts, *values, n))
        elif t in ("event_lifecycle", "event_fee_update"):  # on both lifecycle subscriptions: a set
            ident = (m["event_ticker"], orjson.dumps(m, option=orjson.OPT_SORT_KEYS).decode())
            rows[t].append((*ident, _repeat(repeats, (f.get("sid"), t, *ident))))
        elif t in ("market_lifecycle_v2", "multivariate_market_lifecycle"):
            s = 1_000_000
            settlement = m.get("settlement_value_dollars")
            rows["lifecycle"].append(
                (
                    m["market_ticker"],
                    m["event_type"],
                    *(m[k] * s if k in m else None for k in ("open_ts", "close_ts", "determination_ts", "settled_ts")),
                    m.get("result"),
                    m.get("is_deactivated"),
                    None if "exchange_index" not in m else str(m["exchange_index"]),
                    m.get("price_level_structure"),
                    None if settlement is None else dollars_to_price(settlement),
                )
            )
            rows["lifecycle"][-1] += (_repeat(repeats, (f.get("sid"), *rows["lifecycle"][-1])),)
    return rows, books


def _repeat(seen: dict[tuple[Any, ...], int], key: tuple[Any, ...]) -> int:
    """Identical messages the subscription delivered before (the test runs well inside the 60 s window)."""
    n = seen.get(key, 0)
    seen[key] = n + 1
    return n


async def test_ledger_equals_what_a_perfect_client_receives() -> None:
    # every lifecycle tick also sends an event_lifecycle and a fee update: each variant is certain to occur
    async with running_sim(
        rate=3000,
        markets=300,
        active=30,
        duplicate_rate=0.2,
        lifecycle_interval_s=0.05,
        event_lifecycle_rate=1.0,
        fee_update_rate=1.0,
    ) as sim:
        async with raw_client(sim) as c:
            u = sim.exchange.universe
            await sim.pause()  # subscribe before anything happens, then let the market run
            hot = [u.market_ticker(i) for i in sim.exchange.hot]
            await c.send("subscribe", channels=["orderbook_delta"], market_tickers=hot)
            await c.send(
                "subscribe", channels=["ticker", "trade", "market_lifecycle_v2", "multivariate_market_lifecycle"]
            )
            await c.recv_until(lambda m: m.get("msg", {}).get("channel") == "multivariate_market_lifecycle")
            await c.drain(0.2)
            sim._engine = asyncio.create_task(sim.engine())
            await asyncio.sleep(1.5)
            await sim.pause()
            await c.drain_all(sim)
        frames = [orjson.loads(f) for f in c.frames]
        rows, books = normalise(frames)
        ledger = sim.ledger
        # markets activated mid-run joined the hot set after our subscription: compare the subscribed ones
        hot_set = set(hot)
        assert sum(1 for r in ledger.rows("delta") if r[0] in hot_set) > 1000
        dupes = [r for r in ledger.rows("delta") if r[5] > 0]
        assert dupes, "identical deltas within one exchange millisecond must occur"
        tickers = [f["msg"] for f in frames if f.get("type") == "ticker"]
        partial = [m for m in tickers if "volume_fp" not in m or "yes_bid_dollars" not in m]
        assert 0 < len(partial) < len(tickers), "tickers carrying only what changed must occur, and full ones"
        for kind in ("delta", "ticker", "trade"):
            expected = [r for r in ledger.rows(kind) if r[1 if kind == "trade" else 0] in hot_set]
            assert diff_rows(expected, rows[kind]) == {"missing": [], "extra": []}, kind
        assert diff_rows(ledger.rows("lifecycle"), rows["lifecycle"]) == {"missing": [], "extra": []}
        assert len(ledger.rows("lifecycle")) >= 5
        for kind in ("event_lifecycle", "event_fee_update"):
            assert set(ledger.rows(kind)) == set(rows[kind]) and ledger.rows(kind), kind
        assert any(r[0].startswith("KXMVE") for r in ledger.rows("lifecycle"))  # multivariate, own channel
        end = sim.exchange.last_ts_us
        for t in hot:
            truth = ledger.book_at(t, end)
            assert truth is not None
            assert (books[t].yes, books[t].no) == (truth.yes, truth.no), t


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_frames_arrive_whole_and_in_order_with_and_without_permessage_deflate(compression: str | None) -> None:
    """Uncompressed sessions get many frames per socket write; compressed ones go through aiohttp."""
    async with running_sim(markets=50, active=20) as sim, raw_client(sim, compression=compression) as c:
        assert [e.name for e in c.ws.protocol.extensions] == (["permessage-deflate"] if compression else [])
        tickers = [sim.exchange.universe.market_ticker(i) for i in sim.exchange.hot]
        await c.send("subscribe", channels=["orderbook_delta"], market_tickers=tickers)
        await c.recv_until(lambda m: m["type"] == "subscribed")
        for _ in range(2000):
            sim.exchange.step(sim.exchange.now_us())
        await c.drain(0.5)
        frames = [orjson.loads(f) for f in c.frames]
    book = [f for f in frames if f["type"] in ("orderbook_snapshot", "orderbook_delta")]
    assert len(book) > 1000
    assert [f["seq"] for f in book] == list(range(1, len(book) + 1))


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_batched_text_frames_parse_as_rfc6455_frames(size: int) -> None:
    """The writer's own framing (many frames per socket write) read back by websockets' frame parser."""
    from websockets.frames import Frame, Opcode
    from websockets.streams import StreamReader

    from simulator._ws import text_frame

    payloads = [b"x" * size, b'{"type":"ok"}']
    reader = StreamReader()
    reader.feed_data(b"".join(text_frame(p) for p in payloads))
    reader.feed_eof()
    got = []
    for _ in payloads:
        parser = Frame.parse(reader.read_exact, mask=False, max_size=None)
        with pytest.raises(StopIteration) as done:
            while True:
                next(parser)
        frame = done.value.value
        got.append((frame.opcode, frame.fin, frame.data))
    assert got == [(Opcode.TEXT, True, p) for p in payloads]
