"""Every fault kind, observed by a raw client; the schedule file and inline flags; REST faults."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets

from simulator import FaultError, FaultSchedule, WsFault, load_schedule
from tests.simkit import RawClient, raw_client, running_sim


async def run_with_fault(fault: WsFault, steps: int = 400) -> tuple[list[str], Any]:
    """Subscribe to the orderbook of every hot market, make the market move, return the raw frames."""
    async with running_sim(markets=30, active=5, faults=FaultSchedule(ws=[fault])) as sim, raw_client(sim) as c:
        hot = [sim.exchange.universe.market_ticker(i) for i in sim.exchange.hot]
        await c.send("subscribe", channels=["orderbook_delta"], market_tickers=hot)
        await c.recv_until(lambda m: m["type"] == "subscribed")
        for _ in range(steps):
            sim.exchange.step(sim.exchange.now_us())
        with contextlib.suppress(websockets.ConnectionClosed):
            await c.drain(0.5)
        return c.frames, sim


def seqs(frames: list[str]) -> list[int]:
    out = []
    for f in frames:
        try:
            m = orjson.loads(f)
        except orjson.JSONDecodeError:
            continue
        if m.get("type") in ("orderbook_snapshot", "orderbook_delta"):
            out.append(m["seq"])
    return out


async def test_skip_seq() -> None:
    frames, sim = await run_with_fault(WsFault(kind="skip_seq", after_messages=20))
    s = seqs(frames)
    jumps = [(a, b) for a, b in itertools.pairwise(s) if b != a + 1]
    assert len(jumps) == 1 and jumps[0][1] == jumps[0][0] + 2
    assert [f[2] for f in sim.ledger.faults()] == ["skip_seq"]


async def test_duplicate() -> None:
    frames, _ = await run_with_fault(WsFault(kind="duplicate", after_messages=20))
    s = seqs(frames)
    assert len(s) - len(set(s)) == 1
    dup = next(x for x in set(s) if s.count(x) == 2)
    i = s.index(dup)
    assert s[i + 1] == dup


async def test_reorder() -> None:
    frames, _ = await run_with_fault(WsFault(kind="reorder", after_messages=20))
    s = seqs(frames)
    assert sorted(s) == list(range(1, len(s) + 1))
    assert s != sorted(s)
    back = [i for i in range(1, len(s)) if s[i] < s[i - 1]]
    assert len(back) == 1


async def test_malformed_and_unknown_type_and_truncated() -> None:
    for kind in ("malformed", "unknown_type", "truncated"):
        frames, sim = await run_with_fault(WsFault(kind=kind, after_messages=10))
        bad = []
        types = []
        for f in frames:
            try:
                types.append(orjson.loads(f).get("type"))
            except orjson.JSONDecodeError:
                bad.append(f)
        if kind == "unknown_type":
            assert "mystery_update" in types and not bad
        else:
            assert len(bad) == 1, kind
        if kind == "truncated":  # the truncated frame replaced a real one: the client sees a seq gap
            s = seqs(frames)
            assert any(b == a + 2 for a, b in itertools.pairwise(s))
        assert [f[2] for f in sim.ledger.faults()] == [kind]


async def test_fragment_sends_one_message_in_three_frames_in_its_place() -> None:
    frames, sim = await run_with_fault(WsFault(kind="fragment", after_messages=10))
    s = seqs(frames)  # the client joins the fragments: every message whole, none lost, none moved
    assert s == list(range(1, len(s) + 1)) and len(s) > 10
    assert [f[2] for f in sim.ledger.faults()] == ["fragment"]


def test_fragmented_text_is_rfc_6455_framing() -> None:
    from simulator._ws import fragmented_text

    wire = fragmented_text(b"abcdefgh")
    assert wire == b"\x01\x02ab" + b"\x00\x03cde" + b"\x80\x03fgh"  # text no FIN, continuation, continuation FIN


async def test_bad_utf8_text_frame() -> None:
    frames, sim = await run_with_fault(WsFault(kind="bad_utf8", after_messages=10))
    assert sum("\ufffd" in f for f in frames) == 1
    assert len(seqs([f for f in frames if "\ufffd" not in f])) > 10  # the stream went on after it
    assert [f[2] for f in sim.ledger.faults()] == ["bad_utf8"]


async def test_close_abruptly_after_n_messages() -> None:
    fault = WsFault(kind="close", connection=1, after_messages=15)
    async with running_sim(markets=30, active=5, faults=FaultSchedule(ws=[fault])) as sim:
        async with websockets.connect(sim.ws_url) as ws:
            c = RawClient(ws)
            hot = [sim.exchange.universe.market_ticker(i) for i in sim.exchange.hot]
            await c.send("subscribe", channels=["orderbook_delta"], market_tickers=hot)
            await c.recv_until(lambda m: m["type"] == "subscribed")
            for _ in range(300):
                sim.exchange.step(sim.exchange.now_us())
            with pytest.raises(websockets.ConnectionClosedError) as err:
                await c.drain(1.0)
            assert err.value.rcvd is None  # no close frame: the TCP connection was cut
            assert len(seqs(c.frames)) == 15
        # connection 2 is not in the schedule: it runs clean
        async with raw_client(sim) as c2:
            await c2.send("subscribe", channels=["orderbook_delta"], market_tickers=hot)
            await c2.recv_until(lambda m: m["type"] == "subscribed")
            for _ in range(300):
                sim.exchange.step(sim.exchange.now_us())
            await c2.drain(0.3)
            s = seqs(c2.frames)
            assert s == list(range(1, len(s) + 1)) and len(s) > 15


async def test_silence_stops_data_and_pongs() -> None:
    fault = WsFault(kind="silence", after_s=0.0)
    async with running_sim(markets=30, active=5, faults=FaultSchedule(ws=[fault])) as sim:
        async with websockets.connect(sim.ws_url, ping_interval=None) as ws:
            c = RawClient(ws)
            await c.send("subscribe", channels=["ticker"])
            await asyncio.sleep(0.3)
            for _ in range(100):
                sim.exchange.step(sim.exchange.now_us())
            pong = await ws.ping()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(pong, 1.0)
            assert await c.drain(0.3) == []


async def test_stall_delays_then_delivers_everything() -> None:
    fault = WsFault(kind="stall", after_messages=5, duration_s=1.0)
    async with running_sim(markets=30, active=5, faults=FaultSchedule(ws=[fault])) as sim, raw_client(sim) as c:
        hot = [sim.exchange.universe.market_ticker(i) for i in sim.exchange.hot]
        await c.send("subscribe", channels=["orderbook_delta"], market_tickers=hot)
        await c.recv_until(lambda m: m["type"] == "subscribed")
        for _ in range(100):
            sim.exchange.step(sim.exchange.now_us())
        early = await c.drain(0.4)
        assert 1 <= len(early) <= 6  # subscribed + 5 data messages, then nothing during the stall
        await c.drain(1.5)
        s = seqs(c.frames)
        assert s == list(range(1, len(s) + 1)) and len(s) > 20


async def test_rest_faults_429_500_slow_and_expired_cursor() -> None:
    sched = load_schedule(
        None,
        rest=[
            "kind=429,path=/markets,after_requests=2,count=2",
            "kind=500,path=/events,after_requests=1",
            "kind=slow,path=/series,delay_s=0.6",
            "kind=expire_cursor,path=/markets,after_requests=5",
        ],
    )
    async with (
        running_sim(markets=3000, active=5, faults=sched) as sim,
        httpx.AsyncClient(base_url=sim.rest_url) as h,
    ):
        codes = [(await h.get("/markets", params={"limit": 10})).status_code for _ in range(4)]
        assert codes == [200, 429, 429, 200]
        assert (await h.get("/events")).status_code == 500
        assert (await h.get("/events")).status_code == 200
        t0 = asyncio.get_running_loop().time()
        assert (await h.get(f"/series/{sim.exchange.universe.series_ticker(0)}")).status_code == 200
        assert asyncio.get_running_loop().time() - t0 >= 0.6
        cursor = (await h.get("/markets", params={"limit": 10})).json()["cursor"]  # request 5: cursor expires
        r = await h.get("/markets", params={"limit": 10, "cursor": cursor})
        assert r.status_code == 400 and r.json()["error"] == {
            "code": "invalid_cursor",
            "message": "cursor expired",
            "details": "",
        }
        kinds = [f[2] for f in sim.ledger.faults()]
        assert kinds == ["429", "429", "500", "slow", "expire_cursor"]


def test_schedule_file_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "faults.yaml"
    p.write_text("ws:\n  - kind: close\n    connection: 2\n    after_s: 1.5\nrest:\n  - kind: '503'\n")
    sched = load_schedule(p, ws=["kind=skip_seq,after_messages=10"])
    assert sched.ws[0] == WsFault(kind="close", connection=2, after_s=1.5)
    assert sched.for_connection(1) == [WsFault(kind="skip_seq", after_messages=10)]
    assert len(sched.for_connection(2)) == 2
    assert sched.rest[0].kind == "503"
    p.write_text("ws:\n  - kind: explode\n    after_messages: 1\n")
    with pytest.raises(FaultError, match=r"faults.yaml: ws.0.kind"):
        load_schedule(p)
    with pytest.raises(FaultError, match="exactly one of after_messages or after_s"):
        load_schedule(None, ws=["kind=close"])
    with pytest.raises(FaultError, match="expected key=value"):
        load_schedule(None, ws=["close"])


def test_example_schedule_is_valid() -> None:
    sched = load_schedule(Path(__file__).resolve().parents[1] / "config" / "faults.example.yaml")
    assert [f.kind for f in sched.ws] == ["skip_seq", "close", "silence"]
    assert sched.rest[0].count == 2
