"""Router throughput on one core: frame in -> seq check -> normalise -> msgpack -> pipelined XADD done,
against two ceilings measured in the same run on the same frames: orjson parse alone, and parse + raw
frames XADDed in the same batches (no normalisation). Target: router >= 50% of parse + raw XADD."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import msgpack
import orjson
import redis.asyncio as aioredis

from core.config import RedisConfig, WebSocketConfig
from core.redisconn import async_redis_from_config
from gatherer import WsConnection
from router import RedisSink
from simulator import Exchange, ExchangeOptions, Ledger

REDIS_URL = "redis://127.0.0.1:6379/15"
BATCH = 500


def make_frames(n: int) -> list[tuple[int, str]]:
    """(sid, frame) as one orderbook connection (sid 1) and a ticker+trade connection (sids 2, 3) get them."""
    frames: list[tuple[int, str]] = []
    seq = {1: 0, 2: 0, 3: 0}
    sid_of = {"orderbook_delta": 1, "ticker": 2, "trade": 3}

    def publish(channel: str, ticker: str, mtype: str, body: str) -> None:
        if channel in sid_of:
            sid = sid_of[channel]
            seq[sid] += 1
            frames.append((sid, f'{{"type":"{mtype}","sid":{sid},"seq":{seq[sid]},"msg":{body}}}'))

    ex = Exchange(
        ExchangeOptions(markets=500, active=200, lifecycle_interval_s=0), Ledger(keep_in_memory=False), publish
    )
    while len(frames) < n:
        ex.step(ex.now_us())
    return frames[:n]


def parse_only(frames: list[tuple[int, str]]) -> float:
    t0 = time.perf_counter()
    for _, f in frames:
        orjson.loads(f)
    return len(frames) / (time.perf_counter() - t0)


class Batches:
    """Items msgpacked BATCH at a time into one stream entry, eight entries a pipelined XADD (as the sink)."""

    def __init__(self, r: aioredis.Redis, stream: str, wrap: Any = lambda batch: batch) -> None:
        self.pipe, self.stream, self.wrap = r.pipeline(transaction=False), stream, wrap
        self.batch: list[Any] = []
        self.queued = 0

    def add(self, item: Any) -> bool:
        """True when eight entries wait: then `await flush()` (no coroutine per item, as in the sink)."""
        self.batch.append(item)
        if len(self.batch) == BATCH:
            self.pipe.xadd(self.stream, {b"p": msgpack.packb(self.wrap(self.batch), use_bin_type=True)})
            self.batch = []
            self.queued += 1
        return self.queued == 8

    async def flush(self) -> None:
        await self.pipe.execute()
        self.queued = 0

    async def close(self) -> None:
        if self.batch:
            self.pipe.xadd(self.stream, {b"p": msgpack.packb(self.wrap(self.batch), use_bin_type=True)})
        await self.pipe.execute()


async def parse_and_raw_xadd(frames: list[tuple[int, str]], prefix: str) -> float:
    r = async_redis_from_config(RedisConfig(url=REDIS_URL))
    t0 = time.perf_counter()
    out = Batches(r, f"{prefix}:raw")
    for _, f in frames:
        orjson.loads(f)
        if out.add(f.encode()):
            await out.flush()
    await out.close()
    rate = len(frames) / (time.perf_counter() - t0)
    await r.aclose()
    return rate


async def floor(frames: list[tuple[int, str]], prefix: str) -> float:
    """The least any CPython normaliser of these frames must do: parse, look up each field a delta record
    needs (prices and sizes through a warm cache), build the record tuple, msgpack it in batches and XADD.
    No validation, no sequence check, no occurrence numbering, other message types treated like deltas.
    Its ratio to parse + raw XADD bounds what the router can reach in this interpreter."""
    from core.conversions import dollars_to_price, fp_to_qty
    from core.records import OrderbookDelta

    prices: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for _, f in frames:  # warm caches of every wire string, as a running router has them
        m = orjson.loads(f)["msg"]
        for k, conv, cache in (("price_dollars", dollars_to_price, prices), ("delta_fp", fp_to_qty, sizes)):
            if m.get(k):
                cache[m[k]] = conv(m[k])
    r = async_redis_from_config(RedisConfig(url=REDIS_URL))
    t0 = time.perf_counter()
    out = Batches(r, f"{prefix}:floor", lambda batch: [1, 5, batch])
    pget: Any = prices.get
    qget: Any = sizes.get
    for _, f in frames:
        obj = orjson.loads(f)
        m = obj["msg"]
        due = out.add(
            OrderbookDelta(
                "g1", 0, m.get("ts_ms"), m.get("market_ticker"), m.get("market_id"), m.get("side") == "yes",
                pget(m.get("price_dollars")), qget(m.get("delta_fp")), 0, obj["sid"], obj["seq"],
                m.get("client_order_id"),
            )
        )  # fmt: skip
        if due:
            await out.flush()
    await out.close()
    rate = len(frames) / (time.perf_counter() - t0)
    await r.aclose()
    return rate


async def router(frames: list[tuple[int, str]], prefix: str) -> float:
    r = async_redis_from_config(RedisConfig(url=REDIS_URL))
    import tempfile
    from pathlib import Path

    sink = RedisSink(r, prefix, "bench", Path(tempfile.mkdtemp()), records_per_entry=BATCH, memory_limit=10**9)
    conns = {
        sid: WsConnection(f"bench:{sid}", "ws://unused", ch, None, "bench", sink, WebSocketConfig())
        for sid, ch in ((1, "orderbook_delta"), (2, "ticker"), (3, "trade"))
    }
    for sid, c in conns.items():
        c.main.sid = c.main.local_sid = sid
    t0 = time.perf_counter()
    for n, (sid, f) in enumerate(frames, 1):
        c = conns[sid]
        c._handle(c.main, f, 0)
        if n % (BATCH * 8) == 0:
            await sink.flush()
    await sink.flush()
    rate = len(frames) / (time.perf_counter() - t0)
    assert sink.records_written == len(frames), (sink.records_written, len(frames))
    await r.aclose()
    return rate


async def _run(n: int) -> dict[str, Any]:
    frames = make_frames(n)
    prefix = f"kdbench{uuid.uuid4().hex[:6]}"
    parse_rate = parse_only(frames)
    raw_rate = await parse_and_raw_xadd(frames, prefix)
    router_rate = await router(frames, prefix)
    floor_rate = await floor(frames, prefix)
    r = async_redis_from_config(RedisConfig(url=REDIS_URL))
    for key in await r.keys(f"{prefix}:*"):
        await r.delete(key)
    await r.aclose()
    return {
        "frames": n,
        "parse_only_per_s": round(parse_rate),
        "parse_raw_xadd_per_s": round(raw_rate),
        "router_per_s": round(router_rate),
        "router_vs_raw_xadd": round(router_rate / raw_rate, 3),
        "floor_per_s": round(floor_rate),
        "floor_vs_raw_xadd": round(floor_rate / raw_rate, 3),
        "router_vs_floor": round(router_rate / floor_rate, 3),
        "target": 0.5,
        "cores": 1,
    }


def run(n: int = 200_000) -> dict[str, Any]:
    return asyncio.run(_run(n))


if __name__ == "__main__":
    import json

    print(json.dumps(run()))
