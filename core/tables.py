"""The table catalog: for each record kind its table, columns and their types, the row builder, the natural
key, the time column, the units of price and quantity columns, and the insert rule. Event tables ignore rows
whose natural key is already there; reference tables keep the newest state (greatest updated_us); messages
without time or id collapse copies within a window. Read by the writers (gatherer databases), dedup
(production and the Parquet export) and the simulator's comparison with its ledger: one place per fact."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from core.conversions import PRICE_SCALE
from core.records import (
    REPEAT_WINDOW_US,
    CaptureBeat,
    CaptureOutage,
    Kind,
    OrderbookDelta,
    OrderbookSnapshot,
    SequenceGap,
    SubscriptionEnd,
    Trade,
    lifecycle_digest,
    raw_digest,
    ticker_digest,
)

DOLLAR = PRICE_SCALE
# Copies of one lifecycle message reach the gatherers within a second of each other (clocks under NTP);
# a market cannot sensibly be paused, resumed and paused again within a minute.
LIFECYCLE_COPIES_WITHIN_US = REPEAT_WINDOW_US


@dataclass(frozen=True)
class TableSpec:
    table: str
    columns: tuple[str, ...]
    types: tuple[str, ...]  # PostgreSQL types for binary COPY
    row: Callable[[Any], tuple[Any, ...]]
    key: tuple[str, ...]  # the natural key (UNIQUE constraint or primary key)
    time_column: str | None = None  # what the table is partitioned and exported by (None: a current-state table)
    upsert_newest: str | None = None  # reference tables: keep the row with the greatest value of this column
    # Tables without a unique key (lifecycle events): rows with the same key received within this many
    # microseconds of each other are copies of one message; further apart, a repeat of the event.
    copies_within_us: int | None = None
    # The record's fields in its own order, when they are exactly the table's columns: COPY then names the
    # columns in that order and takes decoded rows as they come, with no row built per record (the writer).
    record_fields: tuple[str, ...] | None = None

    @property
    def copy_types(self) -> list[str]:
        """Types of the staging columns (jsonb travels as text and is cast on insert)."""
        return ["text" if t == "jsonb" else t for t in self.types]

    def copy_columns(self, record_order: bool = False) -> tuple[tuple[str, ...], list[str]]:
        """(columns, COPY types) in the order of the rows: `row`'s (the table's), or with record_order the
        record's own (only for a table with record_fields)."""
        if not record_order:
            return self.columns, self.copy_types
        if self.record_fields is None:
            raise ValueError(f"{self.table}: rows are built by its row function, not taken in record order")
        types = dict(zip(self.columns, self.copy_types, strict=True))
        return self.record_fields, [types[c] for c in self.record_fields]

    def staging_ddl(self, staging: str) -> str:
        cols = ", ".join(f"{c} {t}" for c, t in zip(self.columns, self.copy_types, strict=True))
        return f"CREATE TEMP TABLE IF NOT EXISTS {staging} ({cols}) ON COMMIT DELETE ROWS"

    @property
    def lock_sql(self) -> str | None:
        """What to run before insert_from in the same transaction, if anything."""
        if self.copies_within_us is None:
            return None
        return f"SELECT pg_advisory_xact_lock(hashtext('kd_insert:{self.table}'))"

    def insert_from(self, staging: str) -> str:
        cols = ", ".join(self.columns)
        select = ", ".join(f"{c}::jsonb" if t == "jsonb" else c for c, t in zip(self.columns, self.types, strict=True))
        if self.copies_within_us is not None:
            return self._insert_unless_copy(staging, cols, select)
        if self.upsert_newest is None:
            return f"INSERT INTO {self.table} ({cols}) SELECT {select} FROM {staging} ON CONFLICT DO NOTHING"
        k = ", ".join(self.key)
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in self.columns if c not in self.key)
        # one row per key from the batch (the newest), then only a newer state replaces the stored one;
        # ingest_xid/ingest_id move so the deduplicator's cursor sees the change
        return (
            f"INSERT INTO {self.table} ({cols}) SELECT DISTINCT ON ({k}) {select} FROM {staging} "
            f"ORDER BY {k}, {self.upsert_newest} DESC "
            f"ON CONFLICT ({k}) DO UPDATE SET {updates}, ingest_xid = pg_current_xact_id(), "
            f"ingest_id = nextval('kd_ingest_seq') "
            f"WHERE {self.table}.{self.upsert_newest} < EXCLUDED.{self.upsert_newest}"
        )

    def _insert_unless_copy(self, staging: str, cols: str, select: str) -> str:
        """A row goes in unless an identical one (same key) was received within the window, in the table or
        earlier in the batch. Run after `lock_sql`: without a unique constraint, concurrent writers of the
        table must take turns."""
        w, k = self.copies_within_us, ", ".join(self.key)
        same = " AND ".join(f"t.{c} = s.{c}" for c in self.key)
        return (
            f"INSERT INTO {self.table} ({cols}) SELECT {select} FROM ("
            f"SELECT *, received_us - lag(received_us) OVER (PARTITION BY {k} ORDER BY received_us) AS since_copy "
            f"FROM {staging}) s "
            f"WHERE (s.since_copy IS NULL OR s.since_copy >= {w}) AND NOT EXISTS (SELECT 1 FROM {self.table} t "
            f"WHERE {same} AND t.received_us > s.received_us - {w} AND t.received_us < s.received_us + {w})"
        )


def _picked(
    record: type[Any], table: str, columns: tuple[str, ...], types: tuple[str, ...], key: tuple[str, ...], **kw: Any
) -> TableSpec:
    """A table whose columns are fields of its record, by name: the row builder picks them in one C call a row
    (a lambda reading attributes cost the writer a Python frame each). When they are all of its fields, the
    writer builds no row at all (record_fields)."""
    fields: tuple[str, ...] = record._fields
    every = sorted(fields) == sorted(columns)
    row = itemgetter(*(fields.index(c) for c in columns))
    return TableSpec(table, columns, types, row, key, record_fields=fields if every else None, **kw)


def _levels(levels: list[Any]) -> tuple[list[int], list[int]]:
    return [int(p) for p, _ in levels], [int(q) for _, q in levels]


def _snapshot_row(r: OrderbookSnapshot) -> tuple[Any, ...]:
    yes = sorted(((int(p), int(q)) for p, q in r.yes_bids), reverse=True)
    no = sorted(((int(p), int(q)) for p, q in r.no_bids), reverse=True)
    yp, ys = _levels(yes)
    np_, ns = _levels(no)
    # asks, best (lowest) first: a YES ask at 1 - p for each NO bid at p, and the other way round
    ya = [DOLLAR - p for p in np_]
    na = [DOLLAR - p for p in yp]
    return (
        r.market_ticker,
        r.received_us,
        r.gatherer_id,
        r.source,
        r.exchange_ts_us,
        r.market_id,
        r.sid,
        r.seq,
        yp,
        ys,
        np_,
        ns,
        ya,
        list(ns),
        na,
        list(ys),
        r.sent_us,
    )


# Left as written (fmt: skip at the end): each table's columns, their types and the row builder read as one
# block; the formatter would put every name on a line of its own and part each column from its type.
SPECS: dict[Kind, TableSpec] = {
    Kind.TRADE: _picked(
        Trade,
        "trades",
        ("trade_id", "market_ticker", "exchange_ts_us", "yes_price", "no_price", "count", "taker_outcome_side",
         "taker_book_side", "taker_side", "is_block_trade", "source", "received_us", "gatherer_id", "sent_us"),
        ("text", "text", "int8", "int4", "int4", "int8", "bool", "text", "bool", "bool", "text", "int8", "text",
         "int8"),
        ("trade_id", "exchange_ts_us"),
        time_column="exchange_ts_us",
    ),
    Kind.ORDERBOOK_DELTA: _picked(
        OrderbookDelta,
        "orderbook_deltas",
        ("market_ticker", "exchange_ts_us", "side", "price", "delta", "occurrence", "market_id", "sid", "seq",
         "client_order_id", "received_us", "gatherer_id", "sent_us"),
        ("text", "int8", "bool", "int4", "int8", "int4", "text", "int4", "int8", "text", "int8", "text", "int8"),
        ("market_ticker", "exchange_ts_us", "side", "price", "delta", "occurrence"),
        time_column="exchange_ts_us",
    ),
    Kind.ORDERBOOK_SNAPSHOT: TableSpec(
        "orderbook_snapshots",
        ("market_ticker", "received_us", "gatherer_id", "source", "exchange_ts_us", "market_id", "sid", "seq",
         "yes_bid_prices", "yes_bid_sizes", "no_bid_prices", "no_bid_sizes", "yes_ask_prices", "yes_ask_sizes",
         "no_ask_prices", "no_ask_sizes", "sent_us"),
        ("text", "int8", "text", "text", "int8", "text", "int4", "int8", "int4[]", "int8[]", "int4[]", "int8[]",
         "int4[]", "int8[]", "int4[]", "int8[]", "int8"),
        _snapshot_row,
        ("gatherer_id", "market_ticker", "received_us", "source"),
        time_column="received_us",
    ),
    Kind.TICKER: TableSpec(
        "tickers",
        ("market_ticker", "exchange_ts_us", "digest", "occurrence", "market_id", "price", "yes_bid", "yes_ask",
         "yes_bid_size", "yes_ask_size", "last_trade_size", "volume", "open_interest", "dollar_volume",
         "dollar_open_interest", "received_us", "gatherer_id", "sent_us"),
        ("text", "int8", "int8", "int4", "text", "int4", "int4", "int4", "int8", "int8", "int8", "int8", "int8",
         "int8", "int8", "int8", "text", "int8"),
        lambda r: (r.market_ticker, r.exchange_ts_us, ticker_digest(r), r.occurrence, r.market_id, r.price, r.yes_bid,
                   r.yes_ask, r.yes_bid_size, r.yes_ask_size, r.last_trade_size, r.volume, r.open_interest,
                   r.dollar_volume, r.dollar_open_interest, r.received_us, r.gatherer_id, r.sent_us),
        ("market_ticker", "exchange_ts_us", "digest", "occurrence"),
        time_column="exchange_ts_us",
    ),
    Kind.LIFECYCLE: TableSpec(
        "lifecycle_events",
        ("market_ticker", "event_type", "digest", "open_ts_us", "close_ts_us", "determination_ts_us", "settled_ts_us",
         "result", "is_deactivated", "metadata", "received_us", "gatherer_id", "exchange_index",
         "price_level_structure", "settlement_value", "occurrence", "sent_us"),
        ("text", "text", "int8", "int8", "int8", "int8", "int8", "text", "bool", "jsonb", "int8", "text", "text",
         "text", "int4", "int4", "int8"),
        lambda r: (r.market_ticker, r.event_type, lifecycle_digest(r), r.open_ts_us, r.close_ts_us,
                   r.determination_ts_us, r.settled_ts_us, r.result, r.is_deactivated, r.metadata_json,
                   r.received_us, r.gatherer_id, r.exchange_index, r.price_level_structure, r.settlement_value,
                   r.occurrence, r.sent_us),
        ("market_ticker", "event_type", "digest", "occurrence"),
        copies_within_us=LIFECYCLE_COPIES_WITHIN_US,
        time_column="received_us",
    ),
    Kind.EVENT_LIFECYCLE: TableSpec(
        "event_lifecycle_events",
        ("event_ticker", "digest", "series_ticker", "title", "subtitle", "collateral_return_type", "strike_date_us",
         "strike_period", "raw", "received_us", "gatherer_id", "occurrence", "sent_us"),
        ("text", "int8", "text", "text", "text", "text", "int8", "text", "jsonb", "int8", "text", "int4", "int8"),
        lambda r: (r.event_ticker, raw_digest(r.raw_json), r.series_ticker, r.title, r.subtitle,
                   r.collateral_return_type, r.strike_date_us, r.strike_period, r.raw_json, r.received_us,
                   r.gatherer_id, r.occurrence, r.sent_us),
        ("event_ticker", "digest", "occurrence"),
        copies_within_us=LIFECYCLE_COPIES_WITHIN_US,
        time_column="received_us",
    ),
    Kind.EVENT_FEE_UPDATE: TableSpec(
        "event_fee_updates",
        ("event_ticker", "digest", "fee_type_override", "fee_multiplier_override", "raw", "received_us",
         "gatherer_id", "occurrence", "sent_us"),
        ("text", "int8", "text", "text", "jsonb", "int8", "text", "int4", "int8"),
        lambda r: (r.event_ticker, raw_digest(r.raw_json), r.fee_type_override, r.fee_multiplier_override,
                   r.raw_json, r.received_us, r.gatherer_id, r.occurrence, r.sent_us),
        ("event_ticker", "digest", "occurrence"),
        copies_within_us=LIFECYCLE_COPIES_WITHIN_US,
        time_column="received_us",
    ),
    Kind.SEQUENCE_GAP: _picked(
        SequenceGap,
        "sequence_gaps",
        ("gatherer_id", "connection_id", "channel", "sid", "market_ticker", "expected_seq", "got_seq", "kind",
         "detected_us", "since_us"),
        ("text", "text", "text", "int4", "text", "int8", "int8", "text", "int8", "int8"),
        ("gatherer_id", "connection_id", "sid", "market_ticker", "detected_us", "expected_seq"),
        time_column="detected_us",
    ),
    Kind.CAPTURE_OUTAGE: _picked(
        CaptureOutage,
        "capture_outages",
        ("gatherer_id", "channel", "from_us", "to_us", "reason", "trades_backfilled", "healed_us", "updated_us",
         "process_started_us"),
        ("text", "text", "int8", "int8", "text", "int8", "int8", "int8", "int8"),
        ("gatherer_id", "channel", "from_us"),
        upsert_newest="updated_us",
        time_column="from_us",
    ),
    Kind.SUBSCRIPTION_END: _picked(
        SubscriptionEnd,
        "subscription_ends",
        ("gatherer_id", "connection_id", "channel", "sid", "market_ticker", "reason", "ended_us", "since_us"),
        ("text", "text", "text", "int4", "text", "text", "int8", "int8"),
        ("gatherer_id", "connection_id", "sid", "market_ticker", "ended_us"),
        time_column="ended_us",
    ),
    Kind.CAPTURE_BEAT: _picked(
        CaptureBeat,
        "capture_beats",
        ("gatherer_id", "beat_us", "process_started_us"),
        ("text", "int8", "int8"),
        ("gatherer_id",),
        upsert_newest="beat_us",
    ),
    Kind.MARKET: TableSpec(
        "markets",
        ("ticker", "event_ticker", "series_ticker", "market_type", "status", "title", "open_time_us", "close_time_us",
         "expiration_time_us", "yes_bid", "yes_ask", "last_price", "volume", "open_interest", "result",
         "settlement_bounds_type", "settlement_floor", "price_level_structure", "price_ranges", "exchange_index",
         "settlement_value", "raw", "updated_us", "received_us", "gatherer_id"),
        ("text", "text", "text", "text", "text", "text", "int8", "int8", "int8", "int4", "int4", "int4", "int8",
         "int8", "text", "text", "int4", "text", "jsonb", "int8", "int4", "jsonb", "int8", "int8", "text"),
        lambda r: (r.ticker, r.event_ticker, r.series_ticker, r.market_type, r.status, r.title, r.open_time_us,
                   r.close_time_us, r.expiration_time_us, r.yes_bid, r.yes_ask, r.last_price, r.volume,
                   r.open_interest, r.result, r.settlement_bounds_type, r.settlement_floor, r.price_level_structure,
                   r.price_ranges_json, r.exchange_index, r.settlement_value, r.raw_json, r.updated_us, r.received_us,
                   r.gatherer_id),
        ("ticker",),
        upsert_newest="updated_us",
    ),
    Kind.EVENT: TableSpec(
        "events",
        ("event_ticker", "series_ticker", "title", "sub_title", "category", "mutually_exclusive", "strike_date_us",
         "raw", "updated_us", "received_us", "gatherer_id"),
        ("text", "text", "text", "text", "text", "bool", "int8", "jsonb", "int8", "int8", "text"),
        lambda r: (r.event_ticker, r.series_ticker, r.title, r.sub_title, r.category, r.mutually_exclusive,
                   r.strike_date_us, r.raw_json, r.received_us, r.received_us, r.gatherer_id),
        ("event_ticker",),
        upsert_newest="updated_us",
    ),
    Kind.SERIES: TableSpec(
        "series",
        ("ticker", "title", "category", "frequency", "raw", "updated_us", "received_us", "gatherer_id"),
        ("text", "text", "text", "text", "jsonb", "int8", "int8", "text"),
        lambda r: (r.ticker, r.title, r.category, r.frequency, r.raw_json, r.received_us, r.received_us, r.gatherer_id),
        ("ticker",),
        upsert_newest="updated_us",
    ),
}  # fmt: skip

TABLES: dict[str, TableSpec] = {spec.table: spec for spec in SPECS.values()}
# Tables of exchange events, by time (the export writes these by day); the rest hold current state.
TIMED_TABLES: tuple[str, ...] = tuple(t for t, spec in TABLES.items() if spec.time_column is not None)

CANDLE_COLUMNS: tuple[str, ...] = (
    *(f"{side}_{p}" for side in ("yes_bid", "yes_ask") for p in ("open", "high", "low", "close")),
    *(f"price_{p}" for p in ("open", "high", "low", "close", "mean", "previous")),
)

# Tables only production has (dedup and the history backfill write them; no record travels into them), which
# the lake carries too.
PRODUCTION_TABLES: dict[str, TableSpec] = {
    "coverage_gaps": TableSpec(
        "coverage_gaps",
        ("market_ticker", "channel", "from_us", "to_us", "verified_complete", "differing", "sources", "base_by",
         "base_snapshot_us", "ended_by", "end_snapshot_us", "check_note", "trades_backfilled", "trades_healed_us"),
        ("text", "text", "int8", "int8", "bool", "jsonb", "text[]", "text", "int8", "text", "int8", "text", "int8",
         "int8"),
        lambda r: tuple(r),
        ("market_ticker", "channel", "from_us"),
        time_column="from_us",
    ),
    # Kalshi's candlesticks as the history backfill fetched them (the only record of past quotes); prices in 1e-6
    # USD (CANDLE_COLUMNS), price_* NULL for a period without a trade; source: the endpoint ('live' | 'historical')
    "candlesticks": TableSpec(
        "candlesticks",
        ("market_ticker", "period_minutes", "end_period_us", *CANDLE_COLUMNS, "volume", "open_interest", "source",
         "received_us"),
        ("text", "int4", "int8", *("int8",) * len(CANDLE_COLUMNS), "int8", "int8", "text", "int8"),
        lambda r: tuple(r),
        ("market_ticker", "period_minutes", "end_period_us"),
        time_column="end_period_us",
    ),
}  # fmt: skip


def _no_row(r: Any) -> tuple[Any, ...]:
    raise TypeError("a lake dataset's rows are computed at export, never built from a record")


def _reference(table: str) -> TableSpec:
    """A reference table's state as a day ended: production's columns (less ingest bookkeeping)."""
    spec = TABLES[table]
    return TableSpec(table, spec.columns, spec.types, _no_row, spec.key)


# Datasets only the lake has, computed at export from production (dedup._datasets): the reference tables as each
# day ended, settlements, and tables derived from the exact books and trades. time_column None: by the day only.
LAKE_DATASETS: dict[str, TableSpec] = {
    "markets": _reference("markets"),
    "events": _reference("events"),
    "series": _reference("series"),
    "settlements": TableSpec(
        "settlements",
        ("market_ticker", "event_ticker", "series_ticker", "result", "settlement_value", "determined_us",
         "determined_by", "settled_us", "status"),
        ("text", "text", "text", "text", "int4", "int8", "text", "int8", "text"),
        _no_row,
        ("market_ticker",),
        time_column="determined_us",
    ),
    "bbo": TableSpec(
        "bbo",
        ("market_ticker", "exchange_ts_us", "yes_bid", "yes_bid_size", "no_bid", "no_bid_size", "in_coverage_gap"),
        ("text", "int8", "int4", "int8", "int4", "int8", "bool"),
        _no_row,
        ("market_ticker", "exchange_ts_us"),
        time_column="exchange_ts_us",
    ),
    "book_1s": TableSpec(
        "book_1s",
        ("market_ticker", "exchange_ts_us", "yes_bid_prices", "yes_bid_sizes", "no_bid_prices", "no_bid_sizes",
         "in_coverage_gap"),
        ("text", "int8", "int4[]", "int8[]", "int4[]", "int8[]", "bool"),
        _no_row,
        ("market_ticker", "exchange_ts_us"),
        time_column="exchange_ts_us",
    ),
    "bars_1m": TableSpec(
        "bars_1m",
        ("market_ticker", "minute_us", "bid_open", "bid_high", "bid_low", "bid_close", "ask_open", "ask_high",
         "ask_low", "ask_close", "trade_open", "trade_high", "trade_low", "trade_close", "trades", "contracts",
         "notional", "mid", "book_gap", "trade_gap"),
        ("text", "int8", "int4", "int4", "int4", "int4", "int4", "int4", "int4", "int4", "int4", "int4", "int4",
         "int4", "int8", "int8", "int8", "int8", "bool", "bool"),
        _no_row,
        ("market_ticker", "minute_us"),
        time_column="minute_us",
    ),
}  # fmt: skip
# What the Parquet lake holds, a file per table and day: the timed tables, production's own, and the datasets.
LAKE_TABLES: dict[str, TableSpec] = {t: TABLES[t] for t in TIMED_TABLES} | PRODUCTION_TABLES | LAKE_DATASETS

# Units of the integer columns, for the lake's schema metadata and readers (core.conversions defines them).
PRICE_UNIT = "1e-5 USD (hundred-thousandths of a dollar)"
QTY_UNIT = "1e-2 contracts"
PRICE_COLUMNS = frozenset(
    {
        "yes_price",
        "no_price",
        "price",
        "yes_bid",
        "yes_ask",
        "no_bid",
        "last_price",
        "settlement_floor",
        "yes_bid_prices",
        "no_bid_prices",
        "yes_ask_prices",
        "no_ask_prices",
        "settlement_value",
        *(f"{side}_{p}" for side in ("bid", "ask", "trade") for p in ("open", "high", "low", "close")),
    }
)
QTY_COLUMNS = frozenset(
    {
        "count",
        "delta",
        "yes_bid_size",
        "yes_ask_size",
        "no_bid_size",
        "last_trade_size",
        "volume",
        "open_interest",
        "yes_bid_sizes",
        "no_bid_sizes",
        "yes_ask_sizes",
        "no_ask_sizes",
        "contracts",
    }
)
# Columns in a finer unit than a price: a product of price and size (contracts x price: 1e-7 USD exactly) and a
# midpoint (half a price unit: 1e-6 USD).
FINE_UNITS: dict[str, tuple[str, int]] = {
    "notional": ("1e-7 USD (contracts x YES price)", 7),
    "mid": ("1e-6 USD", 6),
    **{c: ("1e-6 USD (a candlestick's price: Kalshi sends up to 6 decimals)", 6) for c in CANDLE_COLUMNS},
}


def unit_of(column: str) -> str | None:
    """The unit of a price, quantity or finer amount column, None for any other."""
    if column in FINE_UNITS:
        return FINE_UNITS[column][0]
    return PRICE_UNIT if column in PRICE_COLUMNS else QTY_UNIT if column in QTY_COLUMNS else None


def decimals_of(column: str) -> int | None:
    """How many decimal places of a dollar or a contract one unit of the column is (None: not an amount)."""
    if column in FINE_UNITS:
        return FINE_UNITS[column][1]
    return 5 if column in PRICE_COLUMNS else 2 if column in QTY_COLUMNS else None
