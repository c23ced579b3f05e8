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
    w.add_argument("--no-cron", action="store_true", help="only the worker (run `dedup scheduler` elsewhere)")
    w.add_argument("--burst", action="store_true", help="work off the queue, then exit")
    w.set_defaults(handler=run_worker)
    c = dsub.add_parser("scheduler", help="RQ's cron scheduler: enqueues sync and export at the config's intervals")
    c.add_argument("--config", required=True, help="deduplicator.yaml")
    c.set_defaults(handler=run_scheduler)
    s = dsub.add_parser("sync", help="one sync round now, in this process")
    s.add_argument("--config", required=True)
    s.set_defaults(handler=run_sync)
    st = dsub.add_parser("status", help="lag per source and table")
    st.add_argument("--config", required=True)
    st.set_defaults(handler=run_status)
    lk = sub.add_parser("lake", help="query the Parquet lake")
    lsub = lk.add_subparsers(dest="lake_command", required=True, metavar="ACTION")
    q = lsub.add_parser(
        "sql", help="SQL on the lake (DuckDB): a view per table, dollars and contracts as exact decimals"
    )
    q.add_argument("query", help='e.g. "SELECT market_ticker, sum(count) FROM trades GROUP BY 1"')
    q.add_argument("--lake", default="lake", help="the lake: a folder (default ./lake) or s3://bucket/prefix")
    q.add_argument(
        "--s3-endpoint-url", help="an S3-compatible store (MinIO); credentials from AWS_ACCESS_KEY_ID and friends"
    )
    q.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        default="table",
        help="table (default), csv, or json (one object per row; decimals as exact strings, times as ISO)",
    )
    q.set_defaults(handler=run_lake_sql)
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


class LakeMissing(Exception):
    """The lake folder named does not exist."""


def run_lake_sql(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dedup import lake_sql

    if not str(args.lake).startswith("s3://") and not Path(args.lake).is_dir():
        raise LakeMissing(
            f"no lake at {args.lake}: give --lake the folder the export writes (make demo writes ./lake), or "
            "s3://bucket/prefix"
        )
    names, rows = lake_sql(args.lake, args.query, args.s3_endpoint_url)
    if args.format == "csv":
        import csv

        out = csv.writer(sys.stdout)
        out.writerow(names)
        out.writerows([_plain(v) for v in r] for r in rows)
    elif args.format == "json":
        for r in rows:
            print(json.dumps({n: _plain(v) for n, v in zip(names, r, strict=True)}))
    else:
        widths = [max([len(str(n)), *(len(str(r[i])) for r in rows)]) for i, n in enumerate(names)]
        print("  ".join(str(n).ljust(w) for n, w in zip(names, widths, strict=True)).rstrip())
        for r in rows:
            print("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _plain(v: object) -> object:
    """A value for CSV or JSON: decimals as their exact text, times as ISO-8601, lists element by element."""
    from datetime import date, datetime
    from decimal import Decimal

    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def run_export(args: argparse.Namespace) -> int:
    from dedup import export_all

    print(json.dumps(export_all(_cfg(args.config))))
    return 0


def run_scheduler(args: argparse.Namespace) -> int:
    from core.redisconn import redis_from_config
    from dedup import make_scheduler

    cfg = _cfg(args.config)
    make_scheduler(cfg, os.path.abspath(args.config), redis_from_config(cfg.redis)).start()  # type: ignore[no-untyped-call]
    return 0


def run_worker(args: argparse.Namespace) -> int:
    from rq import Queue

    from core.redisconn import redis_from_config
    from dedup import QUEUE, DedupWorker

    cfg = _cfg(args.config)
    conn = redis_from_config(cfg.redis)
    cron = None
    if not args.no_cron:
        # the scheduler reads the same file: the password travels in the config (environment), not in argv
        cron = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "dedup", "scheduler", "--config", os.path.abspath(args.config)]
        )
    from core.health import HealthServer

    health = None
    if cfg.metrics.port:
        health = HealthServer(cfg.metrics.host, cfg.metrics.port, lambda: (bool(conn.ping()), {}))
        health.start()
    try:
        DedupWorker([Queue(QUEUE, connection=conn)], connection=conn).work(burst=args.burst)
    finally:
        if cron is not None:
            cron.terminate()
            cron.wait(10)
        if health is not None:
            health.stop()
    return 0
