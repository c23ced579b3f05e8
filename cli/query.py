"""Query commands on production: `book TICKER --at TIME` (or on the lake, `--lake`), `trades TICKER --since TIME`,
`status`."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg

from core.conversions import price_to_dollars, qty_to_fp, us_to_iso, user_time_to_us

if TYPE_CHECKING:
    from kalshi_data import Book

TIME_HELP = "ISO date or time (2026-12-06, 2026-12-06T15:30:00Z), unix seconds, ms or µs, or now"


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    commands = (
        ("book", "the order book of a market at a time, rebuilt from snapshots and deltas"),
        ("trades", "trades of a market since a time"),
        ("status", "what production holds: rows, sync lag, coverage, audit, latency, exported days"),
    )
    for name, helptext in commands:
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--config", help="deduplicator.yaml (production is read from it)")
        p.add_argument("--dsn", help="production connection string instead of --config")
        if name in ("book", "trades"):
            p.add_argument("ticker")
        if name == "book":
            p.add_argument("--lake", help="the Parquet lake (a folder or s3://bucket/prefix) instead of production")
            p.add_argument("--s3-endpoint-url", help="an S3-compatible store's endpoint, with an s3:// --lake")
            p.add_argument("--at", default="now", help=f"{TIME_HELP} (default: now)")
            p.add_argument("--depth", type=int, default=10)
            p.add_argument(
                "--from",
                dest="start",
                choices=("latest", "first"),
                default="latest",
                help="rebuild from the latest snapshot before the time (default) or the first one",
            )
        if name == "trades":
            p.add_argument("--since", default=None, help=f"{TIME_HELP} (default: an hour ago)")
            p.add_argument("--limit", type=int, default=100)
        if name == "status":
            p.add_argument("--json", action="store_true", help="one JSON document instead of the summary")
        p.set_defaults(handler=globals()[f"run_{name}"])


def _dsn(args: argparse.Namespace) -> str:
    if args.dsn:
        return str(args.dsn)
    from core.config import ConfigError, DeduplicatorConfig, load_config
    from core.db import dsn_from_config

    if not args.config:
        raise ConfigError("give --config deduplicator.yaml or --dsn")
    return dsn_from_config(load_config(args.config, DeduplicatorConfig).production, "kalshi-data-query")


def _now_us() -> int:
    return int(datetime.now(UTC).timestamp() * 1_000_000)


def _book(args: argparse.Namespace, at: int) -> Book:
    from kalshi_data import Lake, Production

    if args.lake:
        return Lake(args.lake, args.s3_endpoint_url).book(args.ticker, at, args.start)
    with Production(_dsn(args)) as prod:
        return prod.book(args.ticker, at, args.start)


def run_book(args: argparse.Namespace) -> int:
    at = user_time_to_us(args.at, _now_us())  # bad input is told before any connection
    b = _book(args, at)
    print(
        f"{b.ticker} at {us_to_iso(b.at_us)} (snapshot {us_to_iso(b.snapshot_received_us)} "
        f"{b.snapshot_source} by {b.snapshot_gatherer} + {b.deltas_applied} deltas)"
        + ("  WARNING: inside a coverage gap, not exact" if b.inside_coverage_gap else "")
    )
    newest = max(b.snapshot_received_us, b.newest_us or 0)
    if at > newest + 60_000_000 and at < _now_us() - 60_000_000:
        print(f"  note: the newest data held of this market is {us_to_iso(newest)}: this is its book then")
    print(f"  {'YES bids':>24}   {'NO bids':>24}")
    for k in range(args.depth):
        y = b.yes[k] if k < len(b.yes) else None
        n = b.no[k] if k < len(b.no) else None
        ys = f"{qty_to_fp(y[1]):>12} @ {price_to_dollars(y[0])}" if y else ""
        ns = f"{qty_to_fp(n[1]):>12} @ {price_to_dollars(n[0])}" if n else ""
        if not (y or n):
            break
        print(f"  {ys:>24}   {ns:>24}")
    return 0


def run_trades(args: argparse.Namespace) -> int:
    since = _now_us() - 3_600_000_000 if args.since is None else user_time_to_us(args.since, _now_us())
    with psycopg.connect(_dsn(args)) as conn:
        rows = conn.execute(
            "SELECT exchange_ts_us, trade_id, yes_price, no_price, count, taker_outcome_side FROM trades "
            "WHERE market_ticker = %s AND exchange_ts_us >= %s ORDER BY exchange_ts_us LIMIT %s",
            (args.ticker, since, args.limit),
        ).fetchall()
    if not rows:
        print(f"no trade of {args.ticker} since {us_to_iso(since)} (--since to look further back)")
    for ts, tid, yp, np_, count, taker in rows:
        side = "yes" if taker else "no" if taker is not None else "?"
        print(
            f"{us_to_iso(ts)}  {qty_to_fp(count):>10} @ yes {price_to_dollars(yp)} / no {price_to_dollars(np_)}"
            f"  taker {side}  {tid}"
        )
    return 0


def status(conn: psycopg.Connection[Any], now: int) -> dict[str, Any]:
    """Production in numbers: rows, sync lag, coverage, the last hour's audit and latency, exported days."""
    from dedup import coverage_summary

    out: dict[str, Any] = {}
    rows = {}
    for t in ("markets", "trades", "orderbook_deltas", "orderbook_snapshots", "tickers", "lifecycle_events"):
        rows[t] = int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # type: ignore[index]
    out["rows"] = rows
    out["sync"] = [
        {"source": s, "table": t, "rows": int(n), "lag_s": None if c is None else round((now - c) / 1e6, 1)}
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
    out["book_audit_last_hour"] = {
        k: int(v)
        for k, v in zip(
            ("markets_audited", "matched", "mismatched", "markets_mismatched", "rest_snapshots"),
            audited or (),
            strict=False,
        )
    }
    out["mismatched_markets_last_hour"] = [
        {"market": m, "gatherer": g, "at": us_to_iso(t), "differing": d}
        for m, g, t, d in conn.execute(
            "SELECT DISTINCT ON (market_ticker) market_ticker, gatherer_id, rest_received_us, differing "
            "FROM book_audits WHERE result = 'mismatched' AND rest_received_us >= %s "
            "ORDER BY market_ticker, rest_received_us DESC LIMIT 20",
            (hour_ago,),
        )
    ]
    out["receive_delay_ms_last_hour"] = latency(conn, hour_ago)
    out["history"] = history_status(conn, now)
    days = conn.execute("SELECT count(*), max(day) FROM export_manifest").fetchone()
    out["lake"] = {"table_days": int(days[0]) if days else 0, "newest_day": str(days[1]) if days and days[1] else None}
    return out


def history_status(conn: psycopg.Connection[Any], now: int) -> dict[str, Any]:
    """What `kalshi-data backfill` has brought in: windows done per endpoint, the span they cover, when the last
    was done, the trades it stored and the candles."""
    windows = {
        e: {"windows": int(n), "from": us_to_iso(lo), "to": us_to_iso(min(hi, now)), "last_done": str(at)}
        for e, n, lo, hi, at in conn.execute(
            "SELECT endpoint, count(*), min(window_from_us), max(window_to_us), max(done_at) "
            "FROM backfill_checkpoints GROUP BY 1 ORDER BY 1"
        )
    }
    trades = conn.execute("SELECT count(*) FROM trades WHERE source = 'history'").fetchone()
    candles = conn.execute("SELECT count(*) FROM candlesticks").fetchone()
    return {"windows": windows, "trades": int(trades[0]) if trades else 0, "candles": int(candles[0]) if candles else 0}


def latency(conn: psycopg.Connection[Any], since_us: int, sample: int = 100_000) -> dict[str, Any]:
    """Per table, our receive time minus Kalshi's sending_ts_ms over the newest rows that carry it: median and
    99th percentile in milliseconds (None where no row has it: frames from before 2026-10-01, REST rows)."""
    out: dict[str, Any] = {}
    for table in ("orderbook_deltas", "trades", "tickers"):
        row = conn.execute(
            f"SELECT count(*), percentile_disc(0.5) WITHIN GROUP (ORDER BY d), "
            f"percentile_disc(0.99) WITHIN GROUP (ORDER BY d) FROM (SELECT received_us - sent_us AS d FROM {table} "
            f"WHERE sent_us IS NOT NULL AND exchange_ts_us >= %s ORDER BY exchange_ts_us DESC LIMIT %s) x",
            (since_us, sample),
        ).fetchone()
        n, p50, p99 = row if row else (0, None, None)
        out[table] = {"rows": int(n), "p50": _ms(p50), "p99": _ms(p99)}
    return out


def _ms(us: int | None) -> float | None:
    return None if us is None else round(us / 1000, 1)


def run_status(args: argparse.Namespace) -> int:
    with psycopg.connect(_dsn(args)) as conn:
        out = status(conn, _now_us())
    if args.json:
        print(json.dumps(out, indent=1, default=str))
        return 0
    print(summary(out))
    return 0


def summary(s: dict[str, Any]) -> str:
    """The status for a person: a line a topic."""
    r = s["rows"]
    lines = [
        "rows       " + "  ".join(f"{k.replace('orderbook_', '')} {v:,}" for k, v in r.items()),
    ]
    by_source: dict[str, list[float | None]] = {}
    for x in s["sync"]:
        by_source.setdefault(x["source"], []).append(x["lag_s"])
    sync = [
        f"{src} {'never caught up' if any(v is None for v in lags) else f'caught up {max(lags):.1f} s ago'}"  # type: ignore[type-var]
        for src, lags in by_source.items()
    ]
    lines.append("sync       " + ("; ".join(sync) if sync else "no gatherer merged yet"))
    c = s["coverage"]
    lines.append(
        f"coverage   {c['book_gaps_unverified']} book gaps where production may lack something "
        f"({c['unverified_market_seconds']} market-seconds), {c['book_gaps_verified']} checked complete, "
        f"{c['book_gaps_open']} still open; trade gaps {c['trade_gaps_open']} open, {c['trade_gaps_healed']} "
        "healed from REST"
    )
    a = s["book_audit_last_hour"]
    lines.append(
        f"audit      last hour: {a.get('markets_audited', 0)} markets judged, {a.get('matched', 0)} REST books "
        f"matched, {a.get('mismatched', 0)} mismatched"
        + (f" on {a['markets_mismatched']} markets (--json lists them)" if a.get("mismatched") else "")
    )
    lat = [
        f"{t.replace('orderbook_', '')} p50 {v['p50']} ms p99 {v['p99']} ms"
        for t, v in s["receive_delay_ms_last_hour"].items()
        if v["rows"]
    ]
    lines.append(
        "latency    receive minus Kalshi's send, last hour: " + ("; ".join(lat) if lat else "no message carried it")
    )
    h = s["history"]
    done = h["windows"].get("trades")
    lines.append(
        f"history    {h['trades']:,} trades and {h['candles']:,} one-minute candles backfilled"
        + (f", trades from {done['from'][:10]} to {done['to'][:19]}, last window done {done['last_done'][:19]}"
           if done else "; no backfill yet (kalshi-data backfill)")
    )  # fmt: skip
    lk = s["lake"]
    lines.append(f"lake       {lk['table_days']} table-days exported, newest {lk['newest_day'] or 'none yet'}")
    return "\n".join(lines)
