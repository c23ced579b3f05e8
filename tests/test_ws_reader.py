"""The gatherer's WebSocket reader (picows) against an independent server (websockets): a fragmented message
is joined before it is read, the peer's close code tells an end from a loss, and every frame before a close
is kept. The simulator never fragments, so a server of its own plays the peer here."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.server import ServerConnection, serve

from core.records import Trade
from gatherer._connection import WsConnection
from router import MemorySink
from tests.gatherkit import FAST_WS


def trade_frame(seq: int, trade_id: str, count: str = "5.00") -> str:
    msg = {
        "trade_id": trade_id,
        "market_ticker": "KXTEST-26DEC06-T50",
        "yes_price_dollars": "0.3600",
        "no_price_dollars": "0.6400",
        "count_fp": count,
        "taker_side": "yes",
        "ts_ms": 1_796_000_000_000 + seq,
    }
    return json.dumps({"type": "trade", "sid": 7, "seq": seq, "msg": msg})


Script = Callable[[ServerConnection], Awaitable[None]]


@asynccontextmanager
async def peer(script: Script) -> AsyncIterator[tuple[str, list[int]]]:
    """A server that answers the subscribe, then runs `script` on each connection; yields its URL and a list
    that grows by one per connection."""
    sessions: list[int] = []

    async def handler(ws: ServerConnection) -> None:
        sessions.append(len(sessions) + 1)
        cmd = json.loads(await ws.recv())
        await ws.send(json.dumps({"id": cmd["id"], "type": "subscribed", "msg": {"channel": "trade", "sid": 7}}))
        await script(ws)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/", sessions


async def capture(script: Script, until: Callable[[MemorySink, list[int]], bool]) -> tuple[MemorySink, WsConnection]:
    sink = MemorySink()
    async with peer(script) as (url, sessions):
        conn = WsConnection("t:trade:1", url, "trade", None, "g1", sink, FAST_WS)
        task = asyncio.create_task(conn.run())
        try:
            async with asyncio.timeout(10):
                while not until(sink, sessions):
                    await asyncio.sleep(0.02)
        finally:
            conn.stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return sink, conn


def trades(sink: MemorySink) -> list[tuple[str, int]]:
    return [(r.trade_id, r.count) for r in sink.records if isinstance(r, Trade)]


async def test_a_fragmented_message_is_joined_and_read_once() -> None:
    async def script(ws: ServerConnection) -> None:
        await ws.send(trade_frame(1, "t1"))
        whole = trade_frame(2, "t2", count="12.50")
        await ws.send([whole[:10], whole[10:40], whole[40:]])  # one message in three frames
        await ws.send(trade_frame(3, "t3"))
        await ws.wait_closed()

    sink, conn = await capture(script, lambda s, _: len(trades(s)) >= 3)
    assert trades(sink) == [("t1", 500), ("t2", 1250), ("t3", 500)]
    assert conn.stats.by_type == {"subscribed": 1, "trade": 3} and not sink.dead


@pytest.mark.parametrize(("code", "lost"), [(1000, False), (1001, False), (4001, True), (1011, True)])
async def test_the_peers_close_code_tells_an_end_from_a_loss(
    code: int, lost: bool, caplog: pytest.LogCaptureFixture
) -> None:
    async def script(ws: ServerConnection) -> None:
        await ws.send(trade_frame(1, "t1"))
        await ws.send(trade_frame(2, "t2"))
        await ws.close(code, "bye")

    caplog.set_level(logging.WARNING, "gatherer._connection")
    sink, conn = await capture(script, lambda s, sessions: len(sessions) >= 2 and len(trades(s)) >= 4)
    # every frame sent before the close was kept, and the connection came back each time
    assert trades(sink)[:4] == [("t1", 500), ("t2", 500)] * 2
    assert conn.stats.reconnects >= 1
    warned = [r.getMessage() for r in caplog.records if "connection lost" in r.getMessage()]
    if lost:
        assert warned and all(f"closed with code {code}" in w for w in warned), warned
    else:
        assert not warned


async def test_a_peer_that_stops_answering_pings_is_dropped_and_reconnected(caplog: pytest.LogCaptureFixture) -> None:
    """The first session's peer goes silent and stops reading, so no pong comes: the client pings after
    max(ping_interval_s, 2/3 dead_after_s) = 2 s, gives up 1 s later, and reconnects (the peer would only
    drop the socket after 8 s)."""
    stalled: list[ServerConnection] = []

    async def script(ws: ServerConnection) -> None:
        await ws.send(trade_frame(1, "t1"))
        if not stalled:
            stalled.append(ws)
            ws.transport.pause_reading()  # neither frames nor pings are read: no pong
            await asyncio.sleep(8)  # long after the client gave up on its ping
            ws.transport.abort()
            return
        await ws.wait_closed()

    caplog.set_level(logging.WARNING, "gatherer._connection")
    _, conn = await capture(script, lambda s, sessions: len(sessions) >= 2 and len(trades(s)) >= 2)
    assert conn.stats.reconnects == 1
    lost = [r.getMessage() for r in caplog.records if "connection lost" in r.getMessage()]
    assert len(lost) == 1 and "closed by us" in lost[0], lost  # the client ended it, not the server's abort
