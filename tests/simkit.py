"""Test helpers around the simulator: start one on a free port, a raw WebSocket client that records all."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import websockets

from simulator import ExchangeOptions, SimOptions, Simulator


@contextlib.asynccontextmanager
async def running_sim(rate: float = 0, **kw: Any) -> AsyncIterator[Simulator]:
    ex_kw = {k: kw.pop(k) for k in list(kw) if k in ExchangeOptions.__dataclass_fields__}
    ex_kw.setdefault("lifecycle_interval_s", 0)
    opts = SimOptions(port=0, rate=rate, exchange=ExchangeOptions(**ex_kw), **kw)
    sim = Simulator(opts)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@dataclass
class RawClient:
    """Sends commands, keeps every frame it receives, in order."""

    ws: Any
    frames: list[str] = field(default_factory=list)
    next_id: int = 1

    async def send(self, cmd: str, **params: Any) -> int:
        cid = self.next_id
        self.next_id += 1
        await self.ws.send(orjson.dumps({"id": cid, "cmd": cmd, "params": params}).decode())
        return cid

    async def recv(self, timeout: float = 2.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        self.frames.append(raw)
        parsed: dict[str, Any] = orjson.loads(raw)
        return parsed

    async def recv_until(self, pred: Any, timeout: float = 3.0) -> list[dict[str, Any]]:
        got = []
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            m = await self.recv(max(0.01, end - loop.time()))
            got.append(m)
            if pred(m):
                return got

    async def drain(self, quiet_s: float = 0.3) -> list[str]:
        """Read until nothing arrives for quiet_s; returns the raw frames read."""
        out: list[str] = []
        while True:
            try:
                data = await asyncio.wait_for(self.ws.recv(decode=False), quiet_s)
            except TimeoutError:
                return out
            raw = data.decode(errors="replace")  # a frame that is not UTF-8 shows as U+FFFD, not an exception
            self.frames.append(raw)
            out.append(raw)

    async def drain_all(self, sim: Simulator, quiet_s: float = 0.3, timeout_s: float = 60) -> None:
        """After the market stopped: read until this client, the simulator's only one, holds every data frame
        the simulator wrote to it (its own count). A quiet spell alone also ends when the test process was
        merely descheduled for longer than the spell: a CI run with two test workers lost a tick's deltas so."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            await self.drain(quiet_s)
            sent = sum(s.data_sent for s in sim.sessions)
            got = sum(1 for f in self.frames if orjson.loads(f).get("type") not in CONTROL_REPLIES)
            if got >= sent and not any(s.queue for s in sim.sessions):
                return
            if loop.time() > deadline:
                raise AssertionError(f"{got} of the {sent} data frames the simulator wrote arrived")


CONTROL_REPLIES = ("subscribed", "unsubscribed", "ok", "error")  # what the simulator sends besides data


@contextlib.asynccontextmanager
async def raw_client(sim: Simulator, **kw: Any) -> AsyncIterator[RawClient]:
    async with websockets.connect(sim.ws_url, max_size=None, **kw) as ws:
        yield RawClient(ws)
