"""The redundant connections' second copy of a trade or ticker, dropped before the sink.

A gatherer holds two (`ticker_connections`, `trade_connections`) subscriptions to every trade and ticker, so
one connection's drop, gap or reconnect loses nothing. Both copies of an event become records with the same
natural key (the table's: a trade's (trade_id, exchange_ts_us); a ticker's market, time, values and occurrence,
numbered alike on every connection), and the table would refuse the second anyway. Dropping it here saves its
encoding, its Redis hop, the writer's row and PostgreSQL's conflict check: a fifth of the frames. The first
copy to arrive is the one kept, and with it the earliest receive time. The twins share a filter only inside
one process (the pool puts them on the same connection worker); a copy it no longer remembers, or one from
another process, still meets the table's key.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from core.records import Ticker, Trade


def trade_key(r: Trade) -> Hashable:
    return (r[4], r[2])  # trades' natural key: trade_id, exchange_ts_us


def ticker_key(r: Ticker) -> Hashable:
    # tickers' natural key is (market, exchange time, digest of the values, occurrence): the values themselves
    # stand for their digest here
    return (r[3], r[2], r[5:])


class CopyFilter:
    """Remembers the keys of the last `size` to 2 × `size` records (two generations of a set: O(1), bounded)."""

    def __init__(self, key: Callable[[Any], Hashable], size: int = 1 << 16) -> None:
        self.key, self.size = key, size
        self._new: set[Hashable] = set()
        self._old: set[Hashable] = set()

    def first(self, record: Any) -> bool:
        """True for the first copy of its key (keep it), False for a later one (drop it)."""
        k = self.key(record)
        if k in self._new or k in self._old:
            return False
        self._new.add(k)
        if len(self._new) >= self.size:
            self._old, self._new = self._new, set()
        return True


def copy_filters() -> dict[str, CopyFilter]:
    """One filter per channel of redundant connections whose records have a natural key."""
    return {"trade": CopyFilter(trade_key), "ticker": CopyFilter(ticker_key)}
