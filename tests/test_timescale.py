"""What only TimescaleDB does, on a real TimescaleDB cluster: chunks compressed by the policy `db maintain`
installs, late rows and re-deliveries into compressed chunks (the optimistic COPY and the staging path), dedup
reading across compressed and uncompressed chunks, retention dropping whole chunks, `db maintain` itself."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from core.migrations import DAY_US, MigrationError, apply_timescale_policies, migrate
from core.records import OrderbookDelta
from core.tables import SPECS, TableSpec
from dedup import sync_all
from tests.dedupkit import dedup_config, keys
from tests.services import PrivatePostgres, TempDatabases, new_gatherer_db
from writers import BatchInserter

REPO = Path(__file__).resolve().parents[1]
DELTA_KEY = "market_ticker, exchange_ts_us, side, price, delta, occurrence"
NOW_US = time.time_ns() // 1000
OLD_DAY = (NOW_US // DAY_US - 10) * DAY_US  # compressed by a 2-day policy
SPEC: TableSpec = SPECS[next(k for k in SPECS if SPECS[k].table == "orderbook_deltas")]


@pytest.fixture
def tsdb(timescale_server: PrivatePostgres) -> Any:
    dbs = TempDatabases(timescale_server.dsn)
    try:
        yield dbs
    finally:
        dbs.drop_all()


def deltas(day_us: int, n: int, start: int = 0, market: str = "KXA-1") -> list[tuple[Any, ...]]:
    recs = [
        OrderbookDelta(
            "g1",
            day_us + i * 1000 + 5,
            day_us + i * 1000,
            market,
            None,
            i % 2 == 0,
            1_000 * (1 + i % 99),
            100 + i,
            0,
            1,
            i,
        )
        for i in range(start, start + n)
    ]
    return [SPEC.row(r) for r in recs]


def write(dsn: str, rows: list[tuple[Any, ...]], inserter: BatchInserter) -> int:
    with psycopg.connect(dsn) as conn, conn.transaction():
        return inserter.insert(conn, SPEC, rows)


def compressed_chunks(dsn: str, table: str = "orderbook_deltas") -> tuple[int, int]:
    """(compressed, all) chunks of the hypertable."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE is_compressed), count(*) FROM timescaledb_information.chunks "
            "WHERE hypertable_name = %s",
            (table,),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def run_policy_jobs(dsn: str, proc: str) -> None:
    """Run the installed policy jobs now (the scheduler would, on its own interval)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        jobs = [
            r[0] for r in conn.execute("SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = %s", (proc,))
        ]
        assert jobs, proc
        for job in jobs:
            conn.execute(f"CALL run_job({int(job)})")


def test_hypertables_from_migrate_and_require_refuses_plain(tsdb: TempDatabases, databases: TempDatabases) -> None:
    dsn = new_gatherer_db(tsdb)
    with psycopg.connect(dsn) as conn:
        names = {r[0] for r in conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")}
    assert names == {"trades", "orderbook_deltas", "orderbook_snapshots", "tickers"}
    plain = databases.create("kdplain")  # the machine's PostgreSQL: installed, not preloaded
    with pytest.raises(MigrationError, match="timescaledb: required"):
        migrate(plain, "gatherer", "require")
    assert migrate(plain, "gatherer", "auto")  # auto: plain partitions
    with psycopg.connect(plain) as conn:
        assert conn.execute("SELECT kd_has_timescale()").fetchone() == (False,)


def test_late_rows_and_redelivery_into_compressed_chunks_then_dedup_across_chunks(
    tsdb: TempDatabases, production_db: str
) -> None:
    src = new_gatherer_db(tsdb, "kdg1")
    inserter = BatchInserter()
    old, recent = deltas(OLD_DAY, 300), deltas(NOW_US - 60_000_000, 200)
    assert write(src, old, inserter) == 300 and write(src, recent, inserter) == 200
    assert apply_timescale_policies(src, compress_after_days=2, retain_days=None) == 4
    run_policy_jobs(src, "policy_compression")
    assert compressed_chunks(src)[0] >= 1  # the old day's chunk, not today's
    sync_all(dedup_config(production_db, {"g1": src}, batch_size=97))  # reads compressed + uncompressed chunks

    # late rows for the compressed day: new ones straight in (optimistic COPY) ...
    late = deltas(OLD_DAY, 50, start=300)
    assert write(src, late, inserter) == 50
    # ... a re-delivered batch (all copies): the unique key holds inside the compressed chunk
    assert write(src, late[:20], inserter) == 0
    # ... and a batch half old, half new: the staging path keeps only the new
    mixed = late[20:] + deltas(OLD_DAY, 30, start=350)
    assert write(src, mixed, inserter) == 30
    assert inserter.conflicts >= 1
    expected = sorted({(r[0], r[1], r[2], r[3], r[4], r[5]) for r in old + recent + late + mixed})
    assert keys(src, "orderbook_deltas", DELTA_KEY) == expected

    run_policy_jobs(src, "policy_compression")  # recompress what the late rows touched
    sync_all(dedup_config(production_db, {"g1": src}, batch_size=97))
    assert keys(production_db, "orderbook_deltas", DELTA_KEY) == expected
    with psycopg.connect(production_db) as prod:
        row = prod.execute(
            "SELECT rows_synced FROM sync_cursors WHERE source = 'g1' AND table_name = 'orderbook_deltas'"
        ).fetchone()
    assert row == (len(expected),)  # every source row read once, none twice


def test_retention_policy_drops_old_chunks_only(tsdb: TempDatabases) -> None:
    src = new_gatherer_db(tsdb)
    inserter = BatchInserter()
    write(src, deltas(OLD_DAY, 40), inserter)
    write(src, deltas(NOW_US - 60_000_000, 40), inserter)
    apply_timescale_policies(src, compress_after_days=2, retain_days=5)
    run_policy_jobs(src, "policy_retention")
    rows = keys(src, "orderbook_deltas", "exchange_ts_us")
    assert len(rows) == 40 and min(r[0] for r in rows) >= NOW_US - 5 * DAY_US


@pytest.mark.parametrize("backend", ["postgres", "timescaledb"])
def test_db_maintain_on_both(backend: str, tsdb: TempDatabases, databases: TempDatabases, tmp_path: Path) -> None:
    from psycopg.conninfo import conninfo_to_dict

    dsn = new_gatherer_db(tsdb if backend == "timescaledb" else databases)
    d = conninfo_to_dict(dsn)
    cfg = tmp_path / "gatherer.yaml"
    cfg.write_text(
        json.dumps(
            {
                "gatherer_id": "g1",
                "database": {"host": d["host"], "port": int(str(d["port"])), "dbname": d["dbname"], "user": d["user"]},
                "retention": {"compress_after_days": 2, "retain_days": 30, "partitions_ahead_days": 2},
            }
        )
    )

    def maintain() -> dict[str, int]:
        out = subprocess.run(
            [sys.executable, "-m", "cli.main", "db", "maintain", "--config", str(cfg)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        result: dict[str, int] = json.loads(out.stdout.strip().splitlines()[-1])
        return result

    first, second = maintain(), maintain()
    if backend == "timescaledb":
        assert first == second == {"created": 0, "dropped": 0, "timescale_policies": 8}
        with psycopg.connect(dsn) as conn:
            jobs = conn.execute(
                "SELECT proc_name, count(*) FROM timescaledb_information.jobs "
                "WHERE hypertable_name IS NOT NULL GROUP BY 1 ORDER BY 1"
            ).fetchall()
        assert jobs == [("policy_compression", 4), ("policy_retention", 4)]  # idempotent: not added twice
    else:
        assert first["created"] > 0 and first["timescale_policies"] == 0
        assert second["created"] == 0
