"""The one record schema shared by router, writers and dedup.

Records are NamedTuples: plain tuples on the hot path, named fields everywhere else. Units are fixed:
prices in hundred-thousandths of a dollar, quantities in hundredths of a contract, times in unix
microseconds (UTC), sides as bools (True = yes). Fields are only ever appended, each with a default, so
the codec can read a record written by an older version (see core.codec).
"""

from __future__ import annotations

import hashlib
from enum import IntEnum
from typing import Any, NamedTuple

import msgpack


class Kind(IntEnum):
    """Record kinds. The integer is on the wire (codec) and must never be reused."""

    MARKET = 1
    EVENT = 2
    SERIES = 3
    TRADE = 4
    ORDERBOOK_DELTA = 5
    ORDERBOOK_SNAPSHOT = 6
    TICKER = 7
    LIFECYCLE = 8
    SEQUENCE_GAP = 9
    EVENT_LIFECYCLE = 10
    EVENT_FEE_UPDATE = 11
    CAPTURE_OUTAGE = 12
    SUBSCRIPTION_END = 13
    CAPTURE_BEAT = 14


Level = tuple[int, int]  # (price units, quantity units)

# Messages without a time or an id (lifecycle, event lifecycle, fee updates): copies of one message reach the
# redundant connections and the three gatherers within a second or so (clocks under NTP); an identical
# message within this window on one subscription is a repeat of the event, numbered by `occurrence`.
REPEAT_WINDOW_US = 60_000_000


class Market(NamedTuple):
    gatherer_id: str
    received_us: int
    updated_us: int  # exchange's updated_time when sent, else received_us: "newest state wins"
    ticker: str
    event_ticker: str
    series_ticker: str | None
    market_type: str | None
    status: str | None
    title: str | None
    open_time_us: int | None
    close_time_us: int | None
    expiration_time_us: int | None
    tick_size: int | None  # price units
    yes_bid: int | None
    yes_ask: int | None
    last_price: int | None
    volume: int | None  # quantity units
    open_interest: int | None
    result: str | None  # 'yes' | 'no' | 'scalar' (settled by value: settlement_value) | None
    raw_json: str = "{}"  # every field the wire gave, verbatim
    # Today's market object (kalshi-api.md, "Markets since 2026-07"); tick_size above is gone from it since
    # 2026-05-07 and stays None.
    settlement_bounds_type: str | None = None  # 'default' | 'floor'
    settlement_floor: int | None = None  # price units: the lowest value YES settles at ('floor' markets)
    price_level_structure: str | None = None  # the tick scheme's name (read the ranges, not the name)
    price_ranges_json: str | None = None  # [{"start", "end", "step"}] dollar strings, as sent
    exchange_index: int | None = None  # the exchange's shard of the market
    settlement_value: int | None = None  # price units: what YES settled at (scalar markets: the value)


class Event(NamedTuple):
    gatherer_id: str
    received_us: int
    event_ticker: str
    series_ticker: str | None
    title: str | None
    sub_title: str | None
    category: str | None
    mutually_exclusive: bool | None
    strike_date_us: int | None
    raw_json: str = "{}"


class Series(NamedTuple):
    gatherer_id: str
    received_us: int
    ticker: str
    title: str | None
    category: str | None
    frequency: str | None
    raw_json: str = "{}"


class Trade(NamedTuple):
    gatherer_id: str
    received_us: int
    exchange_ts_us: int
    market_ticker: str
    trade_id: str
    yes_price: int
    no_price: int
    count: int  # type: ignore[assignment]  # Kalshi's name; shadows tuple.count (unused here)
    taker_outcome_side: bool | None  # True = yes
    taker_book_side: str | None  # 'bid' | 'ask'
    taker_side: bool | None  # deprecated twin of taker_outcome_side, kept as sent
    is_block_trade: bool | None
    source: str = "ws"  # 'ws' | 'rest'
    sent_us: int | None = None  # sending_ts_ms, when Kalshi queued the message (since 2026-10-01; else None)


class OrderbookDelta(NamedTuple):
    gatherer_id: str
    received_us: int
    exchange_ts_us: int
    market_ticker: str
    market_id: str | None
    side: bool  # True = yes
    price: int
    delta: int  # signed quantity units
    # Index among identical (market, ts, side, price, delta) tuples seen since the subscription's
    # snapshot: two identical deltas in one millisecond are two events, not one duplicate.
    occurrence: int
    sid: int
    seq: int
    client_order_id: str | None = None
    sent_us: int | None = None  # sending_ts_ms, when Kalshi queued the message (since 2026-10-01; else None)


class OrderbookSnapshot(NamedTuple):
    gatherer_id: str
    received_us: int
    exchange_ts_us: int | None  # Kalshi's snapshots carry no time
    market_ticker: str
    market_id: str | None
    source: str  # 'ws' | 'rest'
    sid: int | None
    seq: int | None
    yes_bids: list[Level]  # as received, best first is not assumed
    no_bids: list[Level]
    sent_us: int | None = None  # sending_ts_ms, when Kalshi queued the message (since 2026-10-01; else None)


class Ticker(NamedTuple):
    gatherer_id: str
    received_us: int
    exchange_ts_us: int
    market_ticker: str
    market_id: str | None
    price: int | None
    yes_bid: int | None
    yes_ask: int | None
    yes_bid_size: int | None
    yes_ask_size: int | None
    last_trade_size: int | None
    volume: int | None
    open_interest: int | None
    dollar_volume: int | None
    dollar_open_interest: int | None
    # Index among identical (market, ts, values) tickers on the subscription: a state that repeats in
    # one millisecond (A, B, A) is two events, as with deltas. Older records decode with 0.
    occurrence: int = 0
    sent_us: int | None = None  # sending_ts_ms, when Kalshi queued the message (since 2026-10-01; else None)


class LifecycleEvent(NamedTuple):
    gatherer_id: str
    received_us: int
    market_ticker: str
    event_type: str
    open_ts_us: int | None
    close_ts_us: int | None
    determination_ts_us: int | None
    settled_ts_us: int | None
    result: str | None
    is_deactivated: bool | None
    metadata_json: str | None
    # Since 2026: `created` carries price_level_structure and (2026-07-30) exchange_index, `determined` and
    # `settled` may carry settlement_value. Kept as sent: text, JSON text when not a string.
    exchange_index: str | None = None
    price_level_structure: str | None = None
    settlement_value: int | None = None  # price units
    # How many identical messages this subscription delivered in the REPEAT_WINDOW_US before this one: the
    # wire has no time or id, so a market paused, resumed and paused again sends the same message twice.
    occurrence: int = 0
    sent_us: int | None = None  # sending_ts_ms, when Kalshi queued the message (since 2026-10-01; else None)


class EventLifecycle(NamedTuple):
    """An `event_lifecycle` message (on the market_lifecycle_v2 and multivariate subscriptions): an event was
    created or changed. It carries no time and no id."""

    gatherer_id: str
    received_us: int
    event_ticker: str
    series_ticker: str | None
    title: str | None
    subtitle: str | None
    collateral_return_type: str | None
    strike_date_us: int | None
    strike_period: str | None
    raw_json: str  # the whole message, keys sorted
    occurrence: int = 0  # as LifecycleEvent.occurrence
    sent_us: int | None = None  # sending_ts_ms, when Kalshi queued the message (since 2026-10-01; else None)


class EventFeeUpdate(NamedTuple):
    """An `event_fee_update` message: an event's fee schedule changed. No time and no id on the wire."""

    gatherer_id: str
    received_us: int
    event_ticker: str
    fee_type_override: str | None
    fee_multiplier_override: str | None  # the JSON number as sent (exact; it may be fractional)
    raw_json: str
    occurrence: int = 0  # as LifecycleEvent.occurrence
    sent_us: int | None = None  # sending_ts_ms, when Kalshi queued the message (since 2026-10-01; else None)


class SequenceGap(NamedTuple):
    gatherer_id: str
    detected_us: int
    connection_id: str
    channel: str
    sid: int
    market_ticker: str  # '' for a subscription covering all markets
    expected_seq: int
    got_seq: int
    kind: str  # 'skip' | 'repeat' | 'reorder'
    # from when frames may be missing: the subscription's last record in sequence before the gap, at its
    # exchange time (its receive time if earlier or if it has none), or the subscribe's answer; a lost message
    # came after it, so the stretch where the book may be wrong starts there
    since_us: int | None = None


class CaptureOutage(NamedTuple):
    """A stretch in which this gatherer captured nothing on a channel (`*`: every channel: the process was
    down, from its last heartbeat to the moment its trade subscription was back), or may have missed trades
    (`seq_gap`: from the trade subscription's last frame in sequence to the gap). Sent when the stretch
    ends, and again with trades_backfilled/healed_us once the gatherer fetched the window's trades from
    REST; the newest state (updated_us) wins."""

    gatherer_id: str
    updated_us: int
    channel: str  # '*' | 'trade'
    from_us: int
    to_us: int
    reason: str  # 'restart' | 'disconnected' | 'seq_gap' (a trade subscription skipped seqs that never came)
    trades_backfilled: int | None = None
    healed_us: int | None = None
    # 'restart': when the process that reports it started. A book this gatherer began before it (an orderbook
    # snapshot received earlier) ended with the process that died, at from_us at the latest.
    process_started_us: int | None = None


class SubscriptionEnd(NamedTuple):
    """A subscription stopped carrying a market. This gatherer's book of the market, begun at its snapshot on
    that subscription, ends here: the connection was lost, the gatherer stopped, or the market was released
    (unsubscribed: it left capture). Production's coverage record is built from these, the snapshots (where a
    book begins), sequence gaps and capture outages (where it ends)."""

    gatherer_id: str
    ended_us: int
    connection_id: str
    channel: str
    sid: int  # the gatherer's own subscription number (unique within a process run; Kalshi's repeat per socket)
    market_ticker: str
    reason: str  # 'disconnected' | 'stopped' | 'released'
    since_us: int  # from when frames may be missing: the last record in sequence (as SequenceGap.since_us)


class CaptureBeat(NamedTuple):
    """The gatherer is alive and capturing, as of beat_us (sent every few seconds): production treats the books
    of a gatherer whose beats stopped as ended at its last beat."""

    gatherer_id: str
    beat_us: int
    process_started_us: int


Record = (
    Market
    | Event
    | Series
    | Trade
    | OrderbookDelta
    | OrderbookSnapshot
    | Ticker
    | LifecycleEvent
    | SequenceGap
    | EventLifecycle
    | EventFeeUpdate
    | CaptureOutage
    | SubscriptionEnd
    | CaptureBeat
)

RECORD_TYPES: dict[Kind, type[Any]] = {
    Kind.MARKET: Market,
    Kind.EVENT: Event,
    Kind.SERIES: Series,
    Kind.TRADE: Trade,
    Kind.ORDERBOOK_DELTA: OrderbookDelta,
    Kind.ORDERBOOK_SNAPSHOT: OrderbookSnapshot,
    Kind.TICKER: Ticker,
    Kind.LIFECYCLE: LifecycleEvent,
    Kind.SEQUENCE_GAP: SequenceGap,
    Kind.EVENT_LIFECYCLE: EventLifecycle,
    Kind.EVENT_FEE_UPDATE: EventFeeUpdate,
    Kind.CAPTURE_OUTAGE: CaptureOutage,
    Kind.SUBSCRIPTION_END: SubscriptionEnd,
    Kind.CAPTURE_BEAT: CaptureBeat,
}
KIND_OF: dict[type[Any], Kind] = {t: k for k, t in RECORD_TYPES.items()}


def content_digest(*fields: Any) -> int:
    """A signed 64-bit digest of field values, for natural keys of state messages (tickers, lifecycle)
    where the exchange gives no id. Stable across processes and versions (no Python hash())."""
    packed = msgpack.packb(list(fields), use_bin_type=True)
    return int.from_bytes(hashlib.blake2b(packed, digest_size=8).digest(), "big", signed=True)


def ticker_digest(t: Ticker) -> int:
    return content_digest(
        t.price,
        t.yes_bid,
        t.yes_ask,
        t.yes_bid_size,
        t.yes_ask_size,
        t.last_trade_size,
        t.volume,
        t.open_interest,
        t.dollar_volume,
        t.dollar_open_interest,
    )


def lifecycle_digest(e: LifecycleEvent) -> int:
    fields: tuple[Any, ...] = (
        e.open_ts_us,
        e.close_ts_us,
        e.determination_ts_us,
        e.settled_ts_us,
        e.result,
        e.is_deactivated,
        e.metadata_json,
    )
    newer = (e.exchange_index, e.price_level_structure, e.settlement_value)
    # the 2026 fields join the digest only when sent, so rows stored before them keep their digests
    return content_digest(*fields, *newer) if any(v is not None for v in newer) else content_digest(*fields)


def raw_digest(raw_json: str) -> int:
    """Digest of a whole message (keys sorted): for messages with no time and no id beyond their content."""
    return content_digest(raw_json)
