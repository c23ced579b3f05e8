"""SQL over the lake with DuckDB: one view per table with production's columns (but the digest), prices in
dollars and quantities in contracts as exact DECIMALs, times as UTC timestamps, the date partition as a
column, and what the files leave out put back (receive times, snapshot asks: see `_lake_schema`). What
`kalshi-data lake sql` runs, so a user needs no knowledge of the stored units or of the storage tricks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from core.tables import DOLLAR, LAKE_TABLES, decimals_of
from dedup._lake_schema import DELAYS, DERIVED_ASKS, lake_columns, production_columns


def _scaled(expr: str, places: int, listy: bool) -> str:
    """An integer amount in units of 10^-places as an exact DECIMAL: cast to DECIMAL(18,0) and times a DECIMAL
    scale, no float on the way; a list, each element."""
    one = f"CAST(0.{'0' * (places - 1)}1 AS DECIMAL({places + 1},{places}))"
    if listy:
        return f"list_transform({expr}, lambda x: CAST(x AS DECIMAL(18,0)) * {one})"
    return f"CAST({expr} AS DECIMAL(18,0)) * {one}"


def _stored(table: str, col: str, stored: set[str]) -> str:
    """The expression of a production column over the files: the column, or what it follows from."""
    if col in stored:
        return col
    if col in DELAYS and DELAYS[col] in stored:
        return f"(exchange_ts_us + to_microseconds({DELAYS[col]}))"
    if col in DERIVED_ASKS:
        source, is_price = DERIVED_ASKS[col]
        return f"list_transform({source}, lambda x: {DOLLAR} - x)" if is_price else source
    raise KeyError(f"{table}.{col}: neither in the lake nor derivable")


_DUCK = {"string": "VARCHAR", "int64": "BIGINT", "int32": "INTEGER", "bool": "BOOLEAN",
         "timestamp[us, tz=UTC]": "TIMESTAMPTZ"}  # fmt: skip


def _duck_type(t: Any) -> str:
    import pyarrow as pa

    return f"{_duck_type(t.value_type)}[]" if pa.types.is_list(t) else _DUCK[str(t)]


def _empty(table: str) -> str:
    """A source with the table's file columns and no row: a table no day has yet still has its view, so a query
    that names it answers with no rows instead of failing."""
    cols = ", ".join(f"CAST(NULL AS {_duck_type(c.field.type)}) AS {c.name}" for c in lake_columns(table))
    return f"(SELECT {cols}, CAST(NULL AS DATE) AS date WHERE false)"


def _source(table: str, lake: str, files: bool) -> str:
    glob = f"{lake.rstrip('/')}/{table}/*/*.parquet"
    # union_by_name: a lake being migrated to a newer format has days of both (a column the older ones lack)
    return f"read_parquet('{glob}', hive_partitioning = true, union_by_name = true)" if files else _empty(table)


def view_sql(table: str, lake: str, files: bool = True, decimals: bool = True) -> str:
    """The view of one table: production's columns, prices and quantities as decimals of dollars and contracts;
    without files, the same columns and no row. decimals=False: the columns as stored (integers in their units,
    the delays), what the book replay reads."""
    if not decimals:
        return f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM {_source(table, lake, files)}"
    stored = {c.name for c in lake_columns(table)}
    spec = LAKE_TABLES[table]
    types = dict(zip(spec.columns, spec.types, strict=True))
    cols = []
    for c in production_columns(table):
        expr, listy = _stored(table, c, stored), types[c].endswith("[]")
        if (places := decimals_of(c)) is not None:
            cols.append(f"{_scaled(expr, places, listy)} AS {c}")
        else:
            cols.append(f"{expr} AS {c}" if expr != c else c)
    return f"CREATE OR REPLACE VIEW {table} AS SELECT {', '.join(cols)}, date FROM {_source(table, lake, files)}"


def _load_httpfs(con: Any) -> None:
    """S3 needs DuckDB's httpfs: from the duckdb-extension-httpfs wheel when it matches this DuckDB, else
    DuckDB's own INSTALL (a download from extensions.duckdb.org)."""
    import duckdb

    try:
        import duckdb_extension_httpfs

        path = Path(duckdb_extension_httpfs.__file__).parent / "extensions" / f"v{duckdb.__version__}"
        binary = path / "httpfs.duckdb_extension"
    except ImportError:
        binary = None
    if binary is not None and binary.exists():
        con.execute(f"LOAD '{binary}'")
    else:
        con.execute("INSTALL httpfs")
        con.execute("LOAD httpfs")


def _s3_secret(con: Any, endpoint_url: str | None) -> None:
    """Credentials from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
    AWS_REGION or AWS_DEFAULT_REGION); an endpoint for S3-compatible stores (MinIO, moto)."""
    opts = {"TYPE": "s3"}
    env = {"KEY_ID": "AWS_ACCESS_KEY_ID", "SECRET": "AWS_SECRET_ACCESS_KEY", "SESSION_TOKEN": "AWS_SESSION_TOKEN"}
    for key, var in env.items():
        if os.environ.get(var):
            opts[key] = os.environ[var]
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        opts["REGION"] = region
    if endpoint_url:
        u = urlsplit(endpoint_url)
        opts.update(ENDPOINT=u.netloc, URL_STYLE="path", USE_SSL="true" if u.scheme == "https" else "false")
    body = ", ".join(f"{k} {v}" if k == "TYPE" else f"{k} '{v.replace(chr(39), chr(39) * 2)}'" for k, v in opts.items())
    con.execute(f"CREATE OR REPLACE SECRET kd_lake ({body})")


def connect(lake: str | Path, s3_endpoint_url: str | None = None, decimals: bool = True) -> Any:
    """An in-memory DuckDB with a view per lake table (a folder, or s3://bucket/prefix); a table without files
    yet has an empty one. decimals=False: views of the stored columns (view_sql)."""
    import duckdb

    con = duckdb.connect()
    root = str(lake)
    remote = root.startswith("s3://")
    if remote:
        _load_httpfs(con)
        _s3_secret(con, s3_endpoint_url)
    for table in LAKE_TABLES:
        if remote:
            found = con.execute("SELECT count(*) FROM glob(?)", [f"{root.rstrip('/')}/{table}/*/*.parquet"]).fetchone()
            files = bool(found and found[0])
        else:
            files = any(Path(root, table).glob("date=*/*.parquet"))
        con.execute(view_sql(table, root, files, decimals))
    return con


def lake_sql(
    lake: str | Path, query: str, s3_endpoint_url: str | None = None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    con = connect(lake, s3_endpoint_url)
    cur = con.execute(query)
    return [d[0] for d in cur.description], cur.fetchall()
