"""`kalshi-data gather` as a whole against the simulator and a private Redis: readiness, streams that hold
every event the simulator sent (Redis stopped for 30 s mid-run included), graceful stop, startup checks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from psycopg.conninfo import conninfo_to_dict

from core.codec import PAYLOAD_FIELD, decode_batch
from core.config import (
    DatabaseConfig,
    GathererConfig,
    KalshiConfig,
    MetricsConfig,
    RateLimitConfig,
    RedisConfig,
    RouterConfig,
)
from core.keys import STREAM_KINDS, stream
from core.records import RECORD_TYPES
from core.redisconn import async_redis_from_config
from devstack import free_port
from gatherer._process import Gatherer, StartupError
from simulator import diff_rows
from tests.gatherkit import FAST_WS, canonical
from tests.services import PrivateRedis
from tests.simkit import running_sim


def gatherer_config(sim: Any, dsn: str, redis_url: str, spill: Path, **router: Any) -> GathererConfig:
    db = conninfo_to_dict(dsn)
    return GathererConfig(
        gatherer_id="g1",
        kalshi=KalshiConfig(
            rest_url=sim.rest_url, ws_url=sim.ws_url, rate_limit=RateLimitConfig(read_per_second=200, burst=20)
        ),
        database=DatabaseConfig(
            host=str(db["host"]), port=int(str(db["port"])), dbname=str(db["dbname"]), user=str(db["user"])
        ),
        redis={"url": redis_url},
        websocket=FAST_WS,
        router=RouterConfig(spill_dir=str(spill), **router),
        metrics=MetricsConfig(port=0),
        poller={"enabled": False},
    )


async def stream_records(redis_url: str) -> list[Any]:
    r = async_redis_from_config(RedisConfig(url=redis_url))
    out: list[Any] = []
    for name in STREAM_KINDS:  # the data streams (the host also keeps a heartbeat and a hash beside them)
        entries: Any = await r.xrange(stream("kd", "g1", name))
        for _id, fields in entries:
            kind, records = decode_batch(fields[PAYLOAD_FIELD])
            out += [RECORD_TYPES[kind](*rec) for rec in records]
    await r.aclose()
    return out


async def wait_ready(g: Gatherer, seconds: float = 15) -> None:
    for _ in range(int(seconds * 20)):
        if g.ready()[0]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not ready: {g.ready()[1]}")


async def test_refuses_to_start_with_pending_migrations(
    empty_db: str, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    async with running_sim(markets=20, active=2) as sim:
        g = Gatherer(gatherer_config(sim, empty_db, private_redis.url, tmp_path))
        with pytest.raises(StartupError, match=r"pending migrations .* run `kalshi-data migrate"):
            await g.run()


@pytest.mark.slow
async def test_streams_hold_every_event_through_a_30s_redis_outage(
    plain_gatherer_db: str, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    async with running_sim(rate=300, markets=150, active=20, lifecycle_interval_s=1.0) as sim:
        await sim.pause()
        cfg = gatherer_config(sim, plain_gatherer_db, private_redis.url, tmp_path / "spill", memory_limit_records=1000)
        g = Gatherer(cfg)
        run = asyncio.create_task(g.run())
        await wait_ready(g)
        assert g.health is not None
        async with httpx.AsyncClient() as http:
            r = await http.get(f"http://127.0.0.1:{g.health.port}/readyz")
            assert r.status_code == 200 and r.json()["ready"] is True
            m = await http.get(f"http://127.0.0.1:{g.health.port}/metrics")
            assert "kd_ws_frames_total" in m.text
        sim._engine = asyncio.create_task(sim.engine())
        await asyncio.sleep(2)
        private_redis.stop()
        await asyncio.sleep(30)
        assert g.sink is not None and not g.sink.redis_up and g.sink.spilled_entries > 0
        async with httpx.AsyncClient() as http:
            r = await http.get(f"http://127.0.0.1:{g.health.port}/readyz")
            assert r.status_code == 503 and r.json()["redis_up"] is False
        private_redis.start()
        await asyncio.sleep(2)
        await sim.pause()
        await asyncio.sleep(1)
        g.stop_event.set()
        await asyncio.wait_for(run, 20)
    assert not list((tmp_path / "spill").glob("spill-*.bin"))
    got = canonical(await stream_records(private_redis.url))
    for kind in ("delta", "trade", "ticker", "lifecycle"):
        diff = diff_rows(set(sim.ledger.rows(kind)), got[kind])
        assert diff == {"missing": [], "extra": []}, (kind, len(diff["missing"]), len(diff["extra"]))
    assert len(got["delta"]) > 5000


@pytest.mark.slow
async def test_connection_worker_processes_capture_everything(
    gatherer_db: str, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    async with running_sim(rate=500, markets=150, active=40, lifecycle_interval_s=0.5) as sim:
        await sim.pause()
        cfg = gatherer_config(sim, gatherer_db, private_redis.url, tmp_path / "spill")
        cfg = cfg.model_copy(update={"websocket": FAST_WS.model_copy(update={"workers": 2})})
        g = Gatherer(cfg)
        run = asyncio.create_task(g.run())
        await wait_ready(g, 30)
        assert g.workers is not None and all(p.is_alive() for p in g.workers.procs)
        assert g.pool is not None
        # the connections are spread over both workers
        assert {c.worker for c in g.workers.remote.values()} == {0, 1}
        sim.resume()
        await asyncio.sleep(3)
        await sim.pause()
        await asyncio.sleep(1.5)
        frames = sum(c.stats.frames for c in g.pool.connections())
        assert frames > 1000  # counters reported by the workers reach the main process
        g.stop_event.set()
        await asyncio.wait_for(run, 40)
        assert not any(p.is_alive() for p in g.workers.procs)
    got = canonical(await stream_records(private_redis.url))
    for kind in ("delta", "trade", "ticker", "lifecycle"):
        diff = diff_rows(set(sim.ledger.rows(kind)), got[kind])
        assert diff == {"missing": [], "extra": []}, (kind, len(diff["missing"]), len(diff["extra"]))


async def test_trades_and_tickers_are_captured_while_the_registry_still_lists_markets(
    plain_gatherer_db: str, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    """At 10^5-10^6 markets the initial listing takes tens of seconds; a gatherer blind until it ends missed
    every trade of a restart window. The global channels subscribe at once and the books follow the listing
    page by page: with the listing slowed to over 2 s, trades, tickers and deltas reach Redis before the
    registry is synced."""
    from simulator import FaultSchedule, RestFault

    slow = FaultSchedule(rest=[RestFault(kind="slow", path="/markets", after_requests=1, count=3, delay_s=0.8)])
    async with running_sim(rate=400, markets=300, active=30, lifecycle_interval_s=0, faults=slow) as sim:
        g = Gatherer(gatherer_config(sim, plain_gatherer_db, private_redis.url, tmp_path / "spill"))
        task = asyncio.create_task(g.run())
        r = async_redis_from_config(RedisConfig(url=private_redis.url))
        early: dict[str, int] = {}
        try:
            for _ in range(400):
                await asyncio.sleep(0.02)
                if g.registry is not None and not g.registry.synced.is_set():
                    early = {k: int(await r.xlen(f"kd:g1:{k}")) for k in ("trades", "tickers", "deltas")}
                if g.registry is not None and g.registry.synced.is_set():
                    break
            assert early["trades"] > 0 and early["tickers"] > 0, early  # before the sync ended
            assert early["deltas"] > 0, early  # the first page's books, subscribed while later pages load
            await wait_ready(g)
        finally:
            g.stop_event.set()
            await asyncio.gather(task, return_exceptions=True)
            await r.aclose()
        assert count_kind(await stream_records(private_redis.url), "OrderbookDelta") > 0


def count_kind(records: list[Any], kind: str) -> int:
    return sum(1 for rec in records if type(rec).__name__ == kind)


def _start_gather(cfg: GathererConfig, path: Path, log: Path) -> subprocess.Popen[bytes]:
    data = json.loads(cfg.model_dump_json())
    data["kalshi"]["private_key_path"] = None
    path.write_text(json.dumps(data))  # JSON is YAML
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "gather", "--config", str(path)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the workers can be found after their parent is gone
    )


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


async def _ready(port: int, seconds: float = 30) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(int(seconds * 10)):
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"http://127.0.0.1:{port}/readyz", timeout=1)).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError("gatherer process not ready")


@pytest.mark.slow
async def test_one_gatherer_id_captures_in_one_process_and_workers_end_with_their_parent(
    plain_gatherer_db: str, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    """Findings of the fault run: a gatherer killed -9 left its two worker processes running (parent 1), and
    they captured on as g1 beside the restarted g1 (67 audit mismatches on 34 markets). Now a worker ends when
    its parent does, and a second process cannot capture under an id another one is capturing as: it waits
    for the lock and, while the holder lives, gives up naming it; after a kill -9 the lock is taken over."""
    async with running_sim(rate=200, markets=60, active=10) as sim:
        cfg = gatherer_config(sim, plain_gatherer_db, private_redis.url, tmp_path / "spill")
        cfg = cfg.model_copy(
            update={"websocket": FAST_WS.model_copy(update={"workers": 2}), "metrics": MetricsConfig(port=free_port())}
        )
        first = _start_gather(cfg, tmp_path / "g1.yaml", tmp_path / "first.log")
        try:
            await _ready(cfg.metrics.port)
            # a second process, same id: refused, naming the holder, while the first runs
            second_cfg = cfg.model_copy(update={"metrics": MetricsConfig(port=free_port())})
            second = _start_gather(second_cfg, tmp_path / "g1b.yaml", tmp_path / "second.log")
            assert await asyncio.to_thread(second.wait, 40) == 1
            assert (
                f"gatherer id g1 is capturing in another process ({socket.gethostname()} {first.pid} "
                in (tmp_path / "second.log").read_text()
            )
            assert first.poll() is None
            # kill -9 the parent alone: its workers notice and end
            os.kill(first.pid, signal.SIGKILL)
            first.wait(10)
            for _ in range(100):
                if not _group_alive(first.pid):
                    break
                await asyncio.sleep(0.1)
            assert not _group_alive(first.pid), "a worker outlived its gatherer"
            # and a new process takes the dead one's lock at once (its pid is gone on this host)
            third = _start_gather(second_cfg, tmp_path / "g1c.yaml", tmp_path / "third.log")
            try:
                await _ready(second_cfg.metrics.port, 20)
                assert "taken over from a process that died" in (tmp_path / "third.log").read_text()
            finally:
                third.terminate()
                assert await asyncio.to_thread(third.wait, 40) == 0
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(first.pid, signal.SIGKILL)
