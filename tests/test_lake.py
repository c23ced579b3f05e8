"""The lake as quants read it, on a demo-scale day of the simulator's market (3,000 markets, 300 active,
~120,000 events): few files, smaller than gzip CSV of the same rows, a one-market read that opens few row
groups, and DuckDB (through `kalshi-data lake sql`) and Polars reading exactly what production holds."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest

from core.migrations import migrate
from dedup import column_floor, export_all, lake_sql, lake_stats
from dedup._lake_encoding import DICTIONARY
from dedup._lake_encoding import choose as choose_encodings
from devstack import fill_production_day
from tests.dedupkit import DAY0, dedup_config
from tests.services import TempDatabases

REPO = Path(__file__).resolve().parents[1]
DAY_US = 86_400_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TABLES = ("orderbook_deltas", "trades", "tickers")
# Parquet bytes over gzip CSV of the same rows, at most: the 0.5 where the rows allow it. Trades and
# tickers cannot get there: each column on its own under xz -9e already sums to 0.62 and 0.52 of gzip CSV
# (bench_lake's column_floor; a trade's random UUID alone is 0.46). The old layout: 1.28 / 3.23 / 3.12.
RATIO_AT_MOST = {"orderbook_deltas": 0.5, "trades": 0.7, "tickers": 0.7}


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, dict[str, int]]]:
    dbs = TempDatabases()
    prod = dbs.create("kdlake")
    migrate(prod, "production")
    counts = fill_production_day(prod, DAY0, events=120_000)
    root = tmp_path_factory.mktemp("lake") / "lake"
    export_all(dedup_config(prod, {"g1": prod}, lake=f"file://{root}"), now_us=DAY0 + 2 * DAY_US + 60_000_000)
    yield prod, root, counts
    dbs.drop_all()


def parts(root: Path, table: str) -> list[Path]:
    return sorted((root / table).glob("date=*/*.parquet"))


@pytest.mark.parametrize("table", TABLES)
def test_few_files_smaller_than_gzip_csv_and_a_market_opens_few_row_groups(
    lake: tuple[str, Path, dict[str, int]], table: str
) -> None:
    _prod, root, counts = lake
    files = parts(root, table)
    stats = lake_stats(root)[table]
    assert counts[table] >= 10_000 and 1 <= len(files) == stats["files"] <= 16  # the old layout: a file per market
    assert stats["rows"] == counts[table]
    assert stats["ratio_to_gzip_csv"] <= RATIO_AT_MOST[table], stats
    t = pq.read_table(files[0])
    meta = pq.ParquetFile(files[0]).metadata
    col = t.schema.names.index("market_ticker")
    for market in sorted(set(t["market_ticker"].to_pylist()))[::25]:
        groups = [
            g
            for g in range(meta.num_row_groups)
            if meta.row_group(g).column(col).statistics.min <= market <= meta.row_group(g).column(col).statistics.max
        ]
        assert 1 <= len(groups) <= 4, (market, len(groups))
    # each column in the encoding the chooser picks on the file's first row group
    chosen = choose_encodings(pq.ParquetFile(files[0]).read_row_group(0), 9)
    first = meta.row_group(0)
    for i in range(first.num_columns):
        column = first.column(i)
        name = column.path_in_schema.split(".")[0]
        want = "RLE_DICTIONARY" if chosen[name] == DICTIONARY else chosen[name]
        assert want in column.encodings and (want == "RLE_DICTIONARY") == ("RLE_DICTIONARY" in column.encodings), (
            name,
            column.encodings,
        )


def test_the_floor_that_keeps_trades_and_tickers_above_half_of_gzip_csv(lake: tuple[str, Path, dict[str, int]]) -> None:
    """Why RATIO_AT_MOST is not 0.5 for them: a trade's columns, each alone under xz -9e, already come to more than
    half of the gzip CSV, its random UUID text alone to over 0.4. Tickers' come to over 0.4 (0.52 before the
    rows carried Kalshi's send time, whose text the CSV holds and whose delay the lake keeps in a byte): Parquet
    at 0.55 leaves them a tenth of room. The deltas' floor is well below half."""
    _prod, root, _counts = lake
    floor = column_floor(root)
    assert floor["trades"]["xz_columns_to_gzip_csv"] > 0.5 and floor["tickers"]["xz_columns_to_gzip_csv"] > 0.4, floor
    assert floor["trades"]["largest_column"] == "trade_id" and floor["trades"]["largest_column_to_gzip_csv"] > 0.4
    assert floor["orderbook_deltas"]["xz_columns_to_gzip_csv"] < 0.5, floor


def to_us(t: datetime) -> int:
    return (t - EPOCH) // timedelta(microseconds=1)


def production(prod: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(prod) as conn:
        return conn.execute(sql).fetchall()


def test_duckdb_reads_production_rows_in_dollars_and_contracts(lake: tuple[str, Path, dict[str, int]]) -> None:
    prod, root, _ = lake
    names, rows = lake_sql(root, "SELECT trade_id, yes_price, no_price, count, exchange_ts_us, date FROM trades")
    assert names == ["trade_id", "yes_price", "no_price", "count", "exchange_ts_us", "date"]
    want = {
        tid: (Decimal(y) / 100_000, Decimal(n) / 100_000, Decimal(c) / 100, ts)
        for tid, y, n, c, ts in production(
            prod, "SELECT trade_id, yes_price, no_price, count, exchange_ts_us FROM trades"
        )
    }
    got = {r[0]: (r[1], r[2], r[3], to_us(r[4])) for r in rows}
    assert got == want
    assert all(isinstance(r[1], Decimal) and r[1] + r[2] == 1 for r in rows)  # exact: no float anywhere
    assert {str(r[5]) for r in rows} == {"2025-11-25"}
    # list columns too: a snapshot's levels in dollars and contracts
    # list columns too: a snapshot's levels in dollars and contracts, the asks (not in the files) derived
    cols = "market_ticker, received_us, yes_bid_prices, yes_bid_sizes, yes_ask_prices, no_ask_sizes"
    snaps = lake_sql(root, f"SELECT {cols} FROM orderbook_snapshots")[1]
    stored = production(prod, f"SELECT {cols} FROM orderbook_snapshots")
    dollars = [Decimal(1) / 100_000, Decimal(1) / 100, Decimal(1) / 100_000, Decimal(1) / 100]
    assert len(snaps) == len(stored) > 0
    assert sorted(
        (m, t, *([Decimal(v) * unit for v in levels] for unit, levels in zip(dollars, rest, strict=True)))
        for m, t, *rest in stored
    ) == sorted((m, to_us(t), *map(list, rest)) for m, t, *rest in snaps)
    # the receive time, stored as a delay after the exchange time, comes back to the microsecond
    cols = "market_ticker, exchange_ts_us, received_us, seq"
    deltas = lake_sql(root, f"SELECT {cols} FROM orderbook_deltas")[1]
    assert sorted((m, to_us(e), to_us(r), q) for m, e, r, q in deltas) == sorted(
        production(prod, f"SELECT {cols} FROM orderbook_deltas")
    )


def test_polars_reads_the_same_rows(lake: tuple[str, Path, dict[str, int]]) -> None:
    import polars as pl

    prod, root, _ = lake
    df = pl.scan_parquet(str(root / "orderbook_deltas" / "**" / "*.parquet"), hive_partitioning=True).collect()
    got = sorted(zip(df["market_ticker"], df["price"], df["delta"], df["occurrence"], strict=True))
    assert got == sorted(production(prod, "SELECT market_ticker, price, delta, occurrence FROM orderbook_deltas"))
    assert str(df.schema["exchange_ts_us"]) == "Datetime(time_unit='us', time_zone='UTC')"


def test_lake_sql_command_prints_a_days_trades_of_one_market(lake: tuple[str, Path, dict[str, int]]) -> None:
    _prod, root, _ = lake
    market = lake_sql(root, "SELECT market_ticker FROM trades GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")[1][0][0]
    query = f"SELECT exchange_ts_us, yes_price, count FROM trades WHERE market_ticker = '{market}' ORDER BY 1 LIMIT 3"
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "lake", "sql", query, "--lake", str(root)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["exchange_ts_us", "yes_price", "count"] and len(lines) == 4
    assert all(line.split()[-2].startswith("0.") for line in lines[1:])  # dollars, five decimals


def test_each_column_is_written_in_the_smallest_encoding_every_reader_takes() -> None:
    """The chooser's pick differs by data, not by type, and the writer uses what it picked: random ids leave the
    dictionary, values drawn from a few keep it, booleans stay bit-packed, a counter that steps by one takes
    DELTA_BINARY_PACKED."""
    import random
    import tempfile
    import uuid

    import pyarrow as pa

    from dedup._lake_encoding import DICTIONARY, candidates, choose, column_bytes, writer_options

    rng = random.Random(7)
    n = 20_000
    sample = pa.table(
        {
            "trade_id": [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)],
            "market_ticker": [f"KXM-{i // 500:03d}" for i in range(n)],
            "price": pa.array([1000 * rng.randint(1, 99) for _ in range(n)], pa.int32()),
            "seq": pa.array(range(10_000, 10_000 + n), pa.int64()),
            "flag": [i % 3 == 0 for i in range(n)],
        }
    )
    chosen = choose(sample, 9)
    assert chosen["trade_id"] != DICTIONARY and chosen["seq"] == "DELTA_BINARY_PACKED", chosen
    assert chosen["price"] == DICTIONARY and chosen["flag"] == "PLAIN", chosen  # booleans are bit-packed
    for field in sample.schema:  # nothing smaller was passed over
        best = column_bytes(sample[field.name], field, chosen[field.name], 9)
        assert all(best <= column_bytes(sample[field.name], field, e, 9) for e in candidates(field)), field.name
    path = Path(tempfile.mkdtemp()) / "t.parquet"
    pq.write_table(sample, path, compression="zstd", **writer_options(chosen, sample.schema))
    meta = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
    assert chosen["trade_id"] in encodings["trade_id"] and "DELTA_BINARY_PACKED" in encodings["seq"], encodings
    assert "RLE_DICTIONARY" in encodings["price"] and "RLE_DICTIONARY" not in encodings["trade_id"], encodings


def readme_block(heading: str) -> str:
    """The first ```sql block after a README heading: tests run README's queries as written."""
    text = (REPO / "README.md").read_text()
    after = text[text.index(heading) :]
    start = after.index("```sql\n") + len("```sql\n")
    return after[start : after.index("```", start)]


def test_readmes_query_leaves_out_exactly_the_unverified_gaps(tmp_path: Path, databases: TempDatabases) -> None:
    """README's query over a lake with a verified gap, an unverified one, one of every market, and one of another
    market: the market's deltas in the unverified stretches are left out, the rest (the verified stretch
    included) kept."""
    from core.records import OrderbookDelta
    from tests.dedupkit import store

    market = "KXHIGHLAX-26MAR01-T40"
    prod = databases.create("kdreadme")
    migrate(prod, "production")
    t = DAY0 + 3_600_000_000
    store(prod, [OrderbookDelta("g1", t + k * 1_000_000 + 5, t + k * 1_000_000, market, None, True, 40_000, 100 + k,
                                0, 1, k) for k in range(10)])  # fmt: skip
    gaps = [  # (market, from s, to s, verified)
        (market, 2, 4, True),  # deltas 2 and 3: kept (verified complete)
        (market, 5, 7, False),  # deltas 5 and 6: left out
        ("", 8, 9, False),  # every market: delta 8 left out
        ("KXOTHER-26MAR01-T40", 0, 10, False),  # another market: nothing of this one
    ]
    with psycopg.connect(prod) as conn:
        conn.execute("INSERT INTO sync_cursors (source, table_name, caught_up_us) VALUES ('g1', 'trades', %s)",
                     (DAY0 + 2 * DAY_US,))  # fmt: skip
        for m, f, to, verified in gaps:
            conn.execute(
                "INSERT INTO coverage_gaps (market_ticker, channel, from_us, to_us, sources, verified_complete) "
                "VALUES (%s, 'orderbook_delta', %s, %s, %s, %s)",
                (m, t + f * 1_000_000, t + to * 1_000_000, ["g1"], verified),
            )
    export_all(dedup_config(prod, {"g1": prod}, lake=f"file://{tmp_path}"), now_us=DAY0 + 2 * DAY_US)
    query = readme_block("### Leaving out what production cannot vouch for")
    _, rows = lake_sql(tmp_path, query)
    assert [r[3] for r in rows] == [Decimal(100 + k) / 100 for k in (0, 1, 2, 3, 4, 7, 9)]
