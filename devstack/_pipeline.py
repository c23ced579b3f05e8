"""The whole platform on one machine: the simulator, N gatherers (each with its writers), the RQ dedup
worker with RQ's cron, and the lake. Used by `kalshi-data demo` and by the end-to-end tests.

Everything runs in this process except the dedup worker (an `rq` worker process, as in production).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis

from core import keys
from core.config import (
    AuditConfig,
    CaptureConfig,
    DeduplicatorConfig,
    ExportConfig,
    GathererConfig,
    KalshiConfig,
    MetricsConfig,
    PollerConfig,
    RateLimitConfig,
    RedisConfig,
    RouterConfig,
    ScheduleConfig,
    SourceConfig,
    WebSocketConfig,
    WriterConfig,
)
from dedup import coverage_summary, lake_stats
from devstack._backfill import BackfillProcess
from devstack._services import db_config, free_port, fresh_database, kill_group
from gatherer import Gatherer
from simulator import ExchangeOptions, FaultSchedule, SimOptions, Simulator, compare_history, compare_with_ledger
from writers import StreamWriter, make_writers, run_writers

log = logging.getLogger(__name__)
STREAMS = keys.STREAM_KINDS
KEY_ID = "demo-key"  # the API key id the simulator knows the local stack's public key by


@dataclass
class PipelineOptions:
    markets: int = 3000
    active: int = 300
    rate: float = 2000.0
    seed: int = 1
    duration_s: float = 60.0
    gatherers: int = 3
    db_prefix: str = "kalshi_demo"
    admin_dsn: str = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    redis_url: str = "redis://127.0.0.1:6379/2"
    run_dir: Path = Path("run/demo")
    lake: Path = Path("lake")
    faults: FaultSchedule = field(default_factory=FaultSchedule)
    # the simulator answers WebSocket commands this late, as a busy exchange does, while data flows on
    ws_command_latency_s: float = 0.005
    ws_command_spacing_s: float = 0.0  # between two commands of one connection (data flows on meanwhile)
    sim_seq_on_all_channels: bool = True  # False: trade, ticker and lifecycle frames carry no seq
    trade_sweep_s: float = 5.0  # the gatherers' REST trade sweep (capture.trade_sweep_s), 2 s behind
    lifecycle_interval_s: float = 1.0
    sync_interval_s: int = 2
    export_interval_s: int = 20
    markets_per_connection: int = 500
    gatherer_dsns: dict[str, str] = field(default_factory=dict)  # override a gatherer's database (tests)
    gatherer_admin_dsn: str | None = None  # the server for the gatherer databases (default: admin_dsn's)
    rq_worker: bool = True
    writer_processes: frozenset[str] = frozenset()  # gatherers whose writers run as `kalshi-data write` processes
    connection_workers: int = 1  # per gatherer; 1 = in the gatherer's process
    gatherer_processes: frozenset[str] = frozenset()  # gatherers run as `kalshi-data gather` processes
    hold_market: bool = True  # the market waits until every gatherer is ready (False: it moves from the start)
    poll_interval_s: float = 30.0  # REST snapshot passes over the open markets (what the book audit checks)
    audit_window_s: float = 2.0
    # The gatherers sign REST and the WebSocket handshake with a key of this type ('rsa' or 'ed25519', made in
    # run_dir/keys), which the simulator requires; None: no keys.
    key_type: str | None = None
    history_days: int = 0  # the simulator's past (settled markets, trades, candles) for the history backfill


class Pipeline:
    def __init__(self, opts: PipelineOptions) -> None:
        self.opts = opts
        self.sim: Simulator | None = None
        self.gatherers: dict[str, Gatherer] = {}
        self.gatherer_tasks: dict[str, asyncio.Task[None]] = {}
        self.writer_stop: dict[str, threading.Event] = {}
        self.writer_threads: dict[str, threading.Thread] = {}
        self.writers: dict[str, list[StreamWriter]] = {}
        self.dsns: dict[str, str] = {}
        self.prod_dsn = ""
        self.dedup_cfg: DeduplicatorConfig | None = None
        self.dedup_cfg_path = opts.run_dir / "deduplicator.yaml"  # JSON is YAML
        self.worker: subprocess.Popen[bytes] | None = None
        self.writer_procs: dict[str, subprocess.Popen[bytes]] = {}
        self.gatherer_procs: dict[str, subprocess.Popen[bytes]] = {}
        self.health_ports: dict[str, int] = {}
        self._backfill: BackfillProcess | None = None
        self.started = time.monotonic()
        self.gids = [f"g{k + 1}" for k in range(opts.gatherers)]

    # ---- setup -----------------------------------------------------------------------------------------
    def prepare(self) -> None:
        o = self.opts
        o.run_dir.mkdir(parents=True, exist_ok=True)
        self._fresh_lake(o.lake)
        self.prod_dsn = fresh_database(o.admin_dsn, f"{o.db_prefix}_prod", "production")
        for gid in self.gids:
            self.dsns[gid] = o.gatherer_dsns.get(gid) or fresh_database(
                o.gatherer_admin_dsn or o.admin_dsn, f"{o.db_prefix}_{gid}", "gatherer"
            )
        r = redis.Redis.from_url(o.redis_url)
        r.flushdb()  # the demo's own Redis database: streams of the last run and RQ state
        r.close()
        self.dedup_cfg = DeduplicatorConfig(
            production=db_config(self.prod_dsn),
            sources=[SourceConfig(gatherer_id=g, database=db_config(self.dsns[g])) for g in self.gids],
            redis=RedisConfig(url=o.redis_url),
            batch_size=20_000,
            schedule=ScheduleConfig(sync_interval_s=o.sync_interval_s, export_interval_s=o.export_interval_s),
            export=ExportConfig(target=f"file://{o.lake.resolve()}"),
            audit=AuditConfig(window_s=o.audit_window_s),
            metrics=MetricsConfig(port=0),
        )
        self.dedup_cfg_path.write_text(self.dedup_cfg.model_dump_json(indent=1))

    @staticmethod
    def _fresh_lake(lake: Path) -> None:
        """The databases are recreated, so the lake is too; only a folder the demo itself made is removed."""
        marker = lake / ".kalshi-data-demo-lake"
        if lake.exists() and any(lake.iterdir()):
            if not marker.exists():
                raise RuntimeError(f"{lake} exists and was not made by the demo; give --lake another folder")
            shutil.rmtree(lake)
        lake.mkdir(parents=True, exist_ok=True)
        marker.write_text("made by kalshi-data demo; removed and rebuilt by the next run\n")

    def gatherer_config(self, gid: str) -> GathererConfig:
        assert self.sim is not None
        o = self.opts
        key_id, key_path = (KEY_ID, str(self.key_file)) if o.key_type else (None, None)
        return GathererConfig(
            gatherer_id=gid,
            kalshi=KalshiConfig(
                rest_url=self.sim.rest_url,
                ws_url=self.sim.ws_url,
                rate_limit=RateLimitConfig(read_per_second=200, burst=50),
                api_key_id=key_id,
                private_key_path=key_path,
            ),
            database=db_config(self.dsns[gid]),
            redis=RedisConfig(url=o.redis_url),
            websocket=WebSocketConfig(
                workers=o.connection_workers,
                markets_per_connection=o.markets_per_connection,
                ping_interval_s=2,
                dead_after_s=6,
                backoff_initial_s=0.1,
                backoff_max_s=2,
                command_timeout_s=5,
            ),
            router=RouterConfig(spill_dir=str(o.run_dir / "spill" / gid), shutdown_timeout_s=10),
            writer=WriterConfig(batch_size=200, block_ms=100, claim_idle_ms=5000, metrics_port=0),
            metrics=MetricsConfig(port=0),
            poller=PollerConfig(interval_s=o.poll_interval_s, concurrency=2),
            capture=CaptureConfig(trade_sweep_s=o.trade_sweep_s, trade_sweep_lag_s=2.0),
        )

    @property
    def key_file(self) -> Path:
        return self.opts.run_dir / "keys" / "kalshi.pem"

    def _make_key(self) -> list[str]:
        """A key pair of the configured type: the private one for the gatherers (mode 600), the public one
        registered with the simulator (its --public-key)."""
        if not self.opts.key_type:
            return []
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

        key: Any = (
            ed25519.Ed25519PrivateKey.generate() if self.opts.key_type == "ed25519"
            else rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )  # fmt: skip
        self.key_file.parent.mkdir(parents=True, exist_ok=True)
        self.key_file.write_bytes(b"")
        self.key_file.chmod(0o600)  # before the key is in it
        self.key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        public = self.key_file.with_suffix(".pub")
        public.write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        return [f"{KEY_ID}={public}"]

    def write_gatherer_config(self, gid: str) -> Path:
        """The gatherer's config as a file (`kalshi-data gather/write/streams --config` read it)."""
        path = self.opts.run_dir / f"gatherer-{gid}.yaml"
        data = json.loads(self.gatherer_config(gid).model_dump_json())
        data["kalshi"]["private_key_path"] = str(self.key_file) if self.opts.key_type else None
        path.write_text(json.dumps(data, indent=1))  # JSON is YAML
        return path

    async def start_simulator(self) -> None:
        """Databases, Redis and the simulator (moving unless hold_market); no gatherer yet."""
        o = self.opts
        await asyncio.to_thread(self.prepare)
        public_keys = self._make_key()
        self.sim = Simulator(
            SimOptions(
                port=0,
                rate=o.rate,
                exchange=ExchangeOptions(
                    seed=o.seed, markets=o.markets, active=o.active, lifecycle_interval_s=o.lifecycle_interval_s
                ),
                faults=o.faults,
                ping_interval_s=2,
                ws_command_latency_s=o.ws_command_latency_s,
                ws_command_spacing_s=o.ws_command_spacing_s,
                seq_on_all_channels=o.sim_seq_on_all_channels,
                public_keys=public_keys,
                history_days=o.history_days,
            )
        )
        await self.sim.start()
        for gid in self.gids:
            self.write_gatherer_config(gid)
        if o.hold_market:
            await self.sim.pause()  # every gatherer subscribes before the market moves

    async def start(self) -> None:
        o = self.opts
        await self.start_simulator()
        assert self.sim is not None
        for gid in self.gids:
            self.start_gatherer(gid)
            self.start_writers(gid)
        await self.wait_ready(self.gids)
        if o.rq_worker:
            self.start_dedup_worker()
        self.started = time.monotonic()
        if o.hold_market:
            self.sim.resume()

    def start_gatherer(self, gid: str) -> None:
        cfg = self.gatherer_config(gid)
        if gid in self.opts.gatherer_processes:
            port = self.health_ports.setdefault(gid, free_port())
            path = self.opts.run_dir / f"{gid}-gather.yaml"  # the shared file, but its own metrics port
            data = json.loads(self.write_gatherer_config(gid).read_text())
            data["metrics"]["port"] = port
            path.write_text(json.dumps(data))
            self.gatherer_procs[gid] = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "gather", "--config", str(path)],
                stdout=(self.opts.run_dir / f"gather-{gid}.log").open("ab"),
                stderr=subprocess.STDOUT,
                start_new_session=True,  # with its connection workers: one process group to kill
            )
            return
        g = Gatherer(cfg)
        self.gatherers[gid] = g
        self.gatherer_tasks[gid] = asyncio.create_task(g.run(), name=f"gatherer-{gid}")

    async def stop_gatherer(self, gid: str) -> None:
        proc = self.gatherer_procs.pop(gid, None)
        if proc is not None:
            proc.terminate()
            await asyncio.to_thread(proc.wait, 60)
            return
        self.gatherers[gid].stop_event.set()
        async with asyncio.timeout(30):
            await self.gatherer_tasks.pop(gid)

    def kill_gatherer(self, gid: str) -> None:
        """kill -9 a gatherer process and its workers: whatever it held in memory is gone."""
        kill_group(self.gatherer_procs.pop(gid))

    def gatherer_ready(self, gid: str) -> bool:
        if gid not in self.opts.gatherer_processes:
            return gid in self.gatherers and self.gatherers[gid].ready()[0]
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_ports[gid]}/readyz", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    async def wait_ready(self, gids: list[str], timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not all([await asyncio.to_thread(self.gatherer_ready, g) for g in gids]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"gatherers not ready: {[g for g in gids if not self.gatherer_ready(g)]}")
            await asyncio.sleep(0.1)

    def start_writers(self, gid: str) -> None:
        cfg = self.gatherer_config(gid)
        if gid in self.opts.writer_processes:
            path = self.write_gatherer_config(gid)
            self.writer_procs[gid] = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "write", "--config", str(path), "--consumer", f"demo-{gid}"],
                stdout=(self.opts.run_dir / f"writer-{gid}.log").open("ab"),
                stderr=subprocess.STDOUT,
            )
            self.writers[gid] = make_writers(cfg, STREAMS, f"watch-{gid}")  # for backlog readings only
            return
        self.writers[gid] = make_writers(cfg, STREAMS, f"demo-{gid}")
        stop = self.writer_stop[gid] = threading.Event()
        t = threading.Thread(
            target=run_writers, args=(self.writers[gid], stop, 5.0), name=f"writers-{gid}", daemon=True
        )
        self.writer_threads[gid] = t
        t.start()

    def kill_writer_process(self, gid: str) -> None:
        """kill -9 a gatherer's writer process (its unacknowledged entries stay pending)."""
        proc = self.writer_procs.pop(gid)
        proc.kill()
        proc.wait(10)

    def stop_writers(self, gid: str) -> None:
        proc = self.writer_procs.pop(gid, None)
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        if gid not in self.writer_stop:
            return
        self.writer_stop[gid].set()
        for w in self.writers[gid]:
            w.stop()
        self.writer_threads.pop(gid).join(30)

    def backfill(self) -> BackfillProcess:
        """`kalshi-data backfill` of the simulator's past into production (a process of its own)."""
        if self._backfill is None:
            assert self.sim is not None
            self._backfill = BackfillProcess(
                self.opts.run_dir, self.prod_dsn, self.sim.rest_url, self.opts.redis_url, self.opts.history_days
            )
        return self._backfill

    def start_dedup_worker(self) -> None:
        log_path = self.opts.run_dir / "dedup-worker.log"
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "dedup", "worker", "--config", str(self.dedup_cfg_path)],
            stdout=log_path.open("ab"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # its own process group: the worker, its job horse and RQ's cron
        )

    def kill_dedup_worker(self) -> None:
        """kill -9 the RQ worker, whatever job it is in, with its cron scheduler."""
        if self.worker is not None:
            kill_group(self.worker)
            self.worker = None

    def stop_dedup_worker(self) -> None:
        if self.worker is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.worker.pid, signal.SIGTERM)
            try:
                self.worker.wait(30)
            except subprocess.TimeoutExpired:
                self.kill_dedup_worker()
            self.worker = None

    # ---- watching ------------------------------------------------------------------------------------------
    def backlog(self, gid: str) -> int:
        return sum(w.backlog()[0] for w in self.writers.get(gid, []))

    def counts(self, dsn: str) -> dict[str, int]:
        with psycopg.connect(dsn) as conn:
            tables = ("orderbook_deltas", "trades", "tickers", "lifecycle_events", "orderbook_snapshots")
            return {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in tables}  # type: ignore[index]

    def dedup_lag_s(self) -> float | None:
        with psycopg.connect(self.prod_dsn) as conn:
            row = conn.execute("SELECT min(caught_up_us) FROM sync_cursors").fetchone()
        return None if row is None or row[0] is None else round((time.time_ns() // 1000 - row[0]) / 1e6, 1)

    def lake_files(self) -> tuple[int, int]:
        files = list(self.opts.lake.rglob("*.parquet")) if self.opts.lake.exists() else []
        return len(files), sum(f.stat().st_size for f in files)

    def progress(self, last: dict[str, Any]) -> dict[str, Any]:
        assert self.sim is not None
        now = time.monotonic()
        dt = max(1e-3, now - last.get("t", self.started))
        ev = self.sim.exchange.events
        parts = [f"[{now - self.started:5.0f}s] sim {(ev - last.get('events', 0)) / dt:6.0f} ev/s"]
        frames: dict[str, int] = {}
        for gid, g in self.gatherers.items():
            fr = sum(c.stats.frames for c in g.pool.connections()) if g.pool else 0
            frames[gid] = fr
            rate = (fr - last.get("frames", {}).get(gid, 0)) / dt
            parts.append(f"{gid} {rate:6.0f} fr/s backlog {self.backlog(gid):4d}")
        prod = self.counts(self.prod_dsn)
        files, size = self.lake_files()
        parts.append(f"prod {sum(prod.values()):7d} rows lag {self.dedup_lag_s()}s")
        parts.append(f"lake {files} files {size / 1e6:.1f} MB")
        print(" | ".join(parts), flush=True)
        return {"t": now, "events": ev, "frames": frames}

    # ---- finishing -------------------------------------------------------------------------------------------
    async def drain(self, timeout_s: float = 120) -> None:
        """Stop the market, let every record reach its gatherer database, then production."""
        assert self.sim is not None and self.dedup_cfg is not None
        await self.sim.pause()
        deadline = time.monotonic() + timeout_s
        await asyncio.sleep(1.0)  # frames in flight
        while time.monotonic() < deadline:
            sinks_empty = all(
                g.sink is None or (g.sink.buffered == 0 and g.sink.redis_up) for g in self.gatherers.values()
            )
            if sinks_empty and all(self.backlog(gid) == 0 for gid in self.writers):
                break
            await asyncio.sleep(0.2)
        from dedup import sync_all

        while time.monotonic() < deadline:  # until every (source, table) is caught up (the RQ job may hold a lock)
            res = await asyncio.to_thread(sync_all, self.dedup_cfg)
            if not res["down"] and all(r["caught_up"] and not r["skipped_locked"] for r in res["results"]):
                break
            await asyncio.sleep(0.5)

    async def export(self) -> dict[str, Any]:
        from dedup import export_all

        assert self.dedup_cfg is not None
        result: dict[str, Any] = await asyncio.to_thread(export_all, self.dedup_cfg, None, True)
        return result

    async def stop(self) -> None:
        """Stop everything, each part even when another failed to stop (a gatherer that hung once left the
        writer and gatherer processes of a test running for an hour); the first failure is raised at the end."""
        failures: list[BaseException] = []

        async def attempt(step: Any) -> None:
            try:
                result = step()
                if asyncio.iscoroutine(result):
                    await result
            except Exception as exc:
                log.error("stopping the local stack: %s", exc)
                failures.append(exc)

        await attempt(self.stop_dedup_worker)
        if self._backfill is not None:
            await attempt(self._backfill.kill)
        for gid in list(self.gatherer_tasks) + list(self.gatherer_procs):
            await attempt(lambda gid=gid: self.stop_gatherer(gid))
        for gid in set(self.writer_threads) | set(self.writer_procs):
            await attempt(lambda gid=gid: self.stop_writers(gid))
        if self.sim is not None:
            await attempt(self.sim.stop)
        if failures:
            raise failures[0]

    def report(self) -> dict[str, Any]:
        assert self.sim is not None
        completeness = compare_with_ledger(self.sim.ledger, self.prod_dsn)
        files, size = self.lake_files()
        with psycopg.connect(self.prod_dsn) as conn:
            coverage = coverage_summary(conn)
            markets = conn.execute("SELECT count(*) FROM markets").fetchone()
            audits: dict[str, int] = dict(
                conn.execute("SELECT result, count(*) FROM book_audits GROUP BY 1").fetchall()
            )
            audited = conn.execute(
                "SELECT count(DISTINCT market_ticker), count(DISTINCT market_ticker) FILTER (WHERE EXISTS "
                "(SELECT 1 FROM orderbook_deltas d WHERE d.market_ticker = a.market_ticker)) "
                "FROM book_audits a WHERE result IN ('matched', 'mismatched')"
            ).fetchone()
        return {
            "seconds": round(time.monotonic() - self.started, 1),
            "simulator": self.sim.summary(),
            "markets_in_production": markets[0] if markets else 0,
            "production_rows": self.counts(self.prod_dsn),
            "gatherer_rows": {gid: self.counts(dsn) for gid, dsn in self.dsns.items()},
            "coverage": coverage,
            "book_audits": {
                "by_result": audits,
                "markets_audited": audited[0] if audited else 0,
                "moving_markets_audited": audited[1] if audited else 0,  # markets with deltas in production
            },
            "lake": {
                "parquet_files": files,
                "bytes": size,
                "path": str(self.opts.lake),
                "tables": lake_stats(self.opts.lake),
            },
            "completeness": completeness,
            "history": compare_history(self.sim.history, self.prod_dsn) if self.sim.history else None,
        }
