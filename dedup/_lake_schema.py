"""What the lake stores of each production table, and how a reader gets the rest back.

The lake keeps every fact production holds, but not what is a function of other columns:
- `receive_delay_us` (int64, microseconds) in place of `received_us` where the table's time is the exchange's:
  received_us = exchange_ts_us + receive_delay_us. A delay of a few milliseconds takes a byte or two where a
  microsecond timestamp takes three (orderbook_deltas: 0.52 -> 0.48 of gzip CSV on the demo's day); likewise
  `send_delay_us` for `sent_us` (Kalshi's sending_ts_ms);
- no ask arrays in orderbook_snapshots: Kalshi sends bids only, and a YES ask at price p is a NO bid at
  $1 - p of the same size (`core.tables` derives them the same way for production);
- no `digest`: a hash of the other columns, production's deduplication key and nothing a reader needs.
`restore` puts them back (pyarrow); `kalshi-data lake sql` views do the same in DuckDB.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from core.tables import DOLLAR, LAKE_TABLES, TableSpec, unit_of

# Bumped whenever what a file holds changes; export_manifest.lake_format records it per day, and a day in an
# older format is exported again (1: a folder per market, 2: one file per table-day, 3: this module's rules,
# 4: Kalshi's send time, send_delay_us)
LAKE_FORMAT = 4
DELAY = "receive_delay_us"
# on exchange-timed tables, a time stored as its delay after the exchange time: column -> the delay's name
DELAYS = {"received_us": DELAY, "sent_us": "send_delay_us"}
# ask column -> (the other side's bid column it mirrors, True for prices (1 - p), False for sizes (as they are))
DERIVED_ASKS: dict[str, tuple[str, bool]] = {
    "yes_ask_prices": ("no_bid_prices", True),
    "yes_ask_sizes": ("no_bid_sizes", False),
    "no_ask_prices": ("yes_bid_prices", True),
    "no_ask_sizes": ("yes_bid_sizes", False),
}
_ARROW = {
    "text": pa.string(),
    "int8": pa.int64(),
    "int4": pa.int32(),
    "bool": pa.bool_(),
    "jsonb": pa.string(),
    "int4[]": pa.list_(pa.int32()),
    "int8[]": pa.list_(pa.int64()),
    "text[]": pa.list_(pa.string()),
}


@dataclass(frozen=True)
class LakeColumn:
    name: str
    select: str  # the expression over the production table that yields it
    field: pa.Field


def stores_delay(spec: TableSpec) -> bool:
    """Exchange-timed tables keep the receive time as a delay after the exchange time."""
    return spec.time_column == "exchange_ts_us" and "received_us" in spec.columns


def lake_columns(table: str) -> list[LakeColumn]:
    spec = LAKE_TABLES[table]
    delay = stores_delay(spec)
    out = []
    for col, typ in zip(spec.columns, spec.types, strict=True):
        if col == "digest" or col in DERIVED_ASKS:
            continue
        if col in DELAYS and delay:
            name = DELAYS[col]
            meta = {"unit": "microseconds", "meaning": f"{col} = exchange_ts_us + {name}"}
            field = pa.field(name, pa.int64(), metadata=meta)
            out.append(LakeColumn(name, f"{table}.{col} - {table}.exchange_ts_us", field))
            continue
        select = f"{table}.{col}::text" if typ == "jsonb" else f"{table}.{col}"
        if col.endswith("_us") and typ == "int8":
            field = pa.field(col, pa.timestamp("us", tz="UTC"), metadata={"unit": "UTC microseconds"})
        elif (unit := unit_of(col)) is not None:
            field = pa.field(col, _ARROW[typ], metadata={"unit": unit})
        else:
            field = pa.field(col, _ARROW[typ])
        out.append(LakeColumn(col, select, field))
    return out


def arrow_schema(table: str) -> pa.Schema:
    return pa.schema([c.field for c in lake_columns(table)], metadata={"table": table, "producer": "kalshi-data"})


def production_columns(table: str) -> list[str]:
    """The columns a reader gets back: production's, but the digest."""
    return [c for c in LAKE_TABLES[table].columns if c != "digest"]


def restore(table: str, lake: pa.Table) -> pa.Table:
    """A lake file's rows with production's columns (but the digest), in production's order: received_us from
    the delay, asks from the other side's bids."""
    columns: dict[str, pa.ChunkedArray] = {}
    for col in production_columns(table):
        if col in lake.column_names:
            columns[col] = lake[col]
        elif col in DELAYS and DELAYS[col] in lake.column_names:
            exchange = pc.cast(lake["exchange_ts_us"], pa.int64())
            at = pc.add(exchange, lake[DELAYS[col]])
            columns[col] = pc.cast(at, pa.timestamp("us", tz="UTC"))
        elif col in DERIVED_ASKS:
            source, is_price = DERIVED_ASKS[col]
            bids = lake[source]
            if not is_price:
                columns[col] = bids
                continue
            # one flat subtraction over every level, then the lists rebuilt around it
            chunks = []
            for chunk in bids.chunks:
                flat = pc.subtract(pa.scalar(DOLLAR, chunk.type.value_type), chunk.values)
                chunks.append(pa.ListArray.from_arrays(chunk.offsets, flat, mask=chunk.is_null()))
            columns[col] = pa.chunked_array(chunks, bids.type)
        else:
            raise KeyError(f"{table}.{col}: neither in the lake nor derivable")
    return pa.table(columns)
