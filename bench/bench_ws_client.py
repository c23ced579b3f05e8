"""The WebSocket receive path on its own: client CPU per frame for the same frames from the same local server,
with websockets (`recv(decode=False)`), aiohttp's client (`receive()`, bytes) and picows (a callback per
frame: the gatherer's client). Each client runs in its own process and reports its own CPU time, so the
server's cost is not counted. `python -m bench.bench_ws_client [frames]`."""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
import time
from typing import Any

FRAME = (
    '{{"type":"orderbook_delta","sid":1,"seq":{seq},"msg":{{"market_ticker":"KXHIGHNY-26JAN{d:02d}-T{t}",'
    '"market_id":"f675e9dd-6107-46d3-a50a-cdb2159e821e","side":"{side}","price_dollars":"0.{p:02d}00",'
    '"delta_fp":"{q}.00","ts_ms":{ts}}}}}'
)


def frames(n: int) -> list[bytes]:
    return [
        FRAME.format(seq=i + 1, d=i % 28 + 1, t=40 + i % 7, side="yes" if i & 1 else "no", p=i % 99 + 1,
                     q=(i * 37) % 900 - 450, ts=1_795_000_000_000 + i).encode()
        for i in range(n)
    ]  # fmt: skip


async def serve(n: int, port_out: Any) -> None:
    from aiohttp import web

    from simulator import text_frame  # the simulator's own writer: prebuilt frames, one write per batch

    payload = [text_frame(f) for f in frames(n)]

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, compress=False)
        await ws.prepare(request)
        transport = request.transport
        assert transport is not None
        for i in range(0, len(payload), 256):
            transport.write(b"".join(payload[i : i + 256]))
            while transport.get_write_buffer_size() > 1 << 20:
                await asyncio.sleep(0.001)
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port_out.write(f"{site._server.sockets[0].getsockname()[1]}\n")  # type: ignore[union-attr]
    port_out.flush()
    await asyncio.sleep(3600)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def client(kind: str, url: str, n: int) -> dict[str, Any]:
    got = size = 0
    t0, c0 = time.perf_counter(), _cpu()
    if kind == "websockets":
        import websockets

        async with websockets.connect(url, compression=None, max_size=None, max_queue=None) as conn:
            while got < n:
                raw = await conn.recv(decode=False)
                got += 1
                size += len(raw)
    elif kind == "aiohttp":
        import aiohttp

        async with (
            aiohttp.ClientSession() as s,
            s.ws_connect(url, compress=0, max_msg_size=0, decode_text=False) as ws,  # as the gatherer reads
        ):
            while got < n:
                msg = await ws.receive()
                got += 1
                size += len(msg.data)
    elif kind == "picows":
        import picows

        done = asyncio.get_running_loop().create_future()

        class Listener(picows.WSListener):  # type: ignore[misc,unused-ignore]
            def on_ws_frame(self, transport: Any, frame: Any) -> None:
                nonlocal got, size
                if frame.msg_type == picows.WSMsgType.TEXT:
                    got += 1
                    size += len(frame.get_payload_as_bytes())
                    if got == n and not done.done():
                        done.set_result(None)

        transport, _ = await picows.ws_connect(Listener, url)
        await done
        transport.disconnect()
    return {
        "client": kind,
        "frames": got,
        "seconds": round(time.perf_counter() - t0, 2),
        "cpu_us_per_frame": round((_cpu() - c0) / got * 1e6, 3),
        "bytes": size,
    }


def run(n: int = 300_000) -> dict[str, Any]:
    serve_code = f"import asyncio, sys; from bench.bench_ws_client import serve; asyncio.run(serve({n}, sys.stdout))"
    server = subprocess.Popen([sys.executable, "-c", serve_code], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = f"ws://127.0.0.1:{server.stdout.readline().strip()}/"
        out: dict[str, Any] = {"frames": n, "frame_bytes": len(frames(1)[0])}
        for kind in ("websockets", "aiohttp", "picows"):
            code = (
                "import asyncio, json; from bench.bench_ws_client import client; "
                f"print(json.dumps(asyncio.run(client({kind!r}, {url!r}, {n}))))"
            )
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if done.returncode != 0:
                out[kind] = {"error": done.stderr.strip().splitlines()[-1][:200]}
                continue
            out[kind] = json.loads(done.stdout)
        base = out["websockets"].get("cpu_us_per_frame")
        for kind in ("aiohttp", "picows"):
            if base and "cpu_us_per_frame" in out[kind]:
                out[kind]["cheaper_than_websockets"] = round(base / out[kind]["cpu_us_per_frame"], 2)
        if "cpu_us_per_frame" in out["aiohttp"] and "cpu_us_per_frame" in out["picows"]:
            ratio = out["aiohttp"]["cpu_us_per_frame"] / out["picows"]["cpu_us_per_frame"]
            out["picows"]["cheaper_than_aiohttp"] = round(ratio, 2)  # the gatherer's client before it
        return out
    finally:
        server.kill()


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 300_000)))
