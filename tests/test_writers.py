"""Writers with real Redis and PostgreSQL: exactly once through re-delivery, kill -9 before and after
COMMIT, takeover of a dead consumer's entries, poison records, PostgreSQL down for 20 s, trimming."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from core.codec import PAYLOAD_FIELD, encode_batch
from core.config import WriterConfig
from core.migrations import migrate
from core.records import OrderbookDelta, OrderbookSnapshot
from tests.services import REDIS_URL, PrivatePostgres
from writers import StreamWriter

REPO = Path(__file__).resolve().parents[1]
CFG = WriterConfig(batch_size=50, block_ms=50, claim_idle_ms=200, max_deliveries=3, replay_window_s=0)


@pytest.fixture
def r() -> Any:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def deltas(n: int, start: int = 0, per_entry: int = 10) -> list[list[OrderbookDelta]]:
    recs = [
        OrderbookDelta("g1", 5, 1_764_028_800_000_000 + i // 3, "T1", None, True, 50_000, 100, i % 3, 1, i)
        for i in range(start, start + n)
    ]
    return [recs[i : i + per_entry] for i in range(0, n, per_entry)]


def add(r: Any, stream: str, batches: list[list[Any]]) -> None:
    for b in batches:
        r.xadd(stream, {PAYLOAD_FIELD: encode_batch(b)})


def writer(r: Any, dsn: str, consumer: str = "c1", stream: str = "kd:g1:deltas") -> StreamWriter:
    w = StreamWriter(r, dsn, stream, consumer, CFG, "kd:g1:writer-deadletter")
    w.ensure_group()
    return w


def drain(w: StreamWriter, rounds: int = 100) -> None:
    for _ in range(rounds):
        if not w.run_once() and w.backlog()[0] == 0:
            return


def table_keys(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT market_ticker, exchange_ts_us, side, price, delta, occurrence FROM orderbook_deltas ORDER BY 2, 6"
        ).fetchall()


def expected_keys(n: int) -> list[tuple[Any, ...]]:
    return [("T1", 1_764_028_800_000_000 + i // 3, True, 50_000, 100, i % 3) for i in range(n)]


def test_batch_written_once_even_when_delivered_twice(r: Any, gatherer_db: str) -> None:
    add(r, "kd:g1:deltas", deltas(100))
    w = writer(r, gatherer_db)
    drain(w)
    assert table_keys(gatherer_db) == expected_keys(100)
    assert w.stats.rows_new["orderbook_deltas"] == 100
    add(r, "kd:g1:deltas", deltas(100))  # the same records again (a replayed spill, a re-sent entry)
    drain(w)
    assert table_keys(gatherer_db) == expected_keys(100)
    assert w.stats.rows_seen["orderbook_deltas"] == 200
    assert w.backlog()[0] == 0


def test_snapshot_rows_carry_bids_as_received_and_derived_asks(r: Any, gatherer_db: str) -> None:
    snap = OrderbookSnapshot(
        "g1",
        1_764_028_800_000_001,
        None,
        "T1",
        "u",
        "rest",
        None,
        None,
        [(44000, 2000), (45000, 10000)],
        [(50000, 300)],
    )
    add(r, "kd:g1:snapshots", [[snap]])
    drain(writer(r, gatherer_db, stream="kd:g1:snapshots"))
    with psycopg.connect(gatherer_db) as conn:
        row = conn.execute(
            "SELECT yes_bid_prices, yes_bid_sizes, no_bid_prices, yes_ask_prices, yes_ask_sizes, no_ask_prices,"
            " no_ask_sizes FROM orderbook_snapshots"
        ).fetchone()
    assert row == ([45000, 44000], [10000, 2000], [50000], [50000], [300], [55000, 56000], [10000, 2000])


def run_writer_process(cfg_path: Path, crash: str | None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "KD_WRITER_CRASH": crash} if crash else dict(os.environ)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "write",
            "--config",
            str(cfg_path),
            "--streams",
            "deltas",
            "--consumer",
            "victim",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=60,
    )


def config_file(tmp_path: Path, dsn: str) -> Path:
    d = psycopg.conninfo.conninfo_to_dict(dsn)
    p = tmp_path / "g.yaml"
    p.write_text(
        f"gatherer_id: g1\ndatabase: {{host: 127.0.0.1, port: {d['port']}, dbname: {d['dbname']}, user: postgres}}\n"
        f"redis: {{url: '{REDIS_URL}'}}\nwriter: {{batch_size: 10, block_ms: 50, claim_idle_ms: 200,"
        " max_deliveries: 3, metrics_port: 0}\n"
    )
    return p


@pytest.mark.parametrize("point", ["before_commit", "after_commit"])
def test_kill_9_mid_batch_then_takeover_leaves_exact_table(
    r: Any, gatherer_db: str, tmp_path: Path, point: str
) -> None:
    add(r, "kd:g1:deltas", deltas(500))
    proc = run_writer_process(config_file(tmp_path, gatherer_db), f"{point}:3")
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    pending: Any = r.xpending("kd:g1:deltas", "writers")
    assert pending["pending"] == 10  # the killed batch (10 entries of 10 records): read, never acknowledged
    with psycopg.connect(gatherer_db) as conn:
        written = conn.execute("SELECT count(*) FROM orderbook_deltas").fetchone()
    assert written == ((200,) if point == "before_commit" else (300,))
    time.sleep(CFG.claim_idle_ms / 1000 + 0.1)
    drain(writer(r, gatherer_db, consumer="rescuer"))
    assert table_keys(gatherer_db) == expected_keys(500)


def test_second_writer_takes_over_a_dead_consumers_pending_entries(r: Any, gatherer_db: str) -> None:
    add(r, "kd:g1:deltas", deltas(200))
    dead = writer(r, gatherer_db, consumer="dead")
    assert len(dead.read()) == 20  # delivered to "dead", which then never writes
    alive = writer(r, gatherer_db, consumer="alive")
    assert alive.run_once() == 0  # too early: the entries are not idle long enough
    time.sleep(CFG.claim_idle_ms / 1000 + 0.05)
    drain(alive)
    assert alive.stats.claimed == 20
    assert table_keys(gatherer_db) == expected_keys(200)


def test_poison_records_go_to_dead_letter_others_are_written(r: Any, gatherer_db: str) -> None:
    good = deltas(30)
    add(r, "kd:g1:deltas", good[:1])
    r.xadd("kd:g1:deltas", {PAYLOAD_FIELD: b"\x93\x01\x05garbage"})  # does not decode
    bad = OrderbookDelta("g1", 5, 1_764_028_800_000_000, None, None, True, 1, 1, 0, 1, 1)  # type: ignore[arg-type]
    add(r, "kd:g1:deltas", [[bad]])  # decodes, but market_ticker NULL violates NOT NULL
    add(r, "kd:g1:deltas", good[1:])
    w = writer(r, gatherer_db)
    for _ in range(CFG.max_deliveries + 2):
        drain(w, rounds=5)
        time.sleep(CFG.claim_idle_ms / 1000 + 0.05)
    drain(w)
    assert table_keys(gatherer_db) == expected_keys(30)
    dead: Any = r.xrange("kd:g1:writer-deadletter")
    errors = sorted(f[b"error"].decode().split(":")[0] for _, f in dead)
    assert errors == ["decode", "insert"]
    assert all(f[b"stream"] == b"kd:g1:deltas" and PAYLOAD_FIELD in f for _, f in dead)
    assert w.backlog()[0] == 0


@pytest.mark.slow
def test_postgres_down_20s_nothing_lost(r: Any, private_postgres: PrivatePostgres) -> None:
    with psycopg.connect(private_postgres.dsn, autocommit=True) as conn:
        conn.execute("CREATE DATABASE kd")
    dsn = private_postgres.dsn.replace("dbname=postgres", "dbname=kd")
    migrate(dsn, "gatherer")
    w = writer(r, dsn)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            w.run_once()

    t = threading.Thread(target=loop)
    t.start()
    add(r, "kd:g1:deltas", deltas(300))
    time.sleep(1)
    private_postgres.stop()
    for k in range(20):  # 20 s down, records keep arriving
        add(r, "kd:g1:deltas", deltas(30, 300 + 30 * k))
        time.sleep(1)
    assert w.stats.db_retries > 0
    private_postgres.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and w.backlog()[0]:
        time.sleep(0.2)
    stop.set()
    w.stop()
    t.join(10)
    assert table_keys(dsn) == expected_keys(900)


def test_trim_keeps_unacknowledged_and_window(r: Any, gatherer_db: str) -> None:
    base = int(time.time() * 1000) - 60_000
    for k, batch in enumerate(deltas(100)):  # 10 entries, 1 ms apart
        r.xadd("kd:g1:deltas", {PAYLOAD_FIELD: encode_batch(batch)}, id=f"{base + k}-0")
    small = WriterConfig(batch_size=5, block_ms=50, claim_idle_ms=60_000, replay_window_s=0)
    w = StreamWriter(r, gatherer_db, "kd:g1:deltas", "c1", small, "dl")
    w.ensure_group()
    w.run_once()  # entries 0-4 written and acknowledged
    StreamWriter(r, gatherer_db, "kd:g1:deltas", "slow", small, "dl").read()  # 5-9 delivered, pending
    windowed = StreamWriter(r, gatherer_db, "kd:g1:deltas", "c1", WriterConfig(replay_window_s=3600), "dl")
    assert windowed.trim() == 0  # everything is younger than the replay window
    assert w.trim() == 5  # window 0: only what every group acknowledged goes
    remaining: Any = r.xrange("kd:g1:deltas")
    assert [e[0] for e in remaining] == [f"{base + k}-0".encode() for k in range(5, 10)]


def test_lifecycle_copies_collapse_and_a_later_repeat_is_kept(gatherer_db: str) -> None:
    """No time, no id on the wire: copies of one message arrive together, a repeat of the event later."""
    from core.records import Kind, LifecycleEvent
    from core.tables import SPECS
    from writers._insert import copy_insert

    spec = SPECS[Kind.LIFECYCLE]
    minute = 60_000_000

    def paused(gatherer: str, received_us: int) -> tuple[Any, ...]:
        return spec.row(
            LifecycleEvent(gatherer, received_us, "M1", "deactivated", None, None, None, None, None, True, None)
        )

    t0 = 1_764_028_800_000_000
    with psycopg.connect(gatherer_db) as conn:
        # one batch: the redundant pair's two copies, and the same pause again ten minutes later
        batch = [paused("g1", t0), paused("g1", t0 + 3_000), paused("g1", t0 + 10 * minute)]
        assert copy_insert(conn, spec, batch) == 2
        conn.commit()
        # the batch delivered again, and another gatherer's copies: nothing new
        assert copy_insert(conn, spec, [paused("g1", t0), paused("g1", t0 + 10 * minute)]) == 0
        assert copy_insert(conn, spec, [paused("g2", t0 + 900_000), paused("g2", t0 + 10 * minute - 200_000)]) == 0
        # a third pause, in its own batch
        assert copy_insert(conn, spec, [paused("g2", t0 + 30 * minute)]) == 1
        conn.commit()
        rows = conn.execute("SELECT gatherer_id, received_us FROM lifecycle_events ORDER BY received_us").fetchall()
    assert rows == [("g1", t0), ("g1", t0 + 10 * minute), ("g2", t0 + 30 * minute)]


def test_a_lifecycle_message_repeated_within_a_minute_is_two_rows_copies_one(gatherer_db: str) -> None:
    """Paused, resumed, paused again within 20 s: the same `deactivated` message twice. Two redundant
    connections (two sids) and a second gatherer each number it 0 then 1, so their copies collapse and the
    repeat stays: two rows, where the 60 s window alone made one."""
    import orjson

    from core.records import Kind
    from core.tables import SPECS
    from router import FrameNormaliser, parse
    from writers._insert import copy_insert

    spec = SPECS[Kind.LIFECYCLE]
    t0 = 1_764_028_800_000_000
    paused = {"market_ticker": "M1", "event_type": "deactivated", "is_deactivated": True}
    resumed = {"market_ticker": "M1", "event_type": "activated", "open_ts": 1_764_028_810, "is_deactivated": False}
    rows = []
    for gatherer, skew in (("g1", 0), ("g2", 700_000)):
        n = FrameNormaliser(gatherer)
        for sid in (1, 2):  # the redundant pair
            for k, (msg, at) in enumerate(((paused, 0), (resumed, 10_000_000), (paused, 20_000_000))):
                frame = orjson.dumps({"type": "market_lifecycle_v2", "sid": sid, "seq": k + 1, "msg": msg})
                rows.append(spec.row(n.normalise(parse(frame), t0 + at + skew + sid * 1000)))
    with psycopg.connect(gatherer_db) as conn:
        assert copy_insert(conn, spec, rows) == 3
        conn.commit()
        stored = conn.execute("SELECT event_type, occurrence FROM lifecycle_events ORDER BY received_us").fetchall()
    assert stored == [("deactivated", 0), ("activated", 0), ("deactivated", 1)]


def test_rows_taken_in_record_order_store_what_built_rows_store(gatherer_db: str) -> None:
    """The writer COPYs deltas, trades, gaps and outages as decoded, naming the columns in the record's order;
    the same records through the table's row builder store the same rows, column for column."""
    from core.codec import decode_batch
    from core.records import CaptureBeat, CaptureOutage, Kind, SequenceGap, SubscriptionEnd, Trade
    from core.tables import SPECS
    from writers._insert import BatchInserter

    t0 = 1_764_028_800_000_000
    samples: dict[Kind, list[Any]] = {
        Kind.ORDERBOOK_DELTA: [
            OrderbookDelta(
                "g1",
                t0 + 7,
                t0 + i,
                f"M{i % 3}",
                "mid" if i % 2 else None,
                bool(i % 2),
                1 + i * 999,
                -(10**12) + i,
                i % 4,
                2**31 - 1 - i,
                2**40 + i,
                None if i % 3 else "co",
            )
            for i in range(40)
        ],
        Kind.TRADE: [
            Trade(
                "g2",
                t0 + 9,
                t0 + i,
                "M1",
                f"id-{i}",
                36000 + i,
                64000 - i,
                13600,
                None if i % 3 == 0 else bool(i % 2),
                "bid" if i % 2 else None,
                bool(i % 2),
                None if i % 2 else True,
                "rest" if i % 5 == 0 else "ws",
            )
            for i in range(40)
        ],
        Kind.SEQUENCE_GAP: [
            SequenceGap(
                gatherer_id="g1",
                detected_us=t0 + i,
                connection_id=f"c{i}",
                channel="orderbook_delta",
                sid=i,
                market_ticker="" if i % 2 else "M1",
                expected_seq=5 + i,
                got_seq=9 + i,
                kind="skip",
                since_us=t0,
            )
            for i in range(10)
        ],
        Kind.CAPTURE_OUTAGE: [
            CaptureOutage(
                gatherer_id="g1",
                updated_us=t0 + 10,
                channel="trade",
                from_us=t0 + i,
                to_us=t0 + i + 5,
                reason="redis",
                trades_backfilled=i,
                healed_us=None if i % 2 else t0 + 9,
                process_started_us=None if i % 3 else t0 + 2,
            )
            for i in range(10)
        ],
        Kind.SUBSCRIPTION_END: [
            SubscriptionEnd(
                "g1",
                t0 + 20 + i,
                f"g1:orderbook:{i % 2}",
                "orderbook_delta",
                2**24 + i,
                f"M{i}",
                ("disconnected", "stopped", "released")[i % 3],
                t0 + i,
            )
            for i in range(10)
        ],
        Kind.CAPTURE_BEAT: [CaptureBeat(f"g{i}", t0 + 30 + i, t0 + i) for i in range(10)],
    }
    assert {k for k, s in SPECS.items() if s.record_fields} == set(samples)  # every table the writer takes so
    ins = BatchInserter()
    with psycopg.connect(gatherer_db) as conn:
        for kind, recs in samples.items():
            spec = SPECS[kind]
            _, plain = decode_batch(encode_batch(recs), plain={kind})
            assert ins.insert(conn, spec, plain, record_order=True) == len(recs)
            cols = ", ".join(spec.columns)
            by_record = conn.execute(f"SELECT {cols} FROM {spec.table} ORDER BY {cols}").fetchall()
            conn.execute(f"DELETE FROM {spec.table}")
            assert ins.insert(conn, spec, [spec.row(r) for r in recs]) == len(recs)
            by_row = conn.execute(f"SELECT {cols} FROM {spec.table} ORDER BY {cols}").fetchall()
            assert by_record == by_row == sorted(spec.row(r) for r in recs), spec.table


def test_a_batch_alone_is_one_copy_and_a_conflict_writes_none_of_it(gatherer_db: str) -> None:
    """The writer's common case: a batch of one kind COPYs straight in on an autocommit connection, atomic
    alone. A batch overlapping stored rows is refused whole (nothing of it stays) and goes, like the table's
    next batches, to the staging path inside a transaction, which stores exactly the new rows."""
    from core.records import Kind
    from core.tables import SPECS
    from writers._insert import BatchInserter

    spec = SPECS[Kind.ORDERBOOK_DELTA]
    recs = [r for batch in deltas(60) for r in batch]
    ins = BatchInserter()
    with psycopg.connect(gatherer_db, autocommit=True) as conn:
        assert ins.insert_alone(conn, spec, recs[:20], record_order=True) == 20
        assert ins.insert_alone(conn, spec, recs[10:40], record_order=True) is None  # rows 10-19 are stored
        assert table_keys(gatherer_db) == expected_keys(20)
        assert ins.insert_alone(conn, spec, recs[40:50], record_order=True) is None  # on the staging path now
        with conn.transaction():
            assert ins.insert(conn, spec, recs[10:60], record_order=True) == 40
        assert table_keys(gatherer_db) == expected_keys(60)
        assert (ins.optimistic_hits, ins.conflicts) == (1, 1)
    with psycopg.connect(gatherer_db) as conn, pytest.raises(ValueError, match="autocommit"):
        ins.insert_alone(conn, spec, recs, record_order=True)
