"""A production database filled with a day of the simulator's market, without running the pipeline: the lake's
tests and bench_lake measure the export on the shape a real day has (many markets, sorted books, trades and
tickers in their true proportions), at any size."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import psycopg

from core.records import Kind, OrderbookDelta, OrderbookSnapshot, Ticker, Trade
from core.tables import SPECS
from simulator import Exchange, ExchangeOptions, Ledger
from writers import copy_insert

DAY_US = 86_400_000_000


def _batches(rows: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(rows), n):
        yield rows[i : i + n]


def fill_production_day(
    dsn: str,
    day_start_us: int,
    events: int,
    markets: int = 3000,
    active: int = 300,
    rate: float = 2000.0,
    seed: int = 1,
) -> dict[str, int]:
    """About `events` exchange events at `rate` per second from day_start_us (the demo's market: 3,000 markets,
    300 active, 2,000 events/s), stored as one gatherer's rows would be after dedup. A cursor row makes the
    day complete for an export run at day_start_us + 2 days."""
    ex = Exchange(ExchangeOptions(seed=seed, markets=markets, active=active, lifecycle_interval_s=0), Ledger())
    step_us = max(1, int(1_000_000 / rate))
    t = day_start_us
    while ex.events < events and t < day_start_us + DAY_US:
        ex.step(t)
        t += step_us
    led = ex.ledger
    ms = 1000  # the wire's resolution (ts_ms): exchange times are whole milliseconds, as the router stores them
    records: dict[Kind, list[Any]] = {
        Kind.ORDERBOOK_DELTA: [
            OrderbookDelta(
                "g1", ts + 7, ts // ms * ms, m, None, side, price, delta, occ, 1, k, None, ts // ms * ms + ms
            )
            for k, (m, ts, side, price, delta, occ) in enumerate(led.rows("delta"))
        ],
        Kind.TRADE: [
            Trade(
                "g1", ts + 7, ts // ms * ms, m, tid, yes, no, count, taker, book, taker, False, "ws", ts // ms * ms + ms
            )
            for tid, m, ts, yes, no, count, taker, book in led.rows("trade")
        ],
        Kind.ORDERBOOK_SNAPSHOT: [  # each market's book as it opened, as a WebSocket snapshot would carry it
            OrderbookSnapshot(
                "g1",
                day_start_us + 7,
                None,
                m,
                None,
                "ws",
                1,
                1,
                sorted(yes.items(), reverse=True),
                sorted(no.items(), reverse=True),
            )
            for m, _ts, yes, no in led.rows("book_init")
        ],
        # sent by the exchange a millisecond after the event (Kalshi's sending_ts_ms), received moments later
        Kind.TICKER: [
            Ticker._make(("g1", r[1] + 7, r[1] // ms * ms, r[0], None, *r[2:], r[1] // ms * ms + ms))
            for r in led.rows("ticker")
        ],
    }
    with psycopg.connect(dsn) as conn:
        for kind, recs in records.items():
            spec = SPECS[kind]
            for batch in _batches(recs, 50_000):
                with conn.transaction():
                    copy_insert(conn, spec, [spec.row(r) for r in batch])
        conn.execute(
            "INSERT INTO sync_cursors (source, table_name, caught_up_us) VALUES ('g1', 'trades', %s) "
            "ON CONFLICT (source, table_name) DO UPDATE SET caught_up_us = EXCLUDED.caught_up_us",
            (day_start_us + 2 * DAY_US,),
        )
    return {SPECS[k].table: len(v) for k, v in records.items()}
