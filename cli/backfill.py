"""`kalshi-data backfill`: Kalshi's public past into production, in this process or as a job on the dedup queue."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import date


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a day as YYYY-MM-DD, got {text!r}") from None


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    b = sub.add_parser(
        "backfill",
        help="Kalshi's public past into production: markets, trades, one-minute candles (resumable)",
        description="Fetch the markets (every status, live and /historical/*), their trades and one-minute "
        "candlesticks of whole UTC days into production. Each window commits with a checkpoint: a killed run "
        "resumes, a second run fetches nothing twice. Runs beside the live capture (same trade keys).",
    )
    b.add_argument("--config", required=True, help="backfill.yaml (config/backfill.example.yaml)")
    b.add_argument("--since", required=True, type=_day, help="first UTC day, YYYY-MM-DD")
    b.add_argument("--until", type=_day, default=None, help="last UTC day, YYYY-MM-DD (default: up to now)")
    b.add_argument("--series", nargs="+", default=[], metavar="S", help="only these series (default: every market)")
    b.add_argument("--enqueue", action="store_true", help="run it as an RQ job on queue `dedup` instead")
    b.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from core.config import BackfillConfig, load_config
    from history import enqueue, request_of, run_backfill

    if not args.verbose:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request drowns the progress

    if args.until is not None and args.until < args.since:
        raise ValueError(f"--until {args.until} is before --since {args.since}")
    until = args.until.isoformat() if args.until else None
    if args.enqueue:
        job = enqueue(args.config, args.since.isoformat(), until, list(args.series))
        print(f"enqueued backfill job {job} on queue dedup (a `kalshi-data dedup worker` runs it)")
        return 0
    cfg = load_config(args.config, BackfillConfig)
    report = asyncio.run(run_backfill(cfg, request_of(args.since, args.until, args.series)))
    print(json.dumps(report.as_dict()))
    return 0 if report.windows_failed == 0 else 1
