"""Connection-worker processes: each runs an asyncio loop owning a share of the WebSocket connections, with
its own router and Redis sink (the frames of a connection never cross a process boundary). The main
process keeps the registry and the assignment of markets to connections, and talks to the workers
through two queues: commands down (open a connection, add or remove markets, stop), events up
(lifecycle messages for the registry, trade losses to refill, connection states and counters).

`RemoteConnection` stands in the pool for a connection living in a worker, with the same small API as
`WsConnection` (conn_id, tickers, add_markets, remove_markets, connected, stats, run, stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import queue
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from core.config import GathererConfig
from core.records import LifecycleEvent
from core.redisconn import async_redis_from_config
from gatherer._conn_stats import ConnStats
from gatherer._connection import LIFECYCLE_CHANNELS, WsConnection, set_local_sid_base
from gatherer._tasks import cancel_and_wait

log = logging.getLogger(__name__)
STATUS_EVERY_S = 1.0


# ---- inside a worker process ---------------------------------------------------------------------------------


def worker_main(cfg_json: str, index: int, epoch: int, commands: mp.Queue[Any], events: mp.Queue[Any]) -> None:
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s worker{index} %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_worker(GathererConfig.model_validate_json(cfg_json), index, epoch, commands, events))


async def _worker(cfg: GathererConfig, index: int, epoch: int, commands: mp.Queue[Any], events: mp.Queue[Any]) -> None:
    import signal

    from gatherer._signing import signer_from_config
    from router import RedisSink, copy_filters

    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGINT, lambda: None)  # the main process decides when workers stop
    set_local_sid_base(epoch, index + 1)  # subscription numbers no other process of this gatherer hands out
    signer = signer_from_config(
        cfg.kalshi.api_key_id or None,
        cfg.kalshi.private_key_path.get_secret_value() if cfg.kalshi.private_key_path else None,
    )
    r = async_redis_from_config(cfg.redis)
    spill = Path(cfg.router.spill_dir.format(gatherer_id=cfg.gatherer_id)) / f"worker{index}"
    sink = RedisSink(
        r,
        cfg.redis.key_prefix,
        cfg.gatherer_id,
        spill,
        records_per_entry=cfg.router.records_per_entry,
        memory_limit=cfg.router.memory_limit_records,
        flush_interval_s=cfg.router.flush_interval_ms / 1000,
    )
    sink_task = asyncio.create_task(sink.run())
    conns: dict[str, WsConnection] = {}
    tasks: dict[str, asyncio.Task[None]] = {}
    copies = copy_filters()  # the twin connections of a channel live in the same worker (WorkerSet.connection)

    def on_lifecycle(ev: LifecycleEvent) -> None:
        events.put(("lifecycle", tuple(ev)))

    def on_trade_loss(from_us: int, to_us: int) -> None:
        events.put(("trade_loss", from_us, to_us))

    async def status_loop() -> None:
        while True:
            await asyncio.sleep(STATUS_EVERY_S)
            events.put(
                (
                    "status",
                    index,
                    {cid: (c.connected.is_set(), asdict(c.stats)) for cid, c in conns.items()},
                    sink.redis_up,
                )
            )

    status = asyncio.create_task(status_loop())
    parent = os.getppid()
    try:
        while True:
            cmd = await loop.run_in_executor(None, _get, commands)
            if cmd is None:
                # A parent killed with -9 sends no stop: a worker left running would capture on as its gatherer
                # id beside the restarted gatherer (CaptureLock keeps that out); it drains and ends instead.
                if os.getppid() != parent:
                    log.warning("the gatherer process (pid %d) is gone: this worker stops", parent)
                    break
                continue
            op = cmd[0]
            if op == "stop":
                break
            if op == "open":
                _, conn_id, channel, tickers = cmd
                c = WsConnection(
                    conn_id,
                    cfg.kalshi.ws_url,
                    channel,
                    set(tickers) if tickers is not None else None,
                    cfg.gatherer_id,
                    sink,
                    cfg.websocket,
                    signer,
                    on_lifecycle if channel in LIFECYCLE_CHANNELS else None,
                    on_trade_loss if channel == "trade" else None,
                    copies.get(channel),
                )
                conns[conn_id] = c
                tasks[conn_id] = asyncio.create_task(c.run(), name=conn_id)
            elif op == "add":
                conns[cmd[1]].add_markets(set(cmd[2]))
            elif op == "remove":
                conns[cmd[1]].remove_markets(set(cmd[2]))
    finally:
        for c in conns.values():
            c.stop()
        await cancel_and_wait([*tasks.values(), status], timeout_s=10)
        await sink.stop_task(sink_task)
        await sink.close(cfg.router.shutdown_timeout_s)
        await r.aclose()
        events.put(("stopped", index))


def _get(q: mp.Queue[Any]) -> Any:
    try:
        return q.get(timeout=0.5)
    except queue.Empty:
        return None


# ---- in the main process -----------------------------------------------------------------------------------------


class RemoteConnection:
    """A connection that lives in worker `worker`; the pool drives it like a WsConnection."""

    def __init__(self, workers: WorkerSet, worker: int, conn_id: str, channel: str, tickers: set[str] | None) -> None:
        self.workers, self.worker = workers, worker
        self.conn_id, self.channel, self.tickers = conn_id, channel, tickers
        self.connected = asyncio.Event()
        self.stats = ConnStats()
        self._opened = False

    def open(self) -> None:
        if not self._opened:
            self._opened = True
            tickers = sorted(self.tickers) if self.tickers is not None else None
            self.workers.send(self.worker, ("open", self.conn_id, self.channel, tickers))

    def add_markets(self, tickers: set[str]) -> None:
        assert self.tickers is not None
        new = tickers - self.tickers
        if new:
            self.tickers |= new
            if self._opened:
                self.workers.send(self.worker, ("add", self.conn_id, sorted(new)))

    def remove_markets(self, tickers: set[str]) -> None:
        assert self.tickers is not None
        gone = tickers & self.tickers
        if gone:
            self.tickers -= gone
            if self._opened:
                self.workers.send(self.worker, ("remove", self.conn_id, sorted(gone)))

    async def run(self) -> None:
        self.open()
        await asyncio.Event().wait()  # lives as long as the pool; the worker does the work

    def stop(self) -> None:
        """The worker stops its connection when the WorkerSet stops."""


class WorkerSet:
    """The worker processes of one gatherer, their queues and what they last reported."""

    def __init__(self, cfg: GathererConfig, n: int, epoch: int = 0) -> None:
        ctx = mp.get_context("spawn")  # no inherited event loop, sockets or threads
        self.cfg, self.n = cfg, n
        self.commands = [ctx.Queue() for _ in range(n)]
        self.events: mp.Queue[Any] = ctx.Queue()
        self.procs = [
            ctx.Process(
                target=worker_main,
                args=(cfg.model_dump_json(), k, epoch, self.commands[k], self.events),
                name=f"kd-worker{k}",
                daemon=True,
            )
            for k in range(n)
        ]
        self.remote: dict[str, RemoteConnection] = {}
        self.redis_up = [True] * n
        self._next = 0

    def start(self) -> None:
        for p in self.procs:
            p.start()

    def send(self, worker: int, cmd: tuple[Any, ...]) -> None:
        self.commands[worker].put(cmd)

    def connection(self, conn_id: str, channel: str, tickers: set[str] | None) -> RemoteConnection:
        """A new connection on the worker with the fewest connections; a redundant twin of a global channel on
        the worker of its first connection, where one filter drops their copies (router.CopyFilter)."""
        counts = [0] * self.n
        for c in self.remote.values():
            counts[c.worker] += 1
        twin = next((c for c in self.remote.values() if tickers is None and c.channel == channel), None)
        worker = twin.worker if twin is not None else min(range(self.n), key=lambda k: counts[k])
        rc = RemoteConnection(self, worker, conn_id, channel, tickers)
        self.remote[conn_id] = rc
        return rc

    async def pump(self, on_lifecycle: Any, on_trade_loss: Any) -> None:
        """Apply what the workers report: lifecycle events, trade losses, connection states and counters."""
        loop = asyncio.get_running_loop()
        while True:
            ev = await loop.run_in_executor(None, _get, self.events)
            if ev is None:
                continue
            if ev[0] == "lifecycle":
                on_lifecycle(LifecycleEvent(*ev[1]))
            elif ev[0] == "trade_loss":
                on_trade_loss(ev[1], ev[2])
            elif ev[0] == "status":
                _, worker, states, redis_up = ev
                self.redis_up[worker] = redis_up
                for conn_id, (up, stats) in states.items():
                    rc = self.remote.get(conn_id)
                    if rc is None:
                        continue
                    (rc.connected.set if up else rc.connected.clear)()
                    rc.stats = ConnStats(**stats)

    def stop(self, timeout_s: float) -> None:
        for k in range(self.n):
            self.send(k, ("stop",))
        deadline = time.monotonic() + timeout_s
        for p in self.procs:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.terminate()
                p.join(5)
