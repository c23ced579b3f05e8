"""Parquet export: a local folder and an S3 server (moto, server mode) read back with pyarrow.dataset equal
production row for row; only complete days; re-export replaces a day; manifests with checksums."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from core.migrations import migrate
from core.records import OrderbookDelta, Ticker, Trade
from dedup import export_all, lake_sql, restore, sync_all
from dedup._export import EXPORT_TABLES
from dedup._lake_schema import LAKE_FORMAT, production_columns
from tests.dedupkit import DAY0, dedup_config, store
from tests.services import TempDatabases

DAY_US = 86_400_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def fill(dsn: str, days: int = 2) -> None:
    recs: list[Any] = []
    for d in range(days):
        base = DAY0 + d * DAY_US
        for i in range(300):
            m = f"KX{i % 2}-26JAN0{d + 1}-T{i % 5}"
            recs.append(
                OrderbookDelta(
                    "g1",
                    base + i + 5,
                    base + i * 1000,
                    m,
                    None,
                    i % 2 == 0,
                    1000 * (i % 90 + 1),
                    100 * (i % 7 - 3 or 1),
                    0,
                    1,
                    i,
                )
            )
            if i % 10 == 0:
                recs.append(
                    Trade(
                        "g1", base + i, base + i * 1000, m, f"t{d}-{i}", 52_000, 48_000, 150, True, "ask", True, False
                    )
                )
                recs.append(
                    Ticker(
                        "g1",
                        base + i,
                        base + i * 1000,
                        m,
                        None,
                        52_000,
                        51_000,
                        53_000,
                        100,
                        200,
                        150,
                        10_000,
                        5_000,
                        52,
                        26,
                    )
                )
    store(dsn, recs)


@pytest.fixture
def synced(databases: TempDatabases, production_db: str) -> tuple[str, dict[str, str]]:
    g1 = databases.create("kdg1")
    migrate(g1, "gatherer")
    fill(g1)
    sources = {"g1": g1}
    result = sync_all(dedup_config(production_db, sources))
    assert not result["down"], result["down"]  # else no watermark, and every export would be empty
    return production_db, sources


def production_rows(prod: str, table: str) -> list[tuple[Any, ...]]:
    """Production's rows, every column a reader gets back from the lake (all but the digest)."""
    with psycopg.connect(prod) as conn:
        cols = ", ".join(production_columns(table))
        return sorted(conn.execute(f"SELECT {cols} FROM {table}").fetchall(), key=repr)


def lake_rows(dataset: ds.Dataset, table: str) -> list[tuple[Any, ...]]:
    """The lake's rows with what the files leave out put back (`dedup.restore`)."""
    t = restore(table, dataset.to_table())
    out = []
    for row in t.to_pylist():
        vals = []
        for c in production_columns(table):
            v = row[c]
            if c.endswith("_us") and v is not None:
                v = (v - EPOCH) // timedelta(microseconds=1)
            vals.append(v)
        out.append(tuple(vals))
    return sorted(out, key=repr)


def test_local_lake_equals_production(synced: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    prod, sources = synced
    cfg = dedup_config(prod, sources, lake=f"file://{tmp_path}/lake")
    result = export_all(cfg)
    exported = {(e["table"], e["day"]) for e in result["exported"]}
    assert ("orderbook_deltas", "2025-11-25") in exported and ("trades", "2025-11-26") in exported
    for table in ("orderbook_deltas", "trades", "tickers"):
        dataset = ds.dataset(tmp_path / "lake" / table, format="parquet", partitioning="hive")
        assert set(dataset.partitioning.schema.names) == {"date"}
        assert lake_rows(dataset, table) == production_rows(prod, table), table
        # one file per table-day, rows sorted by market then time (the market prunes row groups)
        for day_dir in (tmp_path / "lake" / table).glob("date=*"):
            assert sorted(p.name for p in day_dir.iterdir()) == ["_manifest.json", "part-0000.parquet"]
            t = pq.read_table(day_dir / "part-0000.parquet")
            t = restore(table, t)
            order = [t[c].to_pylist() for c in ("market_ticker", EXPORT_TABLES[table], "received_us")]
            keys = list(zip(*order, strict=True))
            assert keys == sorted(keys)
    # schema: times as timestamp[us, UTC], prices integers with their unit
    deltas = ds.dataset(tmp_path / "lake" / "orderbook_deltas", format="parquet", partitioning="hive")
    f = deltas.schema.field("exchange_ts_us")
    assert str(f.type) == "timestamp[us, tz=UTC]"
    assert deltas.schema.field("price").metadata[b"unit"].startswith(b"1e-5 USD")
    # manifests: row counts and checksums of every file
    man = json.loads((tmp_path / "lake" / "orderbook_deltas" / "date=2025-11-25" / "_manifest.json").read_text())
    assert man["rows"] == 300 and sum(f["rows"] for f in man["files"]) == 300
    # a total order: ties in time and receive time broken by the rest of the natural key (the same bytes each time)
    order = ["market_ticker", "exchange_ts_us", "received_us", "side", "price", "delta", "occurrence"]
    assert man["sorted_by"] == order
    # the receive time as a delay after the exchange time; no digest (tickers) in the files
    assert deltas.schema.field("receive_delay_us").type == "int64" and "received_us" not in deltas.schema.names
    tickers = ds.dataset(tmp_path / "lake" / "tickers", format="parquet", partitioning="hive")
    assert "digest" not in tickers.schema.names
    for entry in man["files"]:
        blob = (tmp_path / "lake" / "orderbook_deltas" / "date=2025-11-25" / entry["path"]).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == entry["sha256"]
    # nothing changed: nothing re-exported
    assert export_all(cfg)["exported"] == []


def test_late_rows_reexport_the_day_and_replace_it(synced: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    prod, sources = synced
    cfg = dedup_config(prod, sources, lake=f"file://{tmp_path}/lake")
    export_all(cfg)
    late = OrderbookDelta("g1", DAY0 + 9, DAY0 + 999_000, "KX0-26JAN01-T0", None, True, 5000, 100, 0, 1, 999)
    store(sources["g1"], [late])
    sync_all(cfg)
    again = export_all(cfg)
    # the day's deltas, and the book tables of the day and the next (its books start from this day's)
    books = {(t, d) for t in ("bbo", "book_1s", "bars_1m") for d in ("2025-11-25", "2025-11-26")}
    assert {(e["table"], e["day"]) for e in again["exported"]} == {("orderbook_deltas", "2025-11-25")} | books
    dataset = ds.dataset(tmp_path / "lake" / "orderbook_deltas", format="parquet", partitioning="hive")
    assert lake_rows(dataset, "orderbook_deltas") == production_rows(prod, "orderbook_deltas")
    leftovers = [p.name for p in (tmp_path / "lake" / "orderbook_deltas").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_the_day_in_progress_is_exported_up_to_the_watermark_and_again_when_complete(
    synced: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    prod, sources = synced
    cfg = dedup_config(prod, sources, lake=f"file://{tmp_path}/lake")
    lake = tmp_path / "lake" / "orderbook_deltas"

    def manifest(day: str) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((lake / f"date={day}" / "_manifest.json").read_text())
        return loaded

    noon = DAY0 + DAY_US + DAY_US // 2
    # every source synced 0.15 s into the second day (half its rows), then to its noon (all)
    for caught_up in (DAY0 + DAY_US + 150_000, noon):
        with psycopg.connect(prod) as conn:
            conn.execute("UPDATE sync_cursors SET caught_up_us = %s", (caught_up,))
        result = export_all(cfg, now_us=caught_up + 60_000_000)
        wm = result["watermark_us"]
        assert wm == caught_up - 300_000_000
        partial = manifest("2025-11-26")
        assert partial["complete"] is False and partial["up_to_us"] == caught_up
        want = [r for r in production_rows(prod, "orderbook_deltas") if r[1] < caught_up]
        assert len(want) > 300 and partial["rows"] == len(want) - 300
        assert lake_rows(ds.dataset(lake, format="parquet", partitioning="hive"), "orderbook_deltas") == want
        # the first day is complete once the watermark (five minutes of margin behind) has passed its end
        assert manifest("2025-11-25")["complete"] is (wm >= DAY0 + DAY_US)
    # the watermark passes the day's end: the same rows, now complete
    with psycopg.connect(prod) as conn:
        conn.execute("UPDATE sync_cursors SET caught_up_us = %s", (DAY0 + 3 * DAY_US,))
    again = export_all(cfg, now_us=DAY0 + 3 * DAY_US)
    assert ("orderbook_deltas", "2025-11-26") in {(e["table"], e["day"]) for e in again["exported"]}
    assert manifest("2025-11-26")["complete"] is True
    assert lake_rows(ds.dataset(lake, format="parquet", partitioning="hive"), "orderbook_deltas") == production_rows(
        prod, "orderbook_deltas"
    )
    assert export_all(cfg, now_us=DAY0 + 3 * DAY_US)["exported"] == []


@pytest.fixture
def s3_server() -> Iterator[str]:
    import os

    from moto.server import ThreadedMotoServer

    from devstack import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_s3_lake_equals_production(synced: tuple[str, dict[str, str]], s3_server: str) -> None:
    import boto3
    from pyarrow import fs

    prod, sources = synced
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="lake")
    cfg = dedup_config(prod, sources, lake="s3://lake/kalshi", s3_endpoint_url=s3_server)
    result = export_all(cfg)
    assert result["exported"]
    s3 = fs.S3FileSystem(
        access_key="test", secret_key="test", endpoint_override=s3_server, scheme="http", region="us-east-1"
    )
    for table in ("orderbook_deltas", "trades"):
        dataset = ds.dataset(f"lake/kalshi/{table}", format="parquet", partitioning="hive", filesystem=s3)
        assert lake_rows(dataset, table) == production_rows(prod, table), table
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3_server).list_objects_v2(Bucket="lake")["Contents"]]
    assert "kalshi/trades/date=2025-11-25/_manifest.json" in keys


def test_s3_reexport_with_fewer_parts_leaves_no_stale_part(synced: tuple[str, dict[str, str]], s3_server: str) -> None:
    """A day first written as many small parts (max_file_bytes 1: a part per row group), then re-exported as
    one: the parts the new manifest does not list are deleted, so a reader listing the prefix sees each row once."""
    import boto3

    prod, sources = synced
    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.create_bucket(Bucket="lake")
    many = dedup_config(
        prod, sources, lake="s3://lake/k", s3_endpoint_url=s3_server, max_file_bytes=1, row_group_size=50
    )
    export_all(many)
    prefix = "k/orderbook_deltas/date=2025-11-25/"
    parts = [o["Key"] for o in s3.list_objects_v2(Bucket="lake", Prefix=prefix)["Contents"]]
    assert len(parts) == 1 + 300 // 50  # six parts and the manifest
    with psycopg.connect(prod) as conn:
        conn.execute("DELETE FROM export_manifest")  # as if rows had changed: export the day again
    export_all(dedup_config(prod, sources, lake="s3://lake/k", s3_endpoint_url=s3_server))
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="lake", Prefix=prefix)["Contents"])
    assert keys == [prefix + "_manifest.json", prefix + "part-0000.parquet"]


def test_polars_reads_the_s3_lake(synced: tuple[str, dict[str, str]], s3_server: str) -> None:
    """What a quant runs against the bucket: Polars over S3 with hive partitions, no code of ours."""
    import boto3
    import polars as pl

    prod, sources = synced
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="lake")
    export_all(dedup_config(prod, sources, lake="s3://lake/kalshi", s3_endpoint_url=s3_server))
    options = {
        "aws_endpoint_url": s3_server,
        "aws_access_key_id": "test",
        "aws_secret_access_key": "test",
        "aws_region": "us-east-1",
        "aws_allow_http": "true",
    }
    df = pl.scan_parquet(
        "s3://lake/kalshi/trades/**/*.parquet", hive_partitioning=True, storage_options=options
    ).collect()
    assert sorted(df["date"].cast(pl.String).unique().to_list()) == ["2025-11-25", "2025-11-26"]
    assert str(df.schema["exchange_ts_us"]) == "Datetime(time_unit='us', time_zone='UTC')"
    received = (df["exchange_ts_us"].dt.epoch("us") + df["receive_delay_us"]).to_list()
    got = sorted(zip(df["trade_id"], df["yes_price"], df["count"], received, strict=True))
    with psycopg.connect(prod) as conn:
        want = sorted(conn.execute("SELECT trade_id, yes_price, count, received_us FROM trades").fetchall())
    assert got == want


def test_a_day_in_an_older_lake_format_is_exported_again(synced: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    """Upgrading migrates the lake: days a previous release wrote (here the first layout, a folder per market)
    are rewritten by the next export in today's format, and nothing of the old files is left beside them."""
    prod, sources = synced
    cfg = dedup_config(prod, sources, lake=f"file://{tmp_path}/lake")
    export_all(cfg)
    day = tmp_path / "lake" / "orderbook_deltas" / "date=2025-11-25"
    (day / "part-0000.parquet").unlink()
    old = day / "market=KX0-26JAN01-T0"
    old.mkdir()
    pq.write_table(
        pq.read_table(tmp_path / "lake" / "trades" / "date=2025-11-25" / "part-0000.parquet"), old / "p.parquet"
    )
    with psycopg.connect(prod) as conn:
        conn.execute("UPDATE export_manifest SET lake_format = 1 WHERE table_name = 'orderbook_deltas'")
    again = export_all(cfg)
    assert sorted((e["table"], e["day"]) for e in again["exported"]) == [
        ("orderbook_deltas", "2025-11-25"),
        ("orderbook_deltas", "2025-11-26"),
    ]
    assert sorted(p.name for p in day.iterdir()) == ["_manifest.json", "part-0000.parquet"]
    dataset = ds.dataset(tmp_path / "lake" / "orderbook_deltas", format="parquet", partitioning="hive")
    assert lake_rows(dataset, "orderbook_deltas") == production_rows(prod, "orderbook_deltas")
    assert json.loads((day / "_manifest.json").read_text())["lake_format"] == LAKE_FORMAT
    assert export_all(cfg)["exported"] == []


def test_duckdb_reads_the_s3_lake(synced: tuple[str, dict[str, str]], s3_server: str) -> None:
    """`kalshi-data lake sql` on s3://: DuckDB's httpfs from its PyPI wheel, credentials from the environment,
    the same rows as production with the receive time put back."""
    import boto3

    prod, sources = synced
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="lake")
    export_all(dedup_config(prod, sources, lake="s3://lake/kalshi", s3_endpoint_url=s3_server))
    query = "SELECT trade_id, yes_price, count, epoch_us(received_us), date FROM trades"
    names, rows = lake_sql("s3://lake/kalshi", query, s3_endpoint_url=s3_server)
    assert names[:3] == ["trade_id", "yes_price", "count"]
    with psycopg.connect(prod) as conn:
        want = conn.execute("SELECT trade_id, yes_price, count, received_us FROM trades").fetchall()
    assert sorted((t, y * 100_000, c * 100, r) for t, y, c, r, _ in rows) == sorted(want)
    assert {str(d) for *_, d in rows} == {"2025-11-25", "2025-11-26"}
