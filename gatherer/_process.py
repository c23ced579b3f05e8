"""`kalshi-data gather`: one gatherer host's process. Owns every task it starts and, on SIGTERM/SIGINT,
closes the WebSockets, drains the sink to Redis (or spills it to disk) and exits within a bounded time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core import keys, metrics
from core.config import GathererConfig
from core.db import dsn_from_config, redact_dsn
from core.health import HealthServer
from core.migrations import pending
from core.records import CaptureBeat
from core.redisconn import async_redis_from_config, redis_deadline
from gatherer._client import KalshiRestClient
from gatherer._connection import MAX_WORKERS, set_local_sid_base
from gatherer._lock import CaptureLock, LockHeld, LockLost
from gatherer._outages import CaptureWatch
from gatherer._poller import SnapshotPoller
from gatherer._pool import ConnectionPool
from gatherer._registry import MarketRegistry
from gatherer._signing import signer_from_config
from gatherer._sweep import TradeSweep
from gatherer._tasks import cancel_and_wait
from gatherer._workers import WorkerSet
from router import RedisSink

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The gatherer cannot start; the message says why and what to do."""


@dataclass
class Gatherer:
    cfg: GathererConfig
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    registry: MarketRegistry | None = None
    pool: ConnectionPool | None = None
    poller: SnapshotPoller | None = None
    sink: RedisSink | None = None
    health: HealthServer | None = None
    workers: WorkerSet | None = None
    capture: CaptureWatch | None = None
    started_at: float = field(default_factory=time.monotonic)
    started_us: int = field(default_factory=lambda: time.time_ns() // 1000)

    def ready(self) -> tuple[bool, dict[str, Any]]:
        synced = self.registry is not None and self.registry.synced.is_set()
        conns = self.pool.connections() if self.pool else []
        up = sum(1 for c in conns if c.connected.is_set())
        redis_up = self.sink is not None and self.sink.redis_up and (self.workers is None or all(self.workers.redis_up))
        sink_ok = self.sink is not None and self.sink.healthy
        # the pool starts before the sync: ready only once it has placed every active market on a connection
        unassigned = (
            sum(1 for t in self.registry.active_markets() if t not in self.pool.assignment)
            if self.registry is not None and self.pool is not None
            else -1
        )
        ok = synced and bool(conns) and up == len(conns) and redis_up and sink_ok and unassigned == 0
        return ok, {
            "registry_synced": synced,
            "markets_unassigned": unassigned,
            "connections_up": up,
            "connections": len(conns),
            "redis_up": redis_up,
            "sink_healthy": sink_ok,
        }

    async def _check_database(self) -> None:
        dsn = dsn_from_config(self.cfg.database, f"kalshi-data-gatherer-{self.cfg.gatherer_id}")
        try:
            todo = await asyncio.to_thread(pending, dsn, "gatherer")
        except Exception as exc:
            raise StartupError(f"gatherer database {redact_dsn(dsn)}: {exc}") from None
        if todo:
            raise StartupError(
                f"gatherer database has {len(todo)} pending migrations ({todo[0]}...): run "
                "`kalshi-data migrate --config <gatherer.yaml>` first"
            )

    async def run(self) -> None:
        cfg = self.cfg
        await self._check_database()
        signer = signer_from_config(
            cfg.kalshi.api_key_id or None,
            cfg.kalshi.private_key_path.get_secret_value() if cfg.kalshi.private_key_path else None,
        )
        redis = async_redis_from_config(cfg.redis)
        lock = CaptureLock(redis, cfg.redis.key_prefix, cfg.gatherer_id)
        try:
            await lock.acquire()  # before anything captures: one process per gatherer id
        except LockHeld as exc:
            await redis.aclose()
            raise StartupError(str(exc)) from None
        except RedisError as exc:
            await redis.aclose()
            raise StartupError(f"Redis does not answer ({exc}): the gatherer needs it to start") from None
        try:
            async with redis_deadline():
                epoch = int(await redis.incr(keys.process_epoch(cfg.redis.key_prefix, cfg.gatherer_id)))
        except RedisError as exc:
            await lock.release()
            await redis.aclose()
            raise StartupError(f"Redis does not answer ({exc}): the gatherer needs it to start") from None
        set_local_sid_base(epoch, 0)
        r = cfg.router
        self.sink = RedisSink(
            redis,
            cfg.redis.key_prefix,
            cfg.gatherer_id,
            Path(r.spill_dir.format(gatherer_id=cfg.gatherer_id)),
            records_per_entry=r.records_per_entry,
            memory_limit=r.memory_limit_records,
            flush_interval_s=r.flush_interval_ms / 1000,
        )
        client = KalshiRestClient(cfg.kalshi, signer)
        self.health = HealthServer(cfg.metrics.host, cfg.metrics.port, self.ready)
        self.health.start()  # before the initial sync: liveness answers while it runs
        # Before any connection opens: production learns this process's start (a book of the dead process ends
        # there) before any of its frames.
        self.sink.put_nowait([CaptureBeat(cfg.gatherer_id, self.started_us, self.started_us)])
        tasks: list[asyncio.Task[Any]] = []
        try:
            tasks.append(asyncio.create_task(lock.hold(), name="capture-lock"))  # LockLost ends the gatherer
            tasks.append(asyncio.create_task(self.sink.run(), name="sink"))
            self.registry = MarketRegistry(client, self.sink, cfg.gatherer_id, cfg.registry)
            n_workers = cfg.websocket.workers or os.cpu_count() or 1
            if n_workers > 1:
                if n_workers > MAX_WORKERS:
                    raise StartupError(f"websocket.workers: at most {MAX_WORKERS} connection workers")
                self.workers = WorkerSet(cfg, n_workers, epoch)
                self.workers.start()
            self.pool = ConnectionPool(
                cfg.kalshi.ws_url, cfg.gatherer_id, self.sink, self.registry, cfg.websocket, signer, self.workers
            )
            # The pool first: trades, tickers and lifecycle of every market are captured from the first seconds;
            # the books follow when the sync (tens of seconds at 10^5-10^6 markets) hands the pool its markets.
            tasks.append(asyncio.create_task(self.pool.run(), name="pool"))
            pool = self.pool
            self.capture = CaptureWatch(
                client, redis, self.sink, cfg.gatherer_id, cfg.redis.key_prefix,
                lambda: any(c.channel == "trade" and c.connected.is_set() for c in pool.globals), cfg.capture,
                started_us=self.started_us,
            )  # fmt: skip
            pool.on_trade_loss = self.capture.trade_gap
            tasks.append(asyncio.create_task(self.capture.run(), name="capture"))
            if cfg.capture.trade_sweep_s > 0:  # a task that returns would end the gatherer (_until_stopped)
                sweep = TradeSweep(client, redis, self.sink, cfg.gatherer_id, cfg.redis.key_prefix, cfg.capture)
                tasks.append(asyncio.create_task(sweep.run(), name="trade-sweep"))
            await self._until_stopped(self.registry.sync(), tasks)
            if self.stop_event.is_set():
                return
            metrics.REGISTRY_MARKETS.set(len(self.registry.markets))
            self.poller = SnapshotPoller(client, self.registry, self.sink, cfg.gatherer_id, cfg.poller)
            tasks.append(asyncio.create_task(self.registry.run(), name="registry"))
            if cfg.poller.enabled:
                tasks.append(asyncio.create_task(self.poller.run(), name="poller"))
            await self._until_stopped(None, tasks)
        finally:
            await self._shutdown(tasks, client, redis, lock)

    async def _until_stopped(self, aw: Any, tasks: list[asyncio.Task[Any]] | None = None) -> None:
        """Wait for aw (or for any task to fail) or for the stop signal, whichever comes first."""
        stopper = asyncio.create_task(self.stop_event.wait())
        waiting: set[asyncio.Future[Any]] = {stopper}
        main = asyncio.ensure_future(aw) if aw is not None else None
        if main is not None:
            waiting.add(main)
        waiting.update(tasks or [])
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if main is not None and main not in done:
            main.cancel()
            await asyncio.gather(main, return_exceptions=True)
        for t in done:
            if t is not stopper and not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]

    async def _shutdown(
        self, tasks: list[asyncio.Task[Any]], client: KalshiRestClient, redis: aioredis.Redis, lock: CaptureLock
    ) -> None:
        t0 = time.monotonic()
        if self.pool is not None:
            with contextlib.suppress(Exception):
                await self.pool.stop(timeout_s=5)
        sink_task = next((t for t in tasks if t.get_name() == "sink"), None)
        await cancel_and_wait([t for t in tasks if t is not sink_task], timeout_s=10)
        if sink_task is not None and self.sink is not None:
            await self.sink.stop_task(sink_task)
        if self.workers is not None:  # each worker drains its own sink (or spills it)
            await asyncio.to_thread(self.workers.stop, self.cfg.router.shutdown_timeout_s + 10)
        if self.sink is not None:
            await self.sink.close(self.cfg.router.shutdown_timeout_s)
        await client.aclose()
        await lock.release()  # last: nothing of this process captures any more
        await redis.aclose()
        if self.health is not None:
            self.health.stop()
        log.info("gatherer %s stopped in %.1fs", self.cfg.gatherer_id, time.monotonic() - t0)


def run_gatherer(cfg: GathererConfig) -> int:
    async def main() -> int:
        g = Gatherer(cfg)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, g.stop_event.set)
        try:
            await g.run()
        except (StartupError, LockLost) as exc:
            log.error("%s", exc)
            return 1
        return 0

    return asyncio.run(main())
