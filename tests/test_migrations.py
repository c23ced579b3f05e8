"""Migrations and schema on a real PostgreSQL: idempotent, concurrent-safe, natural keys enforced."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest

from core.migrations import (
    DAY_US,
    MigrationError,
    load_migrations,
    maintain_partitions,
    migrate,
    pending,
    timescale_policy_statements,
)
from tests.services import TempDatabases

EVENT_TABLES = (
    "trades",
    "orderbook_deltas",
    "orderbook_snapshots",
    "tickers",
    "lifecycle_events",
    "sequence_gaps",
)
DAY0 = 1_764_028_800_000_000  # 2025-11-25T00:00:00Z


def tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT relname FROM pg_class WHERE relkind IN ('r','p') AND relnamespace = 'public'::regnamespace"
        ).fetchall()
    return {r[0] for r in rows}


def schema_fingerprint(dsn: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY 1, 2"
        ).fetchall()


def test_migrate_creates_schema_and_second_run_changes_nothing(empty_db: str) -> None:
    applied = migrate(empty_db, "gatherer")
    assert applied == [m.name for m in load_migrations("gatherer")]
    assert {"series", "events", "markets", *EVENT_TABLES} <= tables(empty_db)
    before = schema_fingerprint(empty_db)
    assert migrate(empty_db, "gatherer") == []
    assert schema_fingerprint(empty_db) == before
    assert pending(empty_db, "gatherer") == []


def test_production_role_adds_cursor_table(empty_db: str) -> None:
    migrate(empty_db, "production")
    assert "sync_cursors" in tables(empty_db)
    assert "trades" in tables(empty_db)


def test_two_concurrent_runs_apply_each_migration_once(empty_db: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        try:
            barrier.wait()
            results.append(migrate(empty_db, "gatherer"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    names = [m.name for m in load_migrations("gatherer")]
    assert sorted(results, key=len) == [[], names]
    with psycopg.connect(empty_db) as conn:
        row = conn.execute("SELECT count(*) FROM kd_schema_migrations").fetchone()
    assert row == (len(names),)


def test_changed_applied_migration_is_refused(empty_db: str) -> None:
    migrate(empty_db, "gatherer")
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("UPDATE kd_schema_migrations SET checksum = 'x' WHERE version = 1")
    with pytest.raises(MigrationError, match="was changed after it was applied"):
        migrate(empty_db, "gatherer")


def insert_delta(conn: psycopg.Connection, ts: int, price: int, delta: int, occurrence: int, gid: str) -> int:
    cur = conn.execute(
        "INSERT INTO orderbook_deltas (market_ticker, exchange_ts_us, side, price, delta, occurrence, sid, seq,"
        " received_us, gatherer_id) VALUES ('M1', %s, true, %s, %s, %s, 1, 1, %s, %s) ON CONFLICT DO NOTHING",
        (ts, price, delta, occurrence, ts + 5, gid),
    )
    return cur.rowcount


def test_delta_natural_key(gatherer_db: str) -> None:
    with psycopg.connect(gatherer_db, autocommit=True) as conn:
        # Two identical deltas in the same exchange time are two events (occurrence 0 and 1)...
        assert insert_delta(conn, DAY0, 52000, 100, 0, "g1") == 1
        assert insert_delta(conn, DAY0, 52000, 100, 1, "g1") == 1
        # ...while the same event seen by another gatherer is a duplicate and is ignored.
        assert insert_delta(conn, DAY0, 52000, 100, 0, "g2") == 0
        row = conn.execute("SELECT count(*) FROM orderbook_deltas").fetchone()
        assert row == (2,)
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "INSERT INTO orderbook_deltas (market_ticker, exchange_ts_us, side, price, delta, occurrence, sid,"
                " seq, received_us, gatherer_id) VALUES ('M1', %s, true, 52000, 100, 0, 2, 9, 0, 'g3')",
                (DAY0,),
            )


def test_trade_natural_key(gatherer_db: str) -> None:
    sql = (
        "INSERT INTO trades (trade_id, market_ticker, exchange_ts_us, yes_price, no_price, count, source,"
        " received_us, gatherer_id) VALUES (%s, 'M1', %s, 52000, 48000, 500, 'ws', 1, %s) ON CONFLICT DO NOTHING"
    )
    with psycopg.connect(gatherer_db, autocommit=True) as conn:
        assert conn.execute(sql, ("t-1", DAY0, "g1")).rowcount == 1
        assert conn.execute(sql, ("t-1", DAY0, "g2")).rowcount == 0
        assert conn.execute(sql, ("t-2", DAY0, "g2")).rowcount == 1


TICKER_SQL = (
    "INSERT INTO tickers (market_ticker, exchange_ts_us, digest, occurrence, yes_ask, received_us, gatherer_id)"
    " VALUES ('M1', %s, %s, %s, 100000, 1, %s) ON CONFLICT DO NOTHING"
)


def test_ticker_natural_key_counts_a_repeated_state(gatherer_db: str) -> None:
    with psycopg.connect(gatherer_db, autocommit=True) as conn:
        # Ask emptied (A), refilled (B), emptied again (A) in one millisecond: three events...
        assert [conn.execute(TICKER_SQL, (DAY0, d, n, "g1")).rowcount for d, n in ((7, 0), (8, 0), (7, 1))] == [1] * 3
        # ...and the other gatherers' copies of them are duplicates.
        assert [conn.execute(TICKER_SQL, (DAY0, d, n, "g2")).rowcount for d, n in ((7, 0), (8, 0), (7, 1))] == [0] * 3


def test_ticker_occurrence_migration_upgrades_a_database_with_rows(
    empty_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.migrations as mig

    everything = mig.load_migrations("gatherer")
    monkeypatch.setattr(mig, "load_migrations", lambda role: [m for m in everything if m.version < 4])
    migrate(empty_db, "gatherer")  # the schema as it was before tickers had an occurrence
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO tickers (market_ticker, exchange_ts_us, digest, yes_ask, received_us, gatherer_id)"
            " VALUES ('M1', %s, 7, 100000, 1, 'g1')",
            (DAY0,),
        )
    monkeypatch.setattr(mig, "load_migrations", lambda role: everything)
    assert migrate(empty_db, "gatherer") == [m.name for m in everything if m.version >= 4]
    with psycopg.connect(empty_db, autocommit=True) as conn:
        assert conn.execute("SELECT occurrence FROM tickers").fetchall() == [(0,)]
        assert conn.execute(TICKER_SQL, (DAY0, 7, 0, "g2")).rowcount == 0
        assert conn.execute(TICKER_SQL, (DAY0, 7, 1, "g1")).rowcount == 1


def test_partitions_created_ahead_and_default_rows_moved(plain_gatherer_db: str) -> None:
    with psycopg.connect(plain_gatherer_db, autocommit=True) as conn:
        # A row for a day without a partition lands in the default partition, never refused.
        insert_delta(conn, DAY0 + 3600_000_000, 52000, 1, 0, "g1")
        row = conn.execute("SELECT count(*) FROM orderbook_deltas_default").fetchone()
        assert row == (1,)
    result = maintain_partitions(plain_gatherer_db, DAY0 + 10, ahead_days=2, retain_days=None, behind_days=1)
    assert result["created"] == 4 * 4  # 4 tables x (yesterday, today, +1, +2)
    assert "orderbook_deltas_p20251125" in tables(plain_gatherer_db)
    with psycopg.connect(plain_gatherer_db, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM orderbook_deltas_default").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM orderbook_deltas_p20251125").fetchone() == (1,)
        # the same queries work on the parent
        assert conn.execute("SELECT count(*) FROM orderbook_deltas").fetchone() == (1,)
    # idempotent
    assert maintain_partitions(plain_gatherer_db, DAY0 + 10, 2, None, 1)["created"] == 0
    # retention drops whole days that ended before the cut
    dropped = maintain_partitions(plain_gatherer_db, DAY0 + 3 * DAY_US, 0, retain_days=2, behind_days=0)["dropped"]
    assert dropped == 4 * 2  # 2025-11-24 and 2025-11-25 end at or before DAY0 + 1 day
    assert "orderbook_deltas_p20251125" not in tables(plain_gatherer_db)
    assert "orderbook_deltas_p20251126" in tables(plain_gatherer_db)


def test_timescale_branch_statements(plain_gatherer_db: str) -> None:
    with psycopg.connect(plain_gatherer_db) as conn:
        stmts = [
            r[0]
            for r in conn.execute(
                "SELECT kd_time_table_statements('trades', 'x bigint', 'exchange_ts_us', true)"
            ).fetchall()
        ]
        plain = [
            r[0]
            for r in conn.execute(
                "SELECT kd_time_table_statements('trades', 'x bigint', 'exchange_ts_us', false)"
            ).fetchall()
        ]
    assert stmts == [
        "CREATE TABLE trades (x bigint)",
        "SELECT create_hypertable('trades', 'exchange_ts_us', chunk_time_interval => 86400000000::bigint)",
        "SELECT set_integer_now_func('trades', 'kd_now_us')",
        "ALTER TABLE trades SET (timescaledb.compress, timescaledb.compress_orderby = 'exchange_ts_us DESC')",
    ]
    assert plain == [
        "CREATE TABLE trades (x bigint) PARTITION BY RANGE (exchange_ts_us)",
        "CREATE TABLE trades_default PARTITION OF trades DEFAULT",
    ]
    policies = timescale_policy_statements(compress_after_days=2, retain_days=30)
    assert policies[0] == (
        "SELECT add_compression_policy('trades', compress_after => 172800000000::bigint, if_not_exists => true)"
    )
    assert policies[1] == (
        "SELECT add_retention_policy('trades', drop_after => 2592000000000::bigint, if_not_exists => true)"
    )
    assert len(policies) == 8


def test_temp_databases_are_dropped() -> None:
    dbs = TempDatabases()
    dsn = dbs.create()
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    dbs.drop_all()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn).close()


def test_db_maintain_cli_on_production_from_deduplicator_config(production_db: str, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from psycopg.conninfo import conninfo_to_dict

    d = conninfo_to_dict(production_db)
    cfg = tmp_path / "deduplicator.yaml"
    cfg.write_text(
        json.dumps(
            {
                "production": {
                    "host": "127.0.0.1",
                    "port": int(str(d["port"])),
                    "dbname": d["dbname"],
                    "user": "postgres",
                },
                "sources": [{"gatherer_id": "g1", "database": {"dbname": "unused"}}],
                "retention": {"partitions_ahead_days": 2},
            }
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "db", "maintain", "--config", str(cfg)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["created"] == 4 * 4  # yesterday, today and two days ahead, for 4 tables
    assert any(t.startswith("orderbook_deltas_p") for t in tables(production_db))
