"""SQL over the lake with DuckDB: one view per table, prices in dollars and quantities in contracts as exact
DECIMALs, times as UTC timestamps, the date partition as a column. What `kalshi-data lake sql` runs, so a
user needs no knowledge of the stored units (integer hundred-thousandths of a dollar, hundredths of a contract).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.tables import PRICE_COLUMNS, QTY_COLUMNS, TABLES, TIMED_TABLES

# exact: an integer column cast to DECIMAL(18,0) times a DECIMAL scale stays a DECIMAL (no float on the way)
_PRICE = "CAST({c} AS DECIMAL(18,0)) * CAST(0.00001 AS DECIMAL(6,5))"
_QTY = "CAST({c} AS DECIMAL(18,0)) * CAST(0.01 AS DECIMAL(3,2))"
_PRICE_LIST = "list_transform({c}, lambda x: CAST(x AS DECIMAL(18,0)) * CAST(0.00001 AS DECIMAL(6,5)))"
_QTY_LIST = "list_transform({c}, lambda x: CAST(x AS DECIMAL(18,0)) * CAST(0.01 AS DECIMAL(3,2)))"


def view_sql(table: str, lake: str) -> str:
    """The view of one table: every column, prices and quantities as decimals of dollars and contracts."""
    spec = TABLES[table]
    cols = []
    for c, t in zip(spec.columns, spec.types, strict=True):
        listy = t.endswith("[]")
        if c in PRICE_COLUMNS:
            cols.append(f"{(_PRICE_LIST if listy else _PRICE).format(c=c)} AS {c}")
        elif c in QTY_COLUMNS:
            cols.append(f"{(_QTY_LIST if listy else _QTY).format(c=c)} AS {c}")
        else:
            cols.append(c)
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
