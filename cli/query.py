"""Query commands on production: `book TICKER --at TIME`, `trades TICKER --since TIME`, `status`."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

import psycopg

from core.conversions import iso_to_us, price_to_dollars, qty_to_fp, us_to_iso


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    commands = (
        ("book", "the order book of a market at a time, rebuilt from snapshots and deltas"),
        ("trades", "trades of a market since a time"),
        ("status", "what production holds: rows, sync lag, coverage gaps, exported days"),
    )
    for name, helptext in commands:
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--config", help="deduplicator.yaml (production is read from it)")
        p.add_argument("--dsn", help="production connection string instead of --config")
        if name in ("book", "trades"):
            p.add_argument("ticker")
        if name == "book":
            p.add_argument("--at", default=None, help="ISO-8601 time or unix µs (default: now)")
            p.add_argument("--depth", type=int, default=10)
            p.add_argument(
                "--from",
                dest="start",
                choices=("latest", "first"),
                default="latest",
                help="rebuild from the latest snapshot before the time (default) or the first one",
            )
        if name == "trades":
            p.add_argument("--since", default=None, help="ISO-8601 time or unix µs (default: last hour)")
            p.add_argument("--limit", type=int, default=100)
        p.set_defaults(handler=globals()[f"run_{name}"])


def _dsn(args: argparse.Namespace) -> str:
    if args.dsn:
        return str(args.dsn)
    from core.config import ConfigError, DeduplicatorConfig, load_config
    from core.db import dsn_from_config

    if not args.config:
        raise ConfigError("give --config deduplicator.yaml or --dsn")
    return dsn_from_config(load_config(args.config, DeduplicatorConfig).production, "kalshi-data-query")


def parse_time(v: str | None, default_us: int) -> int:
    if v is None:
        return default_us
    return int(v) if v.isdigit() else iso_to_us(v)


def run_book(args: argparse.Namespace) -> int:
    from dedup import rebuild_book

    now = int(datetime.now(UTC).timestamp() * 1_000_000)
    with psycopg.connect(_dsn(args)) as conn:
        try:
            b = rebuild_book(conn, args.ticker, parse_time(args.at, now), args.start)
        except LookupError as exc:
            print(exc)
            return 1
    print(
        f"{b['ticker']} at {us_to_iso(b['at_us'])} (snapshot {us_to_iso(b['snapshot_received_us'])} "
        f"{b['snapshot_source']} by {b['snapshot_gatherer']} + {b['deltas_applied']} deltas)"
        + ("  WARNING: inside a coverage gap, not exact" if b["inside_coverage_gap"] else "")
    )
    print(f"  {'YES bids':>24}   {'NO bids':>24}")
    for k in range(args.depth):
        y = b["yes"][k] if k < len(b["yes"]) else None
        n = b["no"][k] if k < len(b["no"]) else None
        ys = f"{qty_to_fp(y[1]):>12} @ {price_to_dollars(y[0])}" if y else ""
        ns = f"{qty_to_fp(n[1]):>12} @ {price_to_dollars(n[0])}" if n else ""
        if not (y or n):
            break
        print(f"  {ys:>24}   {ns:>24}")
    return 0


def run_trades(args: argparse.Namespace) -> int:
    now = int(datetime.now(UTC).timestamp() * 1_000_000)
    since = parse_time(args.since, now - 3_600_000_000)
    with psycopg.connect(_dsn(args)) as conn:
        rows = conn.execute(
            "SELECT exchange_ts_us, trade_id, yes_price, no_price, count, taker_outcome_side FROM trades "
            "WHERE market_ticker = %s AND exchange_ts_us >= %s ORDER BY exchange_ts_us LIMIT %s",
            (args.ticker, since, args.limit),
        ).fetchall()
    for ts, tid, yp, np_, count, taker in rows:
        side = "yes" if taker else "no" if taker is not None else "?"
        print(
            f"{us_to_iso(ts)}  {qty_to_fp(count):>10} @ yes {price_to_dollars(yp)} / no {price_to_dollars(np_)}"
            f"  taker {side}  {tid}"
        )
    return 0


def run_status(args: argparse.Namespace) -> int:
    from dedup import coverage_summary

    with psycopg.connect(_dsn(args)) as conn:
        out: dict[str, Any] = {}
        for t in ("markets", "trades", "orderbook_deltas", "orderbook_snapshots", "tickers", "lifecycle_events"):
            out[t] = conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
        now = int(datetime.now(UTC).timestamp() * 1_000_000)
        out["sync"] = [
            {"source": s, "table": t, "rows": n, "lag_s": None if c is None else round((now - c) / 1e6, 1)}
            for s, t, n, c in conn.execute(
                "SELECT source, table_name, rows_synced, caught_up_us FROM sync_cursors ORDER BY 1, 2"
            )
        ]
        out["coverage"] = coverage_summary(conn)
        hour_ago = now - 3_600_000_000
        audited = conn.execute(
            "SELECT count(DISTINCT market_ticker) FILTER (WHERE result IN ('matched', 'mismatched')), "
            "count(*) FILTER (WHERE result = 'matched'), count(*) FILTER (WHERE result = 'mismatched'), "
            "count(DISTINCT market_ticker) FILTER (WHERE result = 'mismatched'), count(*) "
            "FROM book_audits WHERE rest_received_us >= %s",
            (hour_ago,),
        ).fetchone()
        out["book_audit_last_hour"] = dict(
            zip(
                ("markets_audited", "matched", "mismatched", "markets_mismatched", "rest_snapshots"),
                audited or (),
                strict=False,
            )
        )
        out["mismatched_markets_last_hour"] = [
            {"market": m, "gatherer": g, "at_us": t, "differing": d}
            for m, g, t, d in conn.execute(
                "SELECT DISTINCT ON (market_ticker) market_ticker, gatherer_id, rest_received_us, differing "
                "FROM book_audits WHERE result = 'mismatched' AND rest_received_us >= %s "
                "ORDER BY market_ticker, rest_received_us DESC LIMIT 20",
                (hour_ago,),
            )
        ]
        out["exported_days"] = conn.execute("SELECT count(*) FROM export_manifest").fetchone()[0]  # type: ignore[index]
    print(json.dumps(out, indent=1))
    return 0
