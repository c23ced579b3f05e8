"""Read side of production: a market's order book at a moment, rebuilt from a snapshot and the deltas after it."""

from __future__ import annotations

from typing import Any

import psycopg

from core.conversions import us_to_iso


def apply_delta(levels: dict[int, int], price: int, delta: int) -> None:
    """One delta on one side's levels (price -> size); a level that reaches zero is gone."""
    q = levels.get(price, 0) + delta
    if q:
        levels[price] = q
    else:
        levels.pop(price, None)


def rebuild_book(conn: psycopg.Connection[Any], ticker: str, at_us: int, start: str = "latest") -> dict[str, Any]:
    """Snapshot (latest or first with received_us <= at) plus every delta after it up to `at` (exchange time).

    Snapshots carry no exchange time: the deltas after one are those later than the newest delta any gatherer
    had received before the snapshot arrived. Exact unless a snapshot lands inside a millisecond that carries
    deltas, or inside a coverage gap no snapshot showed complete (reported: `inside_coverage_gap`)."""
    order = "DESC" if start == "latest" else "ASC"
    snap = conn.execute(
        f"SELECT received_us, yes_bid_prices, yes_bid_sizes, no_bid_prices, no_bid_sizes, gatherer_id, source "
        f"FROM orderbook_snapshots WHERE market_ticker = %s AND received_us <= %s ORDER BY received_us {order} LIMIT 1",
        (ticker, at_us),
    ).fetchone()
    if snap is None:
        raise LookupError(f"no snapshot of {ticker} at or before {us_to_iso(at_us)}")
    received, yp, ys, np_, ns, gid, source = snap
    yes = dict(zip(yp, ys, strict=True))
    no = dict(zip(np_, ns, strict=True))
    row = conn.execute(
        "SELECT max(exchange_ts_us) FROM orderbook_deltas WHERE market_ticker = %s AND received_us <= %s",
        (ticker, received),
    ).fetchone()
    boundary = row[0] if row and row[0] is not None else -1
    deltas = conn.execute(
        "SELECT side, price, delta FROM orderbook_deltas WHERE market_ticker = %s AND exchange_ts_us > %s "
        "AND exchange_ts_us <= %s ORDER BY exchange_ts_us, occurrence",
        (ticker, boundary, at_us),
    ).fetchall()
    for side, price, delta in deltas:
        apply_delta(yes if side else no, price, delta)
    gaps = conn.execute(
        "SELECT from_us, to_us FROM coverage_gaps WHERE market_ticker IN (%s, '') AND channel = 'orderbook_delta' "
        "AND NOT verified_complete "
        "AND from_us <= %s AND to_us >= %s",
        (ticker, at_us, received),
    ).fetchall()
    return {
        "ticker": ticker,
        "at_us": at_us,
        "snapshot_received_us": received,
        "snapshot_source": source,
        "snapshot_gatherer": gid,
        "deltas_applied": len(deltas),
        "yes": sorted(yes.items(), reverse=True),
        "no": sorted(no.items(), reverse=True),
        "inside_coverage_gap": bool(gaps),
    }
