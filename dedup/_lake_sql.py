"""SQL over the lake with DuckDB: one view per table with production's columns (but the digest), prices in
dollars and quantities in contracts as exact DECIMALs, times as UTC timestamps, the date partition as a
column, and what the files leave out put back (receive times, snapshot asks: see `_lake_schema`). What
`kalshi-data lake sql` runs, so a user needs no knowledge of the stored units or of the storage tricks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.tables import DOLLAR, PRICE_COLUMNS, QTY_COLUMNS, TABLES, TIMED_TABLES
from dedup._lake_schema import DELAY, DERIVED_ASKS, lake_columns, production_columns

# exact: an integer column cast to DECIMAL(18,0) times a DECIMAL scale stays a DECIMAL (no float on the way)
_PRICE = "CAST({c} AS DECIMAL(18,0)) * CAST(0.00001 AS DECIMAL(6,5))"
_QTY = "CAST({c} AS DECIMAL(18,0)) * CAST(0.01 AS DECIMAL(3,2))"
_PRICE_LIST = "list_transform({c}, lambda x: CAST(x AS DECIMAL(18,0)) * CAST(0.00001 AS DECIMAL(6,5)))"
_QTY_LIST = "list_transform({c}, lambda x: CAST(x AS DECIMAL(18,0)) * CAST(0.01 AS DECIMAL(3,2)))"


def _stored(table: str, col: str, stored: set[str]) -> str:
    """The expression of a production column over the files: the column, or what it follows from."""
    if col in stored:
        return col
    if col == "received_us" and DELAY in stored:
        return f"(exchange_ts_us + to_microseconds({DELAY}))"
    if col in DERIVED_ASKS:
        source, is_price = DERIVED_ASKS[col]
        return f"list_transform({source}, lambda x: {DOLLAR} - x)" if is_price else source
    raise KeyError(f"{table}.{col}: neither in the lake nor derivable")


def view_sql(table: str, lake: str) -> str:
    """The view of one table: production's columns, prices and quantities as decimals of dollars and contracts."""
    stored = {c.name for c in lake_columns(table)}
    types = dict(zip(TABLES[table].columns, TABLES[table].types, strict=True))
    cols = []
    for c in production_columns(table):
        expr, listy = _stored(table, c, stored), types[c].endswith("[]")
        if c in PRICE_COLUMNS:
            cols.append(f"{(_PRICE_LIST if listy else _PRICE).format(c=expr)} AS {c}")
        elif c in QTY_COLUMNS:
            cols.append(f"{(_QTY_LIST if listy else _QTY).format(c=expr)} AS {c}")
        else:
            cols.append(f"{expr} AS {c}" if expr != c else c)
    source = f"read_parquet('{lake.rstrip('/')}/{table}/*/*.parquet', hive_partitioning = true)"
    return f"CREATE OR REPLACE VIEW {table} AS SELECT {', '.join(cols)}, date FROM {source}"


def connect(lake: str | Path) -> Any:
    """An in-memory DuckDB with a view per table the lake holds."""
    import duckdb

    con = duckdb.connect()
    root = str(lake)
    for table in TIMED_TABLES:
        if root.startswith("s3://") or any(Path(root, table).glob("date=*/*.parquet")):
            con.execute(view_sql(table, root))
    return con


def lake_sql(lake: str | Path, query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    con = connect(lake)
    cur = con.execute(query)
    return [d[0] for d in cur.description], cur.fetchall()
