"""The Kalshi exchange simulator: REST + WebSocket on one port, a seeded living market, a ledger, faults.

Owns the wire format as the exchange speaks it (../shared/kalshi-api.md) and the ground truth of what it sent.
Must not import gatherer, router, writers or dedup: it is the independent counterpart they are tested against.
"""

from simulator._book import Book
from simulator._compare import LEDGER_TABLES, compare_history, compare_markets, compare_with_ledger, is_exact
from simulator._exchange import Exchange, ExchangeOptions
from simulator._faults import FaultError, FaultSchedule, RestFault, WsFault, load_schedule
from simulator._history import History, PastMarket
from simulator._ledger import COLUMNS, EXCHANGE_KINDS, Ledger, diff_rows, load_jsonl
from simulator._universe import Universe
from simulator._ws import text_frame
from simulator.server import SimOptions, Simulator

__all__ = [
    "COLUMNS",
    "EXCHANGE_KINDS",
    "LEDGER_TABLES",
    "Book",
    "Exchange",
    "ExchangeOptions",
    "FaultError",
    "FaultSchedule",
    "History",
    "Ledger",
    "PastMarket",
    "RestFault",
    "SimOptions",
    "Simulator",
    "Universe",
    "WsFault",
    "compare_history",
    "compare_markets",
    "compare_with_ledger",
    "diff_rows",
    "is_exact",
    "load_jsonl",
    "load_schedule",
    "text_frame",
]
