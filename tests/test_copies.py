"""The redundant connections' copies: one filter per channel keeps the first copy of a natural key, forgets
keys only after two generations, and the pool puts a channel's twins where one filter sees both."""

from __future__ import annotations

from core.config import GathererConfig
from core.records import Ticker, Trade
from gatherer._workers import WorkerSet
from router import CopyFilter, copy_filters


def trade(trade_id: str, ts: int, received_us: int) -> Trade:
    return Trade("g1", received_us, ts, "T1", trade_id, 48_000, 52_000, 100, True, "ask", True, None)


def ticker(ts: int, price: int, occurrence: int, received_us: int) -> Ticker:
    return Ticker("g1", received_us, ts, "T1", None, price, 1, 2, 3, 4, 5, 6, 7, 8, 9, occurrence)


def test_the_first_copy_of_a_natural_key_is_kept_and_distinct_events_are_not_merged() -> None:
    f = copy_filters()
    assert f["trade"].first(trade("a", 10, 1)) and not f["trade"].first(trade("a", 10, 2))  # the twin's copy
    assert f["trade"].first(trade("a", 11, 3)) and f["trade"].first(trade("b", 10, 4))  # another key
    t = f["ticker"]
    assert t.first(ticker(10, 50_000, 0, 1)) and not t.first(ticker(10, 50_000, 0, 2))
    # the same values again in the same millisecond (A, B, A) is another event: occurrence 1, not a copy
    assert t.first(ticker(10, 51_000, 0, 3)) and t.first(ticker(10, 50_000, 1, 4)) and t.first(ticker(11, 50_000, 0, 5))


def test_memory_is_bounded_by_two_generations() -> None:
    f = CopyFilter(lambda r: r, size=4)
    assert all(f.first(k) for k in range(8))
    assert not any(f.first(k) for k in range(4, 8))  # the last generation is remembered
    assert f.first(0)  # past two generations a key is forgotten (the table's key still refuses a late copy)
    assert len(f._new) + len(f._old) <= 8


def test_a_channels_twin_connections_live_in_one_worker() -> None:
    ws = WorkerSet(GathererConfig(gatherer_id="g1"), 2)
    ticker1 = ws.connection("g1:ticker:1", "ticker", None)
    trade1 = ws.connection("g1:trade:1", "trade", None)
    book = ws.connection("g1:orderbook:1", "orderbook_delta", set())
    ticker2, trade2 = ws.connection("g1:ticker:2", "ticker", None), ws.connection("g1:trade:2", "trade", None)
    assert (ticker2.worker, trade2.worker) == (ticker1.worker, trade1.worker)
    assert ticker1.worker != trade1.worker  # channels still spread over the workers
    assert ws.connection("g1:orderbook:2", "orderbook_delta", set()).worker != book.worker
