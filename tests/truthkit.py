"""Production against the simulator's ledger where the ledger is the only judge: what production lacks must lie
inside a coverage gap it recorded and did not verify complete (the coverage record's promise)."""

from __future__ import annotations

from typing import Any

import psycopg

from simulator import Ledger


def deltas_lacking(ledger: Ledger, prod_dsn: str) -> list[tuple[Any, ...]]:
    """The ledger's deltas production does not hold (natural keys), oldest first."""
    with psycopg.connect(prod_dsn) as conn:
        stored = set(
            conn.execute("SELECT market_ticker, exchange_ts_us, side, price, delta, occurrence FROM orderbook_deltas")
        )
    return sorted(r for r in ledger.rows("delta") if r not in stored)


def outside_unverified_gaps(rows: list[tuple[Any, ...]], prod_dsn: str) -> list[tuple[Any, ...]]:
    """Of these lacking deltas, those no unverified book coverage gap of their market (or of every market)
    covers: each one is a loss production does not know of."""
    with psycopg.connect(prod_dsn) as conn:
        gaps = conn.execute(
            "SELECT market_ticker, from_us, to_us FROM coverage_gaps WHERE channel = 'orderbook_delta' "
            "AND NOT verified_complete"
        ).fetchall()
    by_market: dict[str, list[tuple[int, int]]] = {}
    for m, f, t in gaps:
        by_market.setdefault(m, []).append((f, t))
    return [r for r in rows if not any(f <= r[1] < t for f, t in by_market.get(r[0], []) + by_market.get("", []))]
