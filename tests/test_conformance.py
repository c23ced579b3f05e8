"""The conformance corpus (tests/conformance/frames.json): frames as Kalshi documents them, in both field
generations, each with the record it must become, numbers written by hand. Every frame normalises to its
record (none is dead-lettered), and every frame the simulator sends has only fields the corpus documents for
its type and normalises without a dead letter."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from router import FrameNormaliser, parse
from tests.simkit import raw_client, running_sim

CORPUS = json.loads((Path(__file__).parent / "conformance" / "frames.json").read_text())["cases"]
LEVELS = ("yes_bids", "no_bids")


@pytest.mark.parametrize("case", CORPUS, ids=[c["name"] for c in CORPUS])
def test_documented_frame_becomes_its_record(case: dict[str, Any]) -> None:
    rec = FrameNormaliser("g1").normalise(parse(orjson.dumps(case["frame"])), 1_700_000_000_000_000)
    want = dict(case["record"])
    assert type(rec).__name__ == want.pop("kind")
    got = {k: ([list(lv) for lv in getattr(rec, k)] if k in LEVELS else getattr(rec, k)) for k in want}
    assert got == want


def documented_fields() -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for case in CORPUS:
        out[case["frame"]["type"]] |= set(case["frame"]["msg"])
    # kalshi-api.md: multivariate_market_lifecycle has "the same payload as market_lifecycle_v2"
    same = out["market_lifecycle_v2"] | out["multivariate_market_lifecycle"]
    out["market_lifecycle_v2"] = out["multivariate_market_lifecycle"] = same
    return out


async def test_every_simulator_frame_is_one_the_corpus_documents() -> None:
    """A simulator that invents fields (or drops a documented one's type) would test nothing real."""
    fields = documented_fields()
    seen: dict[str, int] = defaultdict(int)
    async with running_sim(rate=2000, markets=120, active=20, lifecycle_interval_s=0.05) as sim:
        async with raw_client(sim) as c:
            u = sim.exchange.universe
            await sim.pause()
            await c.send(
                "subscribe", channels=["orderbook_delta"], market_tickers=[u.market_ticker(i) for i in sim.exchange.hot]
            )
            await c.send(
                "subscribe", channels=["ticker", "trade", "market_lifecycle_v2", "multivariate_market_lifecycle"]
            )
            await c.recv_until(lambda m: m.get("msg", {}).get("channel") == "multivariate_market_lifecycle")
            sim._engine = asyncio.create_task(sim.engine())  # as test_simulator_ws: run the market again
            await asyncio.sleep(1.5)
            await sim.pause()
            await c.drain_all(sim)
        frames = [orjson.loads(f) for f in c.frames]
    n = FrameNormaliser("g1")
    for f in frames:
        t = f["type"]
        if t not in fields:
            assert t in ("subscribed", "ok", "unsubscribed"), t
            continue
        extra = set(f["msg"]) - fields[t]
        assert not extra, (t, extra)
        n.normalise(parse(orjson.dumps(f)), 1)  # raises FrameError on anything the router would dead-letter
        seen[t] += 1
    assert set(seen) >= {
        "orderbook_snapshot",
        "orderbook_delta",
        "ticker",
        "trade",
        "market_lifecycle_v2",
        "event_lifecycle",
    }, dict(seen)
