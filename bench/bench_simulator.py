"""How many messages per second the simulator can emit here, next to the ceilings measured in this run:
the engine alone (no subscribers) and a bare aiohttp->websockets pipe sending a prebuilt frame.
Later benchmarks compare the platform against `delivered_per_s`: above it, the simulator is the limit."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import websockets
from aiohttp import web

from simulator import Exchange, ExchangeOptions, Ledger, SimOptions, Simulator

SECONDS = 3.0


def engine_only() -> float:
    ex = Exchange(ExchangeOptions(markets=2000, active=500, lifecycle_interval_s=0), Ledger())
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < SECONDS:
        for _ in range(1000):
            n += ex.step(ex.now_us())
    return n / (time.perf_counter() - t0)


async def raw_pipe() -> float:
    frame = (
        '{"type":"orderbook_delta","sid":1,"seq":1,"msg":{"market_ticker":"KXHIGHNY-26JAN01-T40","market_id":"x",'
        '"price_dollars":"0.4800","delta_fp":"-54.00","side":"yes","ts_ms":1780099428263}}'
    )

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        t_end = time.perf_counter() + SECONDS
        while time.perf_counter() < t_end:
            for _ in range(500):
                await ws.send_str(frame)
        await ws.close()
        return ws

    app = web.Application()
    app.add_routes([web.get("/", handler)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    n = 0
    t0 = time.perf_counter()
    async with websockets.connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
        try:
            async for _ in ws:
                n += 1
        except websockets.ConnectionClosed:
            pass
    dt = time.perf_counter() - t0
    await runner.cleanup()
    return n / dt


async def simulator_delivered() -> dict[str, float]:
    sim = Simulator(
        SimOptions(port=0, rate=0, exchange=ExchangeOptions(markets=2000, active=500, lifecycle_interval_s=0))
    )
    await sim.start()
    ex = sim.exchange
    received = 0
    async with websockets.connect(sim.ws_url, max_size=None) as ws:
        hot = [ex.universe.market_ticker(i) for i in ex.hot]
        await ws.send(
            f'{{"id":1,"cmd":"subscribe","params":{{"channels":["orderbook_delta"],"market_tickers":{hot!r}}}}}'.replace(
                "'", '"'
            )
        )
        await ws.send('{"id":2,"cmd":"subscribe","params":{"channels":["ticker","trade"]}}')

        async def consume() -> None:
            nonlocal received
            async for _ in ws:
                received += 1

        reader = asyncio.create_task(consume())
        await asyncio.sleep(0.5)
        start_rx, t0, events = received, time.perf_counter(), 0
        while time.perf_counter() - t0 < SECONDS:
            for _ in range(200):
                events += ex.step(ex.now_us())
            await asyncio.sleep(0)  # let the writer and the reader run
        while any(s.queue for s in sim.sessions):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        dt = time.perf_counter() - t0
        reader.cancel()
    await sim.stop()
    return {"events_per_s": events / dt, "delivered_per_s": (received - start_rx) / dt}


def run() -> dict[str, Any]:
    engine = engine_only()
    pipe = asyncio.run(raw_pipe())
    sim = asyncio.run(simulator_delivered())
    return {
        "engine_events_per_s": round(engine),
        "raw_ws_pipe_frames_per_s": round(pipe),
        "sim_events_per_s": round(sim["events_per_s"]),
        "delivered_per_s": round(sim["delivered_per_s"]),
        "delivered_vs_raw_pipe": round(sim["delivered_per_s"] / pipe, 3),
        "note": "one client, one process, both on this machine; the raw pipe is the ceiling for one connection",
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run()))
