"""Helpers for gatherer tests: a registry + pool against a running simulator, and ledger comparisons."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from core.config import KalshiConfig, RateLimitConfig, WebSocketConfig
from core.records import LifecycleEvent, OrderbookDelta, OrderbookSnapshot, Ticker, Trade
from gatherer import KalshiRestClient, MarketRegistry
from gatherer._pool import ConnectionPool
from simulator import Simulator
from simulator._book import Book

FAST_WS = WebSocketConfig(
    workers=1,
    markets_per_connection=10,
    ping_interval_s=1.0,
    dead_after_s=3.0,
    command_timeout_s=3.0,
    backoff_initial_s=0.05,
    backoff_max_s=0.3,
)


def rest_client(sim: Simulator) -> KalshiRestClient:
    cfg = KalshiConfig(
        rest_url=sim.rest_url, ws_url=sim.ws_url, rate_limit=RateLimitConfig(read_per_second=1000, burst=100)
    )
    return KalshiRestClient(cfg, backoff_base_s=0.01, backoff_max_s=0.05)


async def start_gatherer(
    sim: Simulator, sink: Any, gid: str = "g1", ws: WebSocketConfig = FAST_WS
) -> tuple[MarketRegistry, ConnectionPool, asyncio.Task[None]]:
    reg = MarketRegistry(rest_client(sim), sink, gid)
    await reg.sync()
    pool = ConnectionPool(sim.ws_url, gid, sink, reg, ws)
    task = asyncio.create_task(pool.run())
    while not pool.globals or not pool.orderbook:
        await asyncio.sleep(0.01)
    await pool.wait_connected(10)
    return reg, pool, task


async def stop_gatherer(reg: MarketRegistry, pool: ConnectionPool, task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await pool.stop()
    await reg.client.aclose()


def canonical(records: Iterable[Any]) -> dict[str, set[tuple[Any, ...]]]:
    """The ledger's canonical rows from stored records (sets: redundant copies collapse, as on insert)."""
    out: dict[str, set[tuple[Any, ...]]] = defaultdict(set)
    for r in records:
        if isinstance(r, OrderbookDelta):
            out["delta"].add((r.market_ticker, r.exchange_ts_us, r.side, r.price, r.delta, r.occurrence))
        elif isinstance(r, Trade):
            out["trade"].add(
                (
                    r.trade_id,
                    r.market_ticker,
                    r.exchange_ts_us,
                    r.yes_price,
                    r.no_price,
                    r.count,
                    r.taker_outcome_side,
                    r.taker_book_side,
                )
            )
        elif isinstance(r, Ticker):
            out["ticker"].add(
                (
                    r.market_ticker,
                    r.exchange_ts_us,
                    r.price,
                    r.yes_bid,
                    r.yes_ask,
                    r.yes_bid_size,
                    r.yes_ask_size,
                    r.last_trade_size,
                    r.volume,
                    r.open_interest,
                    r.dollar_volume,
                    r.dollar_open_interest,
                    r.occurrence,
                )
            )
        elif isinstance(r, LifecycleEvent):
            out["lifecycle"].add(
                (
                    r.market_ticker,
                    r.event_type,
                    r.open_ts_us,
                    r.close_ts_us,
                    r.determination_ts_us,
                    r.settled_ts_us,
                    r.result,
                    r.is_deactivated,
                    r.exchange_index,
                    r.price_level_structure,
                    r.settlement_value,
                    r.occurrence,
                )
            )
    return out


def rebuilt_books(records: Iterable[Any]) -> dict[str, Book]:
    """Books from each market's latest WebSocket snapshot plus the deltas of that subscription after it."""
    books: dict[str, Book] = {}
    sid_of: dict[str, int | None] = {}
    for r in records:
        if isinstance(r, OrderbookSnapshot) and r.source == "ws":
            books[r.market_ticker] = Book(dict(r.yes_bids), dict(r.no_bids))
            sid_of[r.market_ticker] = r.sid
        elif isinstance(r, OrderbookDelta) and r.market_ticker in books and sid_of[r.market_ticker] == r.sid:
            books[r.market_ticker].apply(r.side, r.price, r.delta)
    return books
