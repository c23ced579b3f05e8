"""`kalshi-data sim`: run the Kalshi exchange simulator."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "sim",
        help="run the Kalshi exchange simulator (REST + WebSocket on one port)",
        description="Serve Kalshi's REST API and market-data WebSocket from a seeded, living market, "
        "record every exchange event once in a ledger, and inject scheduled faults.",
    )
    p.add_argument("--host", default="127.0.0.1", help="listen address (default %(default)s)")
    p.add_argument("--port", type=int, default=8765, help="listen port, 0 = any free port (default %(default)s)")
    p.add_argument("--markets", type=int, default=2000, help="markets in the registry (up to 1,000,000+)")
    p.add_argument("--active", type=int, default=200, help="markets with living order books")
    p.add_argument("--rate", type=float, default=1000, help="target exchange events per second")
    p.add_argument("--seed", type=int, default=1, help="seed of markets, books and every random choice")
    p.add_argument("--duration", type=float, default=None, help="stop generating after this many seconds")
    p.add_argument(
        "--history-days",
        type=int,
        default=0,
        help="a past of this many days: settled markets with results, their trades and one-minute candles, served "
        "through the live and /historical/* endpoints on either side of a cutoff (GET /historical/cutoff)",
    )
    p.add_argument("--history-trades-per-market", type=int, default=35, help="the past's trades per market, on average")
    p.add_argument("--ledger", type=Path, default=None, help="write the ground-truth ledger as JSONL here")
    p.add_argument("--faults", type=Path, default=None, help="fault schedule YAML (see simulator/_faults.py)")
    p.add_argument(
        "--ws-fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="inline WebSocket fault, e.g. kind=close,connection=1,after_messages=500",
    )
    p.add_argument(
        "--rest-fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="inline REST fault, e.g. kind=429,path=/markets,after_requests=2,count=3",
    )
    p.add_argument(
        "--public-key",
        action="append",
        default=[],
        metavar="KEY_ID=PEM",
        help="require RSA-PSS signed requests from this API key (repeatable)",
    )
    p.add_argument("--max-skew", type=float, default=60.0, help="oldest accepted signature timestamp, seconds")
    p.add_argument("--rest-rate-limit", type=float, default=None, help="REST requests/s per client (429 above)")
    p.add_argument("--rest-burst", type=float, default=0, help="token-bucket burst for --rest-rate-limit")
    p.add_argument(
        "--legacy-fields",
        action="store_true",
        help="REST: add the legacy integer cents/counts and the fields Kalshi removed in 2026 (default: today's wire)",
    )
    p.add_argument(
        "--ws-fields",
        choices=("current", "legacy", "both"),
        default="current",
        help="WebSocket field generation (legacy forces whole-cent prices and whole contracts)",
    )
    p.add_argument(
        "--status-vocabulary",
        choices=("current", "sdk"),
        default="current",
        help="'sdk' reports only statuses the official SDK 3.2.0 accepts",
    )
    p.add_argument("--cursor-ttl", type=float, default=None, help="REST cursors expire after this many seconds")
    p.add_argument("--ping-interval", type=float, default=10.0, help="server ping every N seconds")
    p.add_argument(
        "--ws-command-latency",
        type=float,
        default=0.005,
        help="WebSocket commands are carried out this many seconds after they arrive, data flowing meanwhile",
    )
    p.add_argument(
        "--ws-command-spacing",
        type=float,
        default=0.0,
        help="seconds between carrying out two commands of one connection, data flowing on (default 0)",
    )
    p.add_argument(
        "--duplicate-rate",
        type=float,
        default=0.03,
        help="share of order adds repeated identically within one exchange millisecond",
    )
    p.add_argument(
        "--start-delay",
        type=float,
        default=0.0,
        help="serve for this many seconds before the market starts moving (clients subscribe first)",
    )
    p.add_argument(
        "--lifecycle-interval",
        type=float,
        default=1.0,
        help="seconds between market lifecycle transitions (0 = none)",
    )
    return p


def options_from_args(args: argparse.Namespace) -> object:
    from simulator import ExchangeOptions, SimOptions, load_schedule

    return SimOptions(
        host=args.host,
        port=args.port,
        exchange=ExchangeOptions(
            seed=args.seed,
            markets=args.markets,
            active=args.active,
            duplicate_rate=args.duplicate_rate,
            lifecycle_interval_s=args.lifecycle_interval,
            ws_fields=args.ws_fields,
        ),
        rate=args.rate,
        start_delay_s=args.start_delay,
        duration_s=args.duration,
        ledger_path=args.ledger,
        keep_ledger_in_memory=args.ledger is None,  # a long run keeps its ledger on disk only
        public_keys=args.public_key,
        max_skew_s=args.max_skew,
        rest_rate_limit=args.rest_rate_limit,
        rest_burst=args.rest_burst,
        legacy_rest=args.legacy_fields,
        status_vocabulary=args.status_vocabulary,
        cursor_ttl_s=args.cursor_ttl,
        ping_interval_s=args.ping_interval,
        ws_command_latency_s=args.ws_command_latency,
        ws_command_spacing_s=args.ws_command_spacing,
        faults=load_schedule(args.faults, args.ws_fault, args.rest_fault),
        history_days=args.history_days,
        history_trades_per_market=args.history_trades_per_market,
    )


def run(args: argparse.Namespace) -> int:
    from simulator import FaultError, SimOptions, Simulator

    try:
        opts = options_from_args(args)
    except FaultError as exc:
        print(f"fault schedule error: {exc}", file=sys.stderr)
        return 2
    assert isinstance(opts, SimOptions)

    async def main() -> None:
        sim = Simulator(opts)
        await sim.start()
        print(
            f"simulator: REST {sim.rest_url}  WebSocket {sim.ws_url}  "
            f"({sim.exchange.universe.n_markets} markets, {len(sim.exchange.hot)} active, {opts.rate}/s)",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        t0 = time.monotonic()
        waiter = asyncio.create_task(sim.wait())
        stopper = asyncio.create_task(stop.wait())
        while not stop.is_set() and not waiter.done():
            await asyncio.wait({waiter, stopper}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
            print(json.dumps({"t": round(time.monotonic() - t0, 1), **sim.summary()}), flush=True)
        stopper.cancel()
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
        await sim.stop()
        print(json.dumps({"summary": sim.summary()}), flush=True)

    asyncio.run(main())
    return 0
