"""Compare what a database holds with the simulator's ledger: missing, extra and differing rows per table.

Rows are matched by the table's natural key; a row with the key but other values is `differing`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import psycopg

from simulator._ledger import Ledger

# ledger kind -> (table, key columns, value columns); the ledger row is key columns + value columns in order
COMPARED: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "delta": ("orderbook_deltas", ("market_ticker", "exchange_ts_us", "side", "price", "delta", "occurrence"), ()),
    "trade": ("trades", ("trade_id",), ("market_ticker", "exchange_ts_us", "yes_price", "no_price", "count",
                                         "taker_outcome_side", "taker_book_side")),
    "ticker": ("tickers", ("market_ticker", "exchange_ts_us", "price", "yes_bid", "yes_ask", "yes_bid_size",
                           "yes_ask_size", "last_trade_size", "volume", "open_interest", "dollar_volume",
                           "dollar_open_interest", "occurrence"), ()),
    "lifecycle": ("lifecycle_events", ("market_ticker", "event_type", "open_ts_us", "close_ts_us",
                                       "determination_ts_us", "settled_ts_us", "result", "is_deactivated",
                                       "exchange_index", "price_level_structure", "settlement_value",
                                       "occurrence"), ()),
    "event_lifecycle": ("event_lifecycle_events", ("event_ticker", "raw", "occurrence"), ()),
    "event_fee_update": ("event_fee_updates", ("event_ticker", "raw", "occurrence"), ()),
}  # fmt: skip


def compare_with_ledger(ledger: Ledger, dsn: str, since_us: int = 0, examples: int = 0) -> dict[str, dict[str, Any]]:
    """Per ledger kind: expected, stored, missing, extra, differing (0, 0, 0 means exact); with `examples`,
    up to that many natural keys of missing rows (`missing_keys`), to tell where a loss happened."""
    out: dict[str, dict[str, Any]] = {}
    with psycopg.connect(dsn) as conn:
        for kind, (table, key_cols, value_cols) in COMPARED.items():
            cols = key_cols + value_cols
            time_col = "exchange_ts_us" if kind in ("delta", "trade", "ticker") else "received_us"
            stored = [
                tuple(_canonical(v) for v in r)
                for r in conn.execute(f"SELECT {', '.join(cols)} FROM {table} WHERE {time_col} >= %s", (since_us,))
            ]
            nk = len(key_cols)
            expected = [r for r in ledger.rows(kind)]
            exp_by_key = Counter(tuple(r[:nk]) for r in expected)
            got_by_key = Counter(tuple(r[:nk]) for r in stored)
            exp_full = {tuple(r[:nk]): tuple(r[nk:]) for r in expected}
            got_full = {tuple(r[:nk]): tuple(r[nk:]) for r in stored}
            missing = sum((exp_by_key - got_by_key).values())
            extra = sum((got_by_key - exp_by_key).values())
            differing = sum(1 for k, v in exp_full.items() if k in got_full and got_full[k] != v)
            out[table] = {"expected": len(expected), "stored": len(stored), "missing": missing, "extra": extra,
                          "differing": differing}  # fmt: skip
            if examples and missing:
                out[table]["missing_keys"] = sorted((exp_by_key - got_by_key).elements())[:examples]
    return out


def _canonical(v: Any) -> Any:
    """A jsonb value as the ledger writes it (keys sorted, no spaces); anything else as it is."""
    return orjson.dumps(v, option=orjson.OPT_SORT_KEYS).decode() if isinstance(v, dict) else v


def is_exact(report: dict[str, dict[str, Any]]) -> bool:
    return all(v["missing"] == 0 and v["extra"] == 0 and v["differing"] == 0 for v in report.values())
