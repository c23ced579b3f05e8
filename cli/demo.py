"""`kalshi-data demo`: the whole platform on this machine against the simulator, with live progress and a
summary that checks production against the simulator's ledger, table by table."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline here against the simulator, then check it")
    p.add_argument("--markets", type=int, default=3000, help="markets in the simulated exchange")
    p.add_argument("--active", type=int, default=300, help="markets with moving order books")
    p.add_argument("--rate", type=float, default=2000, help="exchange events per second")
    p.add_argument("--duration", type=float, default=60, help="seconds the market runs")
    p.add_argument("--gatherers", type=int, default=3, help="gatherer hosts to simulate (default 3)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--pg",
        default="host=127.0.0.1 port=5432 user=postgres dbname=postgres",
        help="admin connection: databases kalshi_demo_* are (re)created there",
    )
    p.add_argument("--redis", default="redis://127.0.0.1:6379/2", help="a Redis database the demo may flush")
    p.add_argument("--lake", type=Path, default=Path("lake"), help="Parquet lake folder (default ./lake)")
    p.add_argument(
        "--db-prefix", default="kalshi_demo", help="databases <prefix>_prod and <prefix>_g1.. (default %(default)s)"
    )
    p.add_argument(
        "--run-dir", type=Path, default=Path("run/demo"), help="configs, keys and logs (default %(default)s)"
    )
    p.add_argument(
        "--history-days",
        type=int,
        default=3,
        help="days of past the simulator has (settled markets, trades, candles), backfilled while the demo "
        "captures live (0: none)",
    )
    p.add_argument(
        "--key-type",
        choices=("ed25519", "rsa", "none"),
        default="ed25519",
        help="the API key the gatherers sign with (the simulator requires it): Kalshi's default type today",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from devstack import Pipeline, PipelineOptions
    from simulator import is_exact

    logging.getLogger().setLevel(logging.WARNING)
    opts = PipelineOptions(
        markets=args.markets,
        active=args.active,
        rate=args.rate,
        seed=args.seed,
        duration_s=args.duration,
        gatherers=args.gatherers,
        admin_dsn=args.pg,
        redis_url=args.redis,
        lake=args.lake,
        db_prefix=args.db_prefix,
        run_dir=args.run_dir,
        key_type=None if args.key_type == "none" else args.key_type,
        history_days=args.history_days,
    )

    async def main() -> int:
        p = Pipeline(opts)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(
            f"demo: {opts.gatherers} gatherers, {opts.markets} markets ({opts.active} active), "
            f"{opts.rate:.0f} events/s for {opts.duration_s:.0f}s; Ctrl-C stops early",
            flush=True,
        )
        try:
            await p.start()
            print(f"simulator at {p.sim.rest_url if p.sim else '?'}; gatherers ready; market running", flush=True)
            backfill = p.backfill() if opts.history_days else None
            if backfill is not None:
                backfill.start()
                print(
                    f"backfill: the simulator's {opts.history_days} past days into production, beside the live "
                    f"capture (log {backfill.log_path})",
                    flush=True,
                )
            last: dict[str, object] = {}
            end = loop.time() + opts.duration_s
            while loop.time() < end and not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):
                        await stop.wait()
                last = p.progress(last)
            history_run = None
            if backfill is not None:
                print("waiting for the backfill ...", flush=True)
                history_run = await asyncio.to_thread(backfill.wait, 600)
            print("draining: every record to its gatherer database, then production ...", flush=True)
            await p.drain()
            exported = await p.export()
            print(f"exported {len(exported['exported'])} table-days to {opts.lake}", flush=True)
            report = p.report()
            report["backfill"] = history_run
        finally:
            await p.stop()
        print_summary(report)
        past, run = report.get("history"), report.get("backfill")
        history_ok = not past or (past["stored"] == past["past_markets"] and not past["differing"] and run
                                  and not run["windows_failed"])  # fmt: skip
        exact = is_exact(report["completeness"]) and bool(history_ok)
        print("completeness: EXACT (nothing missing, nothing extra)" if exact else "completeness: NOT EXACT")
        return 0 if exact else 1

    try:
        return asyncio.run(main())
    except RuntimeError as exc:  # a demo that cannot start says why, without a traceback
        print(f"demo: {exc}", file=sys.stderr)
        return 2


def print_summary(report: dict[str, Any]) -> None:
    print("\nsummary")
    cov = report["coverage"]
    print(f"  markets in production: {report['markets_in_production']}")
    print(
        f"  coverage: {cov['book_gaps_unverified']} book gaps where production may lack something "
        f"({cov['unverified_market_seconds']} market-seconds), {cov['book_gaps_verified']} checked complete, "
        f"{cov['book_gaps_open']} open; trade gaps {cov['trade_gaps_open']} open, {cov['trade_gaps_healed']} healed"
    )
    audits = report.get("book_audits", {})
    by = audits.get("by_result", {})
    print(
        f"  book audit: {audits.get('markets_audited', 0)} markets audited "
        f"({audits.get('moving_markets_audited', 0)} of them with deltas), {by.get('matched', 0)} REST snapshots "
        f"matched, {by.get('mismatched', 0)} mismatched, {by.get('no_baseline', 0) + by.get('gap', 0)} without "
        "a baseline"
    )
    print(
        f"  lake: {report['lake']['parquet_files']} Parquet files, {report['lake']['bytes'] / 1e6:.1f} MB in "
        f"{report['lake']['path']}"
    )
    for table, t in report["lake"].get("tables", {}).items():
        print(
            f"    {table:<24}{t['files']:>3} files {t['rows']:>9} rows {t['bytes'] / 1e6:8.2f} MB  "
            f"{t['ratio_to_gzip_csv']} x gzip CSV"
        )
    past, run = report.get("history"), report.get("backfill")
    if past and run:
        print(
            f"  history: {past['stored']} of {past['past_markets']} past markets in production "
            f"({past['differing']} differing from the exchange), {past['trades']['stored']} of "
            f"{past['trades']['past']} past trades, {past['candles']['stored']} of {past['candles']['past']} "
            f"one-minute candles; the backfill made {run['requests']} requests in {run['seconds']:.1f} s, "
            f"{run['windows_failed']} windows failed"
        )
    w = max(18, *(len(t) + 2 for t in report["completeness"]))
    print(f"  {'table':<{w}}{'ledger':>10}{'production':>12}{'missing':>9}{'extra':>7}{'differing':>10}")
    for table, c in report["completeness"].items():
        print(f"  {table:<{w}}{c['expected']:>10}{c['stored']:>12}{c['missing']:>9}{c['extra']:>7}{c['differing']:>10}")
    print(json.dumps({"summary": report}, default=str))
