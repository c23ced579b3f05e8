"""The whole platform under faults: WebSocket drops, gaps, repeats, malformed frames; a gatherer stopped and
restarted; a writer killed with -9; the dedup worker killed with -9; Redis (private, AOF) restarted; one
gatherer's PostgreSQL (private) stopped and started. Production must equal the simulator's ledger row for
row, and books rebuilt from production must equal the simulator's books at sampled times. Gatherer databases
on plain PostgreSQL, then on TimescaleDB (a young cluster: transaction ids cross 10,000 during the run)."""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from core.migrations import migrate
from dedup import rebuild_book
from devstack import Pipeline, PipelineOptions
from simulator import FaultSchedule, WsFault, compare_markets, compare_with_ledger, is_exact
from tests.services import ADMIN_DSN, GATHERER_BACKENDS, PrivatePostgres, PrivateRedis, running_postgres

# Each backend its own seed; KD_E2E_SEED=N runs both with N (to repeat the proof with other seeds).
SEEDS = {"postgres": 7, "timescaledb": 11}


@pytest.fixture
def gatherer_pg(gatherer_backend: str) -> Iterator[PrivatePostgres]:
    """g3's database server: private (stopped and started by the test), TimescaleDB or plain like the rest."""
    with running_postgres(timescale=gatherer_backend == "timescaledb") as pg:
        yield pg


@pytest.fixture(params=GATHERER_BACKENDS)
def gatherer_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.slow
async def test_everything_exactly_once_under_faults(
    private_redis: PrivateRedis,
    gatherer_pg: PrivatePostgres,
    gatherer_backend: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    private_postgres = gatherer_pg
    timescale = gatherer_backend == "timescaledb"
    gatherer_admin = request.getfixturevalue("timescale_server").dsn if timescale else None
    seed = int(os.environ.get("KD_E2E_SEED", SEEDS[gatherer_backend]))
    ob = "orderbook_delta"
    faults = FaultSchedule(
        ws=[
            WsFault(kind="close", channel="ticker", connection=1, after_messages=300),
            WsFault(kind="close", channel="trade", connection=2, after_messages=200),
            WsFault(kind="skip_seq", channel=ob, connection=1, after_s=2),
            # A fault that shapes frames waits for frames, and one orderbook connection may carry only markets
            # that never move (with KD_E2E_SEED=67 the second and third did: the duplicate and reorder never
            # fired), so the duplicate and the reorder go to every orderbook connection. A duplicate is dropped
            # by its seq; a reorder reads as a gap first and is waited out (websocket.gap_grace_s) instead of
            # resubscribing: until 2026-12-01 all three gatherers resubscribed at once and lost a delta
            # together. The trade reorder checks that late frames are kept on the other channels alike.
            WsFault(kind="duplicate", channel=ob, connection=None, after_s=3),
            WsFault(kind="reorder", channel=ob, connection=None, after_s=3.5),
            WsFault(kind="reorder", channel="trade", connection=1, after_s=4),
            # a message in three frames on every orderbook connection: each gatherer must join it, not lose it
            WsFault(kind="fragment", channel=ob, connection=None, after_s=4.5),
            WsFault(kind="malformed", channel=ob, connection=4, after_s=5),
            # A truncated frame loses its message, so it cannot go to every orderbook connection, and the fifth
            # may carry only quiet markets (with KD_E2E_SEED=83 it fired in one backend's run, not the other's):
            # a ticker connection carries every market, and its twin's copy stands in for the lost message.
            WsFault(kind="truncated", channel="ticker", connection=2, after_s=6),
            WsFault(kind="close", channel=ob, connection=6, after_s=7),
            WsFault(kind="unknown_type", channel="market_lifecycle_v2", connection=1, after_s=3),
        ]
    )
    with psycopg.connect(private_postgres.dsn, autocommit=True) as conn:
        conn.execute("CREATE DATABASE kd_e2e_g3")
    g3_dsn = private_postgres.dsn.replace("dbname=postgres", "dbname=kd_e2e_g3")
    migrate(g3_dsn, "gatherer", "require" if timescale else "off")
    prefix = f"kd_e2e_{uuid.uuid4().hex[:8]}"  # concurrent runs never share a database
    opts = PipelineOptions(
        markets=400,
        active=200,
        rate=600,
        seed=seed,
        gatherers=3,
        db_prefix=prefix,
        admin_dsn=ADMIN_DSN,
        gatherer_admin_dsn=gatherer_admin,
        redis_url=private_redis.url,
        run_dir=tmp_path / "run",
        lake=tmp_path / "lake",
        faults=faults,
        lifecycle_interval_s=0.5,
        sync_interval_s=1,
        export_interval_s=5,
        markets_per_connection=20,
        gatherer_dsns={"g3": g3_dsn},
        writer_processes=frozenset({"g1"}),
        gatherer_processes=frozenset({"g2"}),
        key_type="ed25519" if timescale else "rsa",  # both key types Kalshi takes, signed and verified
    )
    p = Pipeline(opts)
    try:
        await p.start()  # inside: a start that fails half-way must still stop what it started
        await asyncio.sleep(6)
        p.kill_gatherer("g2")  # a gatherer host dies (kill -9, connection workers included) ...
        p.kill_writer_process("g1")  # ... and g1's writer dies with -9 mid-stream
        await asyncio.sleep(4)
        p.start_writers("g1")
        p.start_gatherer("g2")  # ... and comes back
        await p.wait_ready(["g2"])
        await asyncio.sleep(4)
        p.kill_dedup_worker()  # the RQ worker dies (in a job or between)
        private_postgres.stop()  # g3's database goes down while its gatherer keeps capturing
        await asyncio.sleep(3)
        p.start_dedup_worker()
        private_redis.stop()  # Redis restarts; streams and groups come back from the AOF
        await asyncio.sleep(3)
        private_redis.start()
        private_postgres.start()
        await asyncio.sleep(6)
        assert p.sim is not None
        fired = {f[2] for f in p.sim.ledger.faults()}
        expected = {"close", "skip_seq", "duplicate", "reorder", "malformed", "truncated", "unknown_type", "fragment"}
        assert fired >= expected, expected - fired
        await p.drain(timeout_s=120)
        report = compare_with_ledger(p.sim.ledger, p.prod_dsn, examples=3)  # a failure names the rows
        bad = {t: v for t, v in report.items() if v["missing"] or v["extra"] or v["differing"]}
        assert is_exact(report), repr(bad)
        assert report["orderbook_deltas"]["expected"] > 5000
        assert report["lifecycle_events"]["expected"] >= 20
        # reference data that stays true: every market production holds is as the exchange has it now (status,
        # result, settlement value, times), markets created during the run included
        markets = compare_markets(p.sim.exchange, p.prod_dsn)
        assert markets["differing"] == 0 and markets["created_missing"] == [], markets
        assert markets["created"] >= 1 and markets["stored"] > 300, markets
        # books rebuilt from production equal the simulator's at sampled times (outside coverage gaps)
        rng = random.Random(3)
        hot = [p.sim.exchange.universe.market_ticker(i) for i in p.sim.exchange.hot[:15]]
        start_us = min(r[1] for r in p.sim.ledger.rows("delta"))
        end_us = p.sim.exchange.last_ts_us
        checked = 0
        with psycopg.connect(p.prod_dsn) as conn:
            for ticker in hot:
                for _ in range(3):
                    at = rng.randrange(start_us, end_us)
                    book = rebuild_book(conn, ticker, at, start="first")
                    if book["inside_coverage_gap"]:
                        continue
                    truth = p.sim.ledger.book_at(ticker, at)
                    assert truth is not None
                    assert dict(book["yes"]) == truth.yes and dict(book["no"]) == truth.no, (ticker, at)
                    checked += 1
        assert checked >= 30
    finally:
        await p.stop()
        for admin, names in ((ADMIN_DSN, ["prod"]), (gatherer_admin or ADMIN_DSN, ["g1", "g2"])):
            with psycopg.connect(admin, autocommit=True) as conn:
                for name in names:
                    conn.execute(f'DROP DATABASE IF EXISTS "{prefix}_{name}" WITH (FORCE)')
