"""One gatherer end to end at increasing message rates, each stage its own process as deployed:
`kalshi-data sim` -> `kalshi-data gather` -> Redis -> `kalshi-data write` -> PostgreSQL, then dedup into
production. Per rate: sustained events/s, loss against the simulator's ledger, latency exchange time ->
committed in the gatherer database and -> committed in production (age of the newest committed delta in
each, sampled every 200 ms, with dedup merging every second), CPU and RSS per process. The highest rate
with zero loss is the headline.

Run: python -m bench.bench_pipeline [--rates 2000,5000,10000,20000] [--seconds 20] [--dedup-every 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import redis

from core.config import DatabaseConfig, DeduplicatorConfig, SourceConfig
from core.keys import STREAM_KINDS, stream
from devstack import free_port, fresh_database
from simulator import Ledger, compare_with_ledger, load_jsonl

ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
REDIS_DB = 13
CLK = os.sysconf("SC_CLK_TCK")


def proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds, RSS bytes) of a process and its live children (connection workers) from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0, 0
    cpu = (int(fields[11]) + int(fields[12])) / CLK
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    for child in children:
        c_cpu, c_rss = proc_stats(int(child))
        cpu, rss = cpu + c_cpu, rss + c_rss
    return cpu, rss


def wait_for_port(port: int, timeout_s: float) -> None:
    end = time.time() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.time() > end:
                raise
            time.sleep(0.05)


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def run_rate(
    rate: float,
    seconds: float,
    markets: int,
    active: int,
    dedup_every: float = 1.0,
    router: dict[str, Any] | None = None,
    writer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One rate; `router` and `writer` override the deployed defaults of those config sections (A/B runs)."""
    tag = uuid.uuid4().hex[:6]
    work = Path(tempfile.mkdtemp(prefix="kdbench-"))
    gdb = fresh_database(ADMIN, f"kdb_{tag}_g1", "gatherer")
    pdb = fresh_database(ADMIN, f"kdb_{tag}_prod", "production")
    r = redis.Redis(db=REDIS_DB)
    prefix = f"kdb{tag}"  # a run's own keys: two runs side by side never touch each other's streams
    port = free_port()
    ledger_path = work / "ledger.jsonl"
    delay = 12.0
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "sim",
            "--port",
            str(port),
            "--markets",
            str(markets),
            "--active",
            str(active),
            "--rate",
            str(rate),
            "--duration",
            str(seconds),
            "--start-delay",
            str(delay),
            "--ledger",
            str(ledger_path),
            "--lifecycle-interval",
            "0",
            "--ping-interval",
            "5",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(work / "sim.log").open("wb"),
    )
    cfg = {
        "gatherer_id": "g1",
        "kalshi": {
            "rest_url": f"http://127.0.0.1:{port}/trade-api/v2",
            "ws_url": f"ws://127.0.0.1:{port}/trade-api/ws/v2",
            "rate_limit": {"read_per_second": 500, "burst": 100},
        },
        "database": {"host": "127.0.0.1", "dbname": f"kdb_{tag}_g1", "user": "postgres"},
        "redis": {"url": f"redis://127.0.0.1:6379/{REDIS_DB}", "key_prefix": prefix},
        "router": {"spill_dir": str(work / "spill"), **(router or {})},
        "writer": {"metrics_port": 0, **(writer or {})},
        "metrics": {"port": 0},
        "poller": {"enabled": False},
    }
    cfg_path = work / "g1.yaml"
    cfg_path.write_text(json.dumps(cfg))
    # The gatherer must not meet a refused connection: its backoff could then outlast the start delay and a
    # subscription begin after the market did (events before it would count as lost).
    wait_for_port(port, 60)
    gat = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "gather", "--config", str(cfg_path)],
        stdout=subprocess.DEVNULL,
        stderr=(work / "gather.log").open("wb"),
    )
    wri = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "write", "--config", str(cfg_path), "--consumer", "b"],
        stdout=subprocess.DEVNULL,
        stderr=(work / "write.log").open("wb"),
    )
    procs = {"simulator": sim, "gatherer": gat, "writer": wri}
    start_cpu = {k: proc_stats(p.pid)[0] for k, p in procs.items()}
    lat: list[float] = []
    lat_prod: list[float] = []
    sim_cpu = start_cpu["simulator"]
    from dedup import sync_all

    dcfg = DeduplicatorConfig(
        production=DatabaseConfig(dbname=f"kdb_{tag}_prod"),
        sources=[SourceConfig(gatherer_id="g1", database=DatabaseConfig(dbname=f"kdb_{tag}_g1"))],
    )
    stop_dedup = threading.Event()

    def dedup_loop() -> None:  # production merges continuously, as the RQ schedule would (every second)
        while not stop_dedup.is_set():
            sync_all(dcfg)
            stop_dedup.wait(dedup_every)

    # Deployed, dedup runs on its own host; here it shares the 2 cores (--dedup-every 0: not during the run).
    dedup_thread = threading.Thread(target=dedup_loop, daemon=True)
    if dedup_every > 0:
        dedup_thread.start()
    peak_rss = {k: 0 for k in procs}
    t_market = time.time() + delay - 2.5
    market_cpu: dict[str, float] = {}  # CPU seconds of each process when the market opened (start-up excluded)
    try:
        with psycopg.connect(gdb, autocommit=True) as conn, psycopg.connect(pdb, autocommit=True) as pconn:
            while sim.poll() is None:
                time.sleep(0.2)
                sim_cpu = proc_stats(sim.pid)[0]
                if not market_cpu and time.time() > t_market + 2.5:
                    market_cpu = {k: proc_stats(p.pid)[0] for k, p in procs.items()}
                row = conn.execute("SELECT max(exchange_ts_us) FROM orderbook_deltas").fetchone()
                prow = pconn.execute("SELECT max(exchange_ts_us) FROM orderbook_deltas").fetchone()
                now_us = time.time_ns() // 1000
                if row and row[0] is not None and time.time() > t_market + 3:
                    lat.append((now_us - row[0]) / 1e6)
                if prow and prow[0] is not None and time.time() > t_market + 5:
                    lat_prod.append((now_us - prow[0]) / 1e6)
                for k, p in procs.items():
                    if p.poll() is None:
                        peak_rss[k] = max(peak_rss[k], proc_stats(p.pid)[1])
        cpu = {k: round(proc_stats(p.pid)[0] - start_cpu[k], 1) for k, p in procs.items() if k != "simulator"}
        cpu["simulator"] = round(sim_cpu - start_cpu["simulator"], 1)
        # drain: the gatherer's sink, then the writer's backlog
        deadline = time.time() + 120
        drained_at = None
        while time.time() < deadline:
            pending = 0
            for key in (stream(prefix, "g1", kind) for kind in STREAM_KINDS):  # not the heartbeat or hash beside
                if not r.exists(key):
                    continue
                groups: Any = r.xinfo_groups(key)
                pending += sum(int(g.get("lag") or 0) + int(g["pending"]) for g in groups)
            if pending == 0:
                drained_at = time.time()
                break
            time.sleep(0.2)
        sim_end = ledger_path.stat().st_mtime
        # CPU from the market's opening to the end of the drain: what capturing the events cost each process
        market_cpu_s = {k: proc_stats(p.pid)[0] - market_cpu.get(k, 0.0) for k, p in procs.items() if k != "simulator"}
        market_cpu_s["simulator"] = sim_cpu - market_cpu.get("simulator", 0.0)
        stop_dedup.set()
        if dedup_every > 0:
            dedup_thread.join(60)
        t0 = time.time()
        sync_all(dcfg)  # the last rows, after the market stopped
        sync_s = time.time() - t0
        ledger = Ledger(keep_in_memory=True)
        ledger_rows = load_jsonl(ledger_path)
        for kind, rows in ledger_rows.items():
            for row in rows:
                if kind in ("delta", "trade", "ticker", "lifecycle"):
                    ledger.record(kind, row)
        report = compare_with_ledger(ledger, gdb, examples=5)
        prod_report = compare_with_ledger(ledger, pdb)
        # What explains a loss: gaps the gatherer recorded, faults the simulator logged (a slow consumer),
        # the gatherer's warnings (reconnects)
        with psycopg.connect(gdb) as conn:
            gap_rows = conn.execute("SELECT kind, count(*) FROM sequence_gaps GROUP BY kind").fetchall()
        sim_faults = ledger_rows.get("fault", [])
        warnings = [ln for ln in (work / "gather.log").read_text(errors="replace").splitlines() if "WARNING" in ln]
        dl_keys: Any = r.keys(f"{prefix}:g1:*deadletter*")
        dead_letters = {k.decode(): r.xlen(k) for k in dl_keys}
    finally:
        for p in (gat, wri, sim):
            if p.poll() is None:
                p.terminate()
        for p in (gat, wri, sim):
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        for key in r.scan_iter(f"{prefix}:*"):
            r.delete(key)
        if os.environ.get("KD_BENCH_KEEP"):  # keep the databases, logs and ledger to look into a loss
            print(f"kept: {work}, databases kdb_{tag}_g1 and kdb_{tag}_prod", file=sys.stderr)
        else:
            with psycopg.connect(ADMIN, autocommit=True) as conn:
                for db in (f"kdb_{tag}_g1", f"kdb_{tag}_prod"):
                    conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            shutil.rmtree(work, ignore_errors=True)
    events = sum(v["expected"] for v in report.values())
    missing = sum(v["missing"] for v in report.values())
    return {
        "target_rate": rate,
        "events": events,
        "sustained_events_per_s": round(events / seconds),
        "missing": missing,
        "extra": sum(v["extra"] for v in report.values()),
        "production_missing": sum(v["missing"] for v in prod_report.values()),
        "missing_by_table": {
            t: {"missing": v["missing"], "examples": v["missing_keys"]} for t, v in report.items() if v["missing"]
        },
        "first_event_us": min((row[1] for row in ledger_rows.get("delta", [])), default=None),
        "sequence_gaps": dict(gap_rows),
        "dead_letters": dead_letters,
        "simulator_faults": sim_faults[:10],
        "gatherer_warnings": warnings[-10:],
        "latency_to_gatherer_db_s": {
            "p50": round(pct(lat, 0.5), 3),
            "p99": round(pct(lat, 0.99), 3),
            "samples": len(lat),
        },
        "latency_to_production_s": {
            "p50": round(pct(lat_prod, 0.5), 3),
            "p99": round(pct(lat_prod, 0.99), 3),
            "samples": len(lat_prod),
            "sync_every_s": dedup_every,
        }
        if dedup_every > 0
        else None,
        "drain_after_market_stop_s": None if drained_at is None else round(max(0.0, drained_at - sim_end), 2),
        "dedup_sync_s": round(sync_s, 2),
        "cpu_s": cpu,
        "cpu_us_per_event": {k: round(v / max(1, events) * 1e6, 2) for k, v in market_cpu_s.items()},
        "config_overrides": {"router": router or {}, "writer": writer or {}},
        "peak_rss_mb": {k: round(v / 1e6) for k, v in peak_rss.items()},
        "lag_mean_s": round(statistics.fmean(lat), 3) if lat else None,
    }


def registry_memory(n: int = 1_000_000) -> dict[str, Any]:
    """Bytes per market of the MarketRegistry's map (ticker -> (status, digest)) at 1,000,000 markets."""
    import tracemalloc

    from simulator import Universe

    u = Universe(seed=1, n_markets=n, start_s=1_764_000_000, hot=0)
    tickers = [u.market_ticker(i) for i in range(n)]
    statuses = {"active": "active"}
    tracemalloc.start()
    markets = {t: (statuses["active"], hash(t)) for t in tickers}
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del markets
    return {
        "markets": n,
        "registry_bytes_per_market": round(size / n, 1),
        "note": "map only; ticker strings themselves are shared with the listing",
    }


def run(
    rates: list[float] | None = None,
    seconds: float = 20,
    dedup_every: float = 1.0,
    router: dict[str, Any] | None = None,
    writer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from bench.bench_router import run as router_ceilings
    from bench.bench_simulator import engine_only

    results = []
    for rate in rates or [2000, 5000, 10000, 20000]:
        res = run_rate(rate, seconds, markets=2000, active=500, dedup_every=dedup_every, router=router, writer=writer)
        results.append(res)
        print(json.dumps(res), file=sys.stderr, flush=True)
        if res["missing"] or res["sustained_events_per_s"] < 0.9 * rate:
            break
    ok = [r for r in results if r["missing"] == 0 and r["sustained_events_per_s"] >= 0.9 * r["target_rate"]]
    ceilings = router_ceilings(100_000)
    return {
        "headline_zero_loss_events_per_s": max((r["sustained_events_per_s"] for r in ok), default=0),
        "runs": results,
        "ceilings": {"simulator_engine_events_per_s": round(engine_only()), **ceilings},
        "registry": registry_memory(),
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="2000,5000,10000,20000")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--dedup-every", type=float, default=1.0, help="seconds between merges during the run; 0: none")
    ap.add_argument("--router", default="{}", help='JSON overrides of the router config, e.g. {"flush_interval_ms": 5}')
    ap.add_argument("--writer", default="{}", help='JSON overrides of the writer config, e.g. {"linger_ms": 0}')
    a = ap.parse_args()
    rates = [float(x) for x in a.rates.split(",")]
    print(json.dumps(run(rates, a.seconds, a.dedup_every, json.loads(a.router), json.loads(a.writer))))
