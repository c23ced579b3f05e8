"""Compare what a database holds with the simulator's ledger: missing, extra and differing rows per table.

Rows are matched by the table's natural key; a row with the key but other values is `differing`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import psycopg

from core.tables import LAKE_TABLES
from simulator._exchange import Exchange
from simulator._history import History
from simulator._ledger import COLUMNS, Ledger

# ledger kind -> its table; the ledger's columns are the table's (simulator._ledger.COLUMNS; a test holds them
# to the catalog). A trade is identified by its id alone; every other kind by all its columns.
LEDGER_TABLES: dict[str, str] = {
    "delta": "orderbook_deltas",
    "trade": "trades",
    "ticker": "tickers",
    "lifecycle": "lifecycle_events",
    "event_lifecycle": "event_lifecycle_events",
    "event_fee_update": "event_fee_updates",
    "candle": "candlesticks",
}
KEY_WIDTH: dict[str, int] = {"trade": 1, "candle": 3}
# the tables production alone holds (the backfill writes them): a gatherer database has none to compare
PRODUCTION_ONLY = frozenset({"candlesticks"})


def compare_with_ledger(ledger: Ledger, dsn: str, since_us: int = 0, examples: int = 0) -> dict[str, dict[str, Any]]:
    """Per ledger kind: expected, stored, missing, extra, differing (0, 0, 0 means exact); with `examples`,
    up to that many natural keys of missing rows (`missing_keys`), to tell where a loss happened."""
    out: dict[str, dict[str, Any]] = {}
    with psycopg.connect(dsn) as conn:
        for kind, table in LEDGER_TABLES.items():
            cols = COLUMNS[kind]
            if table in PRODUCTION_ONLY and not ledger.counts().get(kind):
                continue  # no past in this run: nothing to compare (and a gatherer database has no such table)
            time_col = LAKE_TABLES[table].time_column
            stored = [
                tuple(_canonical(v) for v in r)
                for r in conn.execute(f"SELECT {', '.join(cols)} FROM {table} WHERE {time_col} >= %s", (since_us,))
            ]
            nk = KEY_WIDTH.get(kind, len(cols))
            expected = [r for r in ledger.rows(kind)]
            exp_by_key = Counter(tuple(r[:nk]) for r in expected)
            got_by_key = Counter(tuple(r[:nk]) for r in stored)
            exp_full = {tuple(r[:nk]): tuple(r[nk:]) for r in expected}
            got_full = {tuple(r[:nk]): tuple(r[nk:]) for r in stored}
            missing = sum((exp_by_key - got_by_key).values())
            extra = sum((got_by_key - exp_by_key).values())
            differing = sum(1 for k, v in exp_full.items() if k in got_full and got_full[k] != v)
            out[table] = {
                "expected": len(expected),
                "stored": len(stored),
                "missing": missing,
                "extra": extra,
                "differing": differing,
            }
            if examples and missing:
                out[table]["missing_keys"] = sorted((exp_by_key - got_by_key).elements())[:examples]
    return out


def _canonical(v: Any) -> Any:
    """A jsonb value as the ledger writes it (keys sorted, no spaces); anything else as it is."""
    return orjson.dumps(v, option=orjson.OPT_SORT_KEYS).decode() if isinstance(v, dict) else v


def is_exact(report: dict[str, dict[str, Any]]) -> bool:
    return all(v["missing"] == 0 and v["extra"] == 0 and v["differing"] == 0 for v in report.values())


def compare_markets(exchange: Exchange, dsn: str, examples: int = 3, history: History | None = None) -> dict[str, Any]:
    """Production's markets against the exchange's state now: every stored market's status, result, settlement
    value and open and close times as the exchange has them (`differing`, with examples), and every market created
    during the run stored (`created_missing`)."""
    u = exchange.universe
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT ticker, status, result, settlement_value, open_time_us, close_time_us FROM markets"
        ).fetchall()
    differing: list[tuple[str, Any]] = []
    for ticker, status, result, value, open_us, close_us in rows:
        i = u.parse_market_ticker(ticker)
        if i is None:
            if history is not None and ticker in history.by_ticker:
                continue  # a market of the past: compare_history judges it
            differing.append((ticker, "unknown to the exchange"))
            continue
        t = u.times(i)
        want_result = u.result(i) or None
        want = (u.status_name(i), want_result, u.settlement_value(i) if want_result else None, t.open_s * 1_000_000,
                t.close_s * 1_000_000)  # fmt: skip
        got = (status, result, value, open_us, close_us)
        if got != want:
            differing.append((ticker, {"production": got, "exchange": want}))
    stored = {r[0] for r in rows}
    created = [u.market_ticker(i) for i in range(exchange.initial_markets, u.n_markets)]
    return {
        "stored": len(rows),
        "differing": len(differing),
        "differing_examples": differing[:examples],
        "created": len(created),
        "created_missing": sorted(set(created) - stored)[:examples],
    }


def compare_history(history: History, dsn: str, examples: int = 3) -> dict[str, Any]:
    """Production's markets of the simulator's past against it: each stored, finalized, with its result, settlement
    value and times; and how many of the past's trades and candles production holds (their rows are compared
    with the ledger by compare_with_ledger)."""
    want = {
        m.ticker: ("finalized", m.result, 100_000 if m.result == "yes" else 0, m.open_s * 1_000_000,
                   m.close_s * 1_000_000)
        for m in history.markets
    }  # fmt: skip
    with psycopg.connect(dsn) as conn:
        got = {
            r[0]: tuple(r[1:])
            for r in conn.execute(
                "SELECT ticker, status, result, settlement_value, open_time_us, close_time_us FROM markets "
                "WHERE ticker = ANY(%s)",
                (list(want),),
            )
        }
        trades = conn.execute("SELECT count(*) FROM trades WHERE market_ticker = ANY(%s)", (list(want),)).fetchone()
        candles = conn.execute(
            "SELECT count(*) FROM candlesticks WHERE market_ticker = ANY(%s)", (list(want),)
        ).fetchone()
    differing = [(t, {"production": got[t], "exchange": w}) for t, w in want.items() if t in got and got[t] != w]
    return {
        "past_markets": len(want),
        "stored": len(got),
        "missing": sorted(set(want) - set(got))[:examples],
        "differing": len(differing),
        "differing_examples": differing[:examples],
        "trades": {"past": sum(len(v) for v in history.trades.values()), "stored": trades[0] if trades else 0},
        "candles": {"past": sum(len(v) for v in history.candles.values()), "stored": candles[0] if candles else 0},
    }
