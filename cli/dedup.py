"""`kalshi-data dedup worker|sync|status` and `kalshi-data export`."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser("dedup", help="merge the gatherer databases into production")
    dsub = d.add_subparsers(dest="dedup_command", required=True, metavar="ACTION")
    w = dsub.add_parser("worker", help="an RQ worker on queue `dedup`, plus RQ's cron scheduler for the jobs")
    w.add_argument("--config", required=True, help="deduplicator.yaml")
    w.add_argument("--no-cron", action="store_true", help="only the worker (run `rq cron` elsewhere)")
    w.add_argument("--burst", action="store_true", help="work off the queue, then exit")
    w.set_defaults(handler=run_worker)
    s = dsub.add_parser("sync", help="one sync round now, in this process")
    s.add_argument("--config", required=True)
    s.set_defaults(handler=run_sync)
    st = dsub.add_parser("status", help="lag per source and table")
    st.add_argument("--config", required=True)
    st.set_defaults(handler=run_status)
    e = sub.add_parser("export", help="export complete days of production to the Parquet lake, now")
    e.add_argument("--config", required=True, help="deduplicator.yaml")
    e.set_defaults(handler=run_export)


def _cfg(path: str):  # type: ignore[no-untyped-def]
    from core.config import DeduplicatorConfig, load_config

    return load_config(path, DeduplicatorConfig)


def run_sync(args: argparse.Namespace) -> int:
    from dedup import sync_all

    print(json.dumps(sync_all(_cfg(args.config))))
    return 0


def run_status(args: argparse.Namespace) -> int:
    from dedup import status

    for row in status(_cfg(args.config)):
        print(json.dumps(row))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from dedup import export_all

    print(json.dumps(export_all(_cfg(args.config))))
    return 0


def run_worker(args: argparse.Namespace) -> int:
    from redis import Redis
    from rq import Queue, Worker

    from dedup import QUEUE

    cfg = _cfg(args.config)
    pw = cfg.redis.password.get_secret_value() if cfg.redis.password else None
    conn = Redis.from_url(cfg.redis.url, password=pw)
    cron = None
    if not args.no_cron:
        env = {**os.environ, "KD_DEDUP_CONFIG": os.path.abspath(args.config)}
        cron = subprocess.Popen([sys.executable, "-m", "rq.cli", "cron", "dedup.cron_config", "--url", cfg.redis.url],
                                env=env)  # fmt: skip
    from core.health import HealthServer

    health = None
    if cfg.metrics.port:
        health = HealthServer(cfg.metrics.host, cfg.metrics.port, lambda: (bool(conn.ping()), {}))
        health.start()
    try:
        Worker([Queue(QUEUE, connection=conn)], connection=conn).work(burst=args.burst)
    finally:
        if cron is not None:
            cron.terminate()
            cron.wait(10)
        if health is not None:
            health.stop()
    return 0
