"""Dedup with three real gatherer databases and a real production database."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from core.migrations import migrate
from core.records import Market, OrderbookDelta, OrderbookSnapshot, Trade
from dedup import status, sync_all, sync_table
from tests.dedupkit import DAY0, dedup_config, keys, store
from tests.services import PrivatePostgres, PrivateRedis, TempDatabases, new_gatherer_db

REPO = Path(__file__).resolve().parents[1]
DELTA_KEY = "market_ticker, exchange_ts_us, side, price, delta, occurrence"


def truth_deltas(n: int) -> list[tuple[Any, ...]]:
    """Canonical delta keys with identical pairs inside one exchange millisecond."""
    out = []
    for i in range(n):
        ts = DAY0 + (i // 4) * 1000
        out.append((f"M{i % 3}", ts, True, 50_000 + 1000 * (i % 2), 100, 0))
    # every 10th event repeated identically in the same millisecond: occurrence 1
    out += [(m, ts, s, p, d, 1) for (m, ts, s, p, d, _o) in out[::10]]
    return sorted(set(out))


def as_records(rows: list[tuple[Any, ...]], gid: str) -> list[OrderbookDelta]:
    return [OrderbookDelta(gid, ts + 7, ts, m, None, s, p, d, o, 1, k) for k, (m, ts, s, p, d, o) in enumerate(rows)]


@pytest.fixture
def three(gatherer_server: TempDatabases) -> dict[str, str]:
    """Three gatherer databases, on plain PostgreSQL and (a second run of each test) on TimescaleDB."""
    return {g: new_gatherer_db(gatherer_server, f"kd{g}") for g in ("g1", "g2", "g3")}


def test_exact_union_under_complementary_losses(three: dict[str, str], production_db: str) -> None:
    truth = truth_deltas(3000)
    n = len(truth)
    # g1 misses the first third, g2 the middle third, g3 the last third; together they saw everything,
    # including both copies of every identical pair (g2 alone saw some pairs' second copy)
    store(three["g1"], as_records(truth[n // 3 :], "g1"))
    store(three["g2"], as_records(truth[: n // 3] + truth[2 * n // 3 :], "g2"))
    store(three["g3"], as_records(truth[: 2 * n // 3], "g3"))
    trades = [
        Trade("gX", DAY0, DAY0 + i, "M1", f"t{i}", 52_000, 48_000, 100, True, "ask", True, False) for i in range(50)
    ]
    store(three["g1"], [t._replace(gatherer_id="g1") for t in trades[:30]])
    store(three["g3"], [t._replace(gatherer_id="g3") for t in trades[20:]])
    result = sync_all(dedup_config(production_db, three, batch_size=257))
    assert result["down"] == {}
    assert keys(production_db, "orderbook_deltas", DELTA_KEY) == truth
    assert keys(production_db, "trades", "trade_id") == sorted((f"t{i}",) for i in range(50))
    # a second round finds nothing new
    again = sync_all(dedup_config(production_db, three, batch_size=257))
    assert sum(r["rows_new"] for r in again["results"]) == 0
    assert keys(production_db, "orderbook_deltas", DELTA_KEY) == truth


def test_markets_keep_the_newest_state(three: dict[str, str], production_db: str) -> None:
    def market(gid: str, updated: int, status: str) -> Market:
        return Market(
            gid,
            updated,
            updated,
            "M1",
            "E1",
            "S1",
            "binary",
            status,
            "t",
            None,
            None,
            None,
            1000,
            None,
            None,
            None,
            None,
            None,
            None,
            "{}",
        )

    store(three["g1"], [market("g1", 200, "active")])
    store(three["g2"], [market("g2", 300, "closed")])
    store(three["g3"], [market("g3", 100, "initialized")])
    sync_all(dedup_config(production_db, three))
    assert keys(production_db, "markets", "ticker, status, updated_us, gatherer_id") == [("M1", "closed", 300, "g2")]


def test_job_killed_mid_batch_repeats_at_most_one_batch(
    three: dict[str, str], production_db: str, tmp_path: Path
) -> None:
    truth = truth_deltas(5000)
    store(three["g1"], as_records(truth, "g1"))
    cfg = tmp_path / "d.yaml"
    cfg.write_text(dedup_config(production_db, {"g1": three["g1"]}, batch_size=500).model_dump_json())
    env = {**os.environ, "KD_DEDUP_CRASH": "4"}
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "dedup", "sync", "--config", str(cfg)],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    with psycopg.connect(production_db) as conn:
        row = conn.execute("SELECT rows_synced FROM sync_cursors WHERE table_name = 'orderbook_deltas'").fetchone()
        assert row == (1500,)  # three batches committed; the fourth died with its transaction
        assert conn.execute("SELECT count(*) FROM orderbook_deltas").fetchone() == (1500,)
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "dedup", "sync", "--config", str(cfg)],
        cwd=REPO,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert keys(production_db, "orderbook_deltas", DELTA_KEY) == truth


def test_two_workers_racing_each_row_once(three: dict[str, str], production_db: str) -> None:
    truth = truth_deltas(6000)
    for g in three:
        store(three[g], as_records(truth, g))
    cfg = dedup_config(production_db, three, batch_size=300)
    results: list[dict[str, Any]] = []
    barrier = threading.Barrier(2)

    def worker() -> None:
        barrier.wait()
        results.append(sync_all(cfg))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert keys(production_db, "orderbook_deltas", DELTA_KEY) == truth
    per = [r for res in results for r in res["results"] if r["table"] == "orderbook_deltas"]
    assert sum(r["rows_new"] for r in per) == len(truth)
    with psycopg.connect(production_db) as conn:
        synced = conn.execute(
            "SELECT source, rows_synced FROM sync_cursors WHERE table_name = 'orderbook_deltas' ORDER BY 1"
        ).fetchall()
    assert synced == [("g1", len(truth)), ("g2", len(truth)), ("g3", len(truth))]  # every row read once per source


def test_out_of_order_commits_are_not_skipped(three: dict[str, str], production_db: str) -> None:
    src = three["g1"]
    cfg = dedup_config(production_db, {"g1": src})
    early = psycopg.connect(src)
    late = psycopg.connect(src)
    row = as_records([("M1", DAY0, True, 50_000, 100, 0), ("M1", DAY0 + 1000, True, 50_000, 100, 0)], "g1")
    spec_sql = (
        "INSERT INTO orderbook_deltas (market_ticker, exchange_ts_us, side, price, delta, occurrence, sid, seq,"
        " received_us, gatherer_id) VALUES (%s, %s, true, 50000, 100, 0, 1, 1, 1, 'g1')"
    )
    # TimescaleDB: the transaction that creates a chunk holds a lock others wait on until it ends; writers'
    # transactions are short, here one stays open, so the day's chunk is made (and left empty) first
    with psycopg.connect(src) as warm:
        warm.execute(spec_sql, ("WARM", DAY0))
        warm.execute("DELETE FROM orderbook_deltas WHERE market_ticker = 'WARM'")
    early.execute(spec_sql, ("M1", row[0].exchange_ts_us))  # takes the lower ingest id, commits last
    late.execute(spec_sql, ("M1", row[1].exchange_ts_us))
    late.commit()
    sync_all(cfg)
    assert keys(production_db, "orderbook_deltas", "exchange_ts_us") == []  # held back behind the open one
    early.commit()
    sync_all(cfg)
    assert keys(production_db, "orderbook_deltas", "exchange_ts_us") == [(DAY0,), (DAY0 + 1000,)]
    early.close()
    late.close()


def test_gatherer_down_does_not_stop_the_others_and_resumes(
    three: dict[str, str], production_db: str, private_postgres: PrivatePostgres
) -> None:
    with psycopg.connect(private_postgres.dsn, autocommit=True) as conn:
        conn.execute("CREATE DATABASE kd")
    g3 = private_postgres.dsn.replace("dbname=postgres", "dbname=kd")
    migrate(g3, "gatherer")
    truth = truth_deltas(900)
    store(three["g1"], as_records(truth[:300], "g1"))
    store(g3, as_records(truth, "g3"))
    private_postgres.stop()
    cfg = dedup_config(production_db, {"g1": three["g1"], "g3": g3})
    first = sync_all(cfg)
    assert list(first["down"]) == ["g3"]
    assert len(keys(production_db, "orderbook_deltas", DELTA_KEY)) == 300
    private_postgres.start()
    second = sync_all(cfg)
    assert second["down"] == {}
    assert keys(production_db, "orderbook_deltas", DELTA_KEY) == truth
    lags = {(s["source"], s["table"]): s for s in status(cfg)}
    assert lags[("g3", "orderbook_deltas")]["rows_synced"] == len(truth)


def test_lock_keeps_a_second_job_off_the_same_table(three: dict[str, str], production_db: str) -> None:
    store(three["g1"], as_records(truth_deltas(30), "g1"))
    with (
        psycopg.connect(production_db) as holder,
        psycopg.connect(three["g1"]) as src,
        psycopg.connect(production_db) as prod,
    ):
        from dedup._sync import _lock_key

        holder.execute("SELECT pg_advisory_lock(%s)", (_lock_key("g1", "orderbook_deltas"),))
        res = sync_table("g1", src, prod, "orderbook_deltas", 100)
        assert res.skipped_locked and res.rows_read == 0
        holder.execute("SELECT pg_advisory_unlock(%s)", (_lock_key("g1", "orderbook_deltas"),))
        assert sync_table("g1", src, prod, "orderbook_deltas", 100).rows_new == len(truth_deltas(30))


def test_rq_worker_runs_the_sync_job(three: dict[str, str], production_db: str, tmp_path: Path) -> None:
    from redis import Redis
    from rq import Queue

    from dedup._jobs import QUEUE, sync_job
    from tests.services import REDIS_URL

    store(three["g1"], as_records(truth_deltas(100), "g1"))
    cfg = dedup_config(production_db, {"g1": three["g1"]})
    path = tmp_path / "deduplicator.yaml"
    data = json.loads(cfg.model_dump_json())
    data["redis"] = {"url": REDIS_URL}
    path.write_text(json.dumps(data))
    conn = Redis.from_url(REDIS_URL)
    conn.flushdb()
    Queue(QUEUE, connection=conn).enqueue(sync_job, str(path))
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "dedup", "worker", "--config", str(path), "--burst", "--no-cron"],
        cwd=REPO,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert keys(production_db, "orderbook_deltas", DELTA_KEY) == truth_deltas(100)
    conn.flushdb()


def _process_tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(FileNotFoundError):
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
    return out


def test_the_worker_ends_on_sigterm_though_its_command_thread_waits_for_a_subscription() -> None:
    """RQ listens for commands on a pubsub thread that waits up to 60 s for a subscription whenever it has none,
    and redis-py 8.2's stop() waits for that thread without a bound: when the unsubscribe of a shutdown had
    already been answered before the thread's next wait, SIGTERM took a minute to end the worker (2 of 12
    tries, end-to-end tests 30 s slower). Here the thread is put in that wait on purpose."""
    from redis import Redis
    from rq import Queue

    from dedup import QUEUE, DedupWorker
    from tests.services import REDIS_URL

    conn = Redis.from_url(REDIS_URL)
    worker = DedupWorker([Queue(QUEUE, connection=conn)], connection=conn)
    worker.subscribe()  # type: ignore[no-untyped-call]
    pubsub, thread = worker.pubsub, worker.pubsub_thread
    assert pubsub is not None and thread is not None
    pubsub.unsubscribe()
    time.sleep(0.5)  # the thread reads the answer, then waits for a subscription again
    assert thread.is_alive()
    done = threading.Thread(target=worker.unsubscribe, daemon=True)
    done.start()
    done.join(10)  # a hang is 60 s: this is no measure of speed
    assert not done.is_alive(), "the worker's shutdown waits for its pubsub thread"
    conn.close()


def test_scheduler_and_worker_use_the_configured_redis_password_and_never_show_it(
    three: dict[str, str], production_db: str, tmp_path: Path
) -> None:
    """Worker with its scheduler against a password-protected Redis: the scheduler enqueues the sync job
    (it would fail to connect without the password), the worker runs it, and no process's command line or
    the config file holds the password (it comes from the environment through ${REDIS_PASSWORD})."""
    import time

    secret = "s3cret-" + os.urandom(6).hex()
    redis_srv = PrivateRedis(str(tmp_path), password=secret)
    redis_srv.start()
    try:
        store(three["g1"], as_records(truth_deltas(60), "g1"))
        path = tmp_path / "deduplicator.yaml"
        # the scheduler enqueues export on start too: its lake goes to the test's folder, not ./lake
        cfg = dedup_config(production_db, {"g1": three["g1"]}, lake=f"file://{tmp_path / 'lake'}")
        data = json.loads(cfg.model_dump_json())
        data["redis"] = {"url": redis_srv.url, "password": "${KD_TEST_REDIS_PASSWORD}"}
        data["schedule"] = {"sync_interval_s": 1, "export_interval_s": 3600}
        path.write_text(json.dumps(data))
        assert secret not in path.read_text()
        env = {**os.environ, "KD_TEST_REDIS_PASSWORD": secret}
        # its output to a file, not a pipe nobody reads until the end: RQ logs a few lines a job, a job a second,
        # and a full pipe (64 KiB) blocked the worker mid-sync, then its shutdown (seen once in four suite runs)
        log = tmp_path / "worker.log"
        worker = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "dedup", "worker", "--config", str(path)],
            cwd=REPO,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            seen_cmdlines: list[bytes] = []
            while time.monotonic() < deadline:
                for pid in _process_tree(worker.pid):
                    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                        seen_cmdlines.append(Path(f"/proc/{pid}/cmdline").read_bytes())
                if len(keys(production_db, "orderbook_deltas", DELTA_KEY)) == len(truth_deltas(60)):
                    break
                assert worker.poll() is None, log.read_text()[-2000:]
                time.sleep(0.3)
            assert keys(production_db, "orderbook_deltas", DELTA_KEY) == truth_deltas(60)
            assert any(b"scheduler" in c for c in seen_cmdlines)  # the scheduler process was seen
            assert not any(secret.encode() in c for c in seen_cmdlines)
        finally:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)  # the worker, its job horse and the scheduler
                worker.wait(10)
                raise
        assert secret not in log.read_text()  # nor in anything it logged
    finally:
        redis_srv.stop()


def test_batches_cross_servers_byte_exact_and_a_miscounted_batch_is_refused(
    three: dict[str, str], production_db: str
) -> None:
    """Dedup moves batches as COPY data from the source server to production's: text outside ASCII or with
    tabs, newlines and backslashes, jsonb, arrays and NULLs arrive exactly; a batch whose COPY does not hold
    the rows it was counted with (the source changed between the two statements) is refused whole, and the
    cursor stays."""
    from dedup._sync import SPEC_OF_TABLE, _read_batch
    from writers import BatchInserter

    title = "Hôtel «Zürich» ≥ 40°F — 東京 🙂\ta\\tb\nc\\N \\."
    raw = json.dumps({"title": title, "nested": {"n": [1, 2.5, None]}}, ensure_ascii=False)
    m = Market("g1", 5, 5, "KXÉ-1", "E1", "S1", "binary", "active", title, 1, 2, 3, 1000, 4, 5, 6, 7, 8, None, raw)
    snap = OrderbookSnapshot("g1", DAY0, None, "M1", None, "rest", None, None, [(48_000, 120)], [])
    store(three["g1"], [m])
    store(three["g1"], [snap])
    sync_all(dedup_config(production_db, {"g1": three["g1"]}))
    cols = "ticker, title, raw, open_time_us, result"
    assert keys(production_db, "markets", cols) == keys(three["g1"], "markets", cols)
    assert keys(production_db, "markets", "raw->'nested'->'n'")[0][0] == [1, 2.5, None]
    cols = "market_ticker, yes_bid_prices, yes_bid_sizes, no_bid_prices, no_ask_prices, sid, seq"
    assert keys(production_db, "orderbook_snapshots", cols) == [("M1", [48_000], [120], [], [52_000], None, None)]

    store(three["g1"], as_records(truth_deltas(40), "g1"))
    spec = SPEC_OF_TABLE["orderbook_deltas"]
    with psycopg.connect(three["g1"]) as src, psycopg.connect(production_db) as prod:
        batch = _read_batch(src, spec, ("0", 0), 10)
        assert batch is not None
        _end, n, data = batch
        assert n == 10
        with pytest.raises(psycopg.DataError, match="COPY read 10 rows, the batch has 11"):
            with prod.transaction():
                BatchInserter().insert_copied(prod, spec, data, n + 1)
        assert prod.execute("SELECT count(*) FROM orderbook_deltas").fetchone() == (0,)
        with prod.transaction():
            assert BatchInserter().insert_copied(prod, spec, data, n) == 10
        with prod.transaction():
            assert BatchInserter().insert_copied(prod, spec, data, n) == 0  # the staging path: all conflict
