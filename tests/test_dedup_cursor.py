"""The dedup cursor (ingest_xid, ingest_id) where review found it broken: ids across powers of ten (they were
once sorted as text), ids far past 2^32, and random interleavings of writer transactions that commit, abort
or stay open across sync rounds. Gatherer databases on plain PostgreSQL and on TimescaleDB."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dedup import sync_table
from dedup._sync import SPEC_OF_TABLE, batch_end_sql, batch_rows_sql
from tests.dedupkit import DAY0, keys
from tests.services import TempDatabases, new_gatherer_db

BURN = """CREATE OR REPLACE PROCEDURE kd_test_burn_xids(n integer) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..n LOOP
        PERFORM pg_current_xact_id();
        COMMIT;
    END LOOP;
END $$"""


def current_xid(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_current_xact_id()::text").fetchone()
    conn.rollback()
    assert row is not None
    return int(row[0])


def burn_xids(dsn: str, n: int) -> None:
    """Consume n transaction ids (one committed transaction each) on the database's cluster."""
    if n <= 0:
        return
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(BURN)
        conn.execute("CALL kd_test_burn_xids(%s)", (n,))


def burn_xids_past(dsn: str, target: int) -> None:
    with psycopg.connect(dsn) as conn:
        now = current_xid(conn)
    burn_xids(dsn, target - now + 1)


TRADE_INSERT = (
    "INSERT INTO trades (trade_id, market_ticker, exchange_ts_us, yes_price, no_price, count, source, received_us, "
    "gatherer_id{xid_col}) VALUES (%s, 'KXT-1', %s, 40000, 60000, 100, 'ws', %s, 'g1'{xid_val})"
)


def insert_trade(conn: psycopg.Connection[Any], trade_id: str, ts_us: int, xid: int | None = None) -> None:
    if xid is None:
        conn.execute(TRADE_INSERT.format(xid_col="", xid_val=""), (trade_id, ts_us, ts_us))
    else:
        conn.execute(
            TRADE_INSERT.format(xid_col=", ingest_xid", xid_val=", %s::xid8"), (trade_id, ts_us, ts_us, str(xid))
        )


def sync_until_caught_up(source: str, prod: str, batch_size: int, rounds: int = 1000) -> int:
    """Sync rounds of one batch each, as often as it takes; returns how many rounds."""
    with psycopg.connect(source) as src, psycopg.connect(prod) as dst:
        for n in range(1, rounds + 1):
            if sync_table("g1", src, dst, "trades", batch_size, max_batches=1).caught_up:
                return n
    raise AssertionError("never caught up")


BOUNDARY_XIDS = [*range(9_990, 10_006), *range(99_990, 100_003)]


@pytest.mark.parametrize("batch_size", [1, 2, 4, 7])
def test_ids_across_powers_of_ten_arrive_exactly_once(
    gatherer_server: TempDatabases, production_db: str, batch_size: int
) -> None:
    """Rows of transactions 9,990 ... 10,005 and 99,990 ... 100,002 (three each): sorted as text, a batch took
    "10000" before "9990" and the cursor stepped past the shorter ids for good."""
    src = new_gatherer_db(gatherer_server)
    burn_xids_past(src, max(BOUNDARY_XIDS) + 10)  # every row's transaction is then older than the snapshot
    expected = []
    with psycopg.connect(src) as conn:
        for i, xid in enumerate(BOUNDARY_XIDS):
            for k in range(3):
                tid = f"t{xid}-{k}"
                insert_trade(conn, tid, DAY0 + i * 1000 + k, xid)
                expected.append((tid,))
        conn.commit()
    sync_until_caught_up(src, production_db, batch_size)
    got = keys(production_db, "trades", "trade_id")
    assert got == sorted(expected)
    with psycopg.connect(production_db) as conn:
        row = conn.execute(
            "SELECT last_xid::text, rows_synced FROM sync_cursors WHERE table_name = 'trades'"
        ).fetchone()
    assert row == (str(max(BOUNDARY_XIDS)), len(expected))


FAR_XIDS = [
    9,
    10,
    99,
    100,
    2**31 - 1,
    2**31,
    2**32 - 1,
    2**32,
    2**32 + 1,
    9_999_999_999,
    10_000_000_000,
    2**40,
    10**15,
    2**62,
    2**63 - 1,
]


def test_batch_order_is_numeric_far_past_2_to_the_32(gatherer_db: str) -> None:
    """xid8 values far beyond any test cluster's (the snapshot guard cannot be reached there, so the ordering
    is tested on its own): paging with the cursor visits every row once, in numeric order."""
    spec = SPEC_OF_TABLE["trades"]
    end_sql, rows_sql = batch_end_sql(spec, guard="true"), batch_rows_sql(spec)
    ids = [(xid, k) for xid in reversed(FAR_XIDS) for k in range(2)]  # inserted in reverse order
    with psycopg.connect(gatherer_db) as conn:
        for n, (xid, k) in enumerate(ids):
            insert_trade(conn, f"t{xid}-{k}", DAY0 + n, xid)
        conn.commit()
        for batch in (1, 2, 3, 5):
            seen: list[int] = []
            last: tuple[str, int] = ("0", 0)
            while (end := conn.execute(end_sql, (*last, batch)).fetchone()) is not None:
                xids = [
                    xid
                    for (xid,) in conn.execute(
                        f"SELECT src.ingest_xid::text FROM ({rows_sql}) b JOIN trades AS src USING (trade_id)",
                        (*last, end[0], end[1]),
                    )
                ]
                assert len(xids) == end[2] <= batch, (batch, last, end)
                assert end[0] in xids
                seen += sorted(map(int, xids))
                last = (end[0], end[1])
            conn.rollback()
            assert seen == sorted(x for x, _ in ids), batch


# ---- property: random interleavings of writer transactions and sync rounds ------------------------------------


@dataclass
class Model:
    """Writer transactions by connection index: the trade ids each open one has inserted."""

    open: dict[int, list[str]] = field(default_factory=dict)
    committed: set[str] = field(default_factory=set)
    aborted: set[str] = field(default_factory=set)
    next_id: int = 0


OPS = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 2), st.integers(1, 5)),
    st.tuples(st.just("commit"), st.integers(0, 2), st.just(0)),
    st.tuples(st.just("abort"), st.integers(0, 2), st.just(0)),
    st.tuples(st.just("sync"), st.integers(1, 6), st.integers(1, 3)),
    st.tuples(st.just("burn"), st.integers(1, 400), st.just(0)),
)


@pytest.fixture
def cursor_dbs(gatherer_server: TempDatabases, production_db: str) -> Iterator[tuple[str, str]]:
    src = new_gatherer_db(gatherer_server)
    with psycopg.connect(src, autocommit=True) as conn:
        conn.execute(BURN)
    yield src, production_db


MAX_BURN = 2_000_000  # about 8 s on this machine; past 10^7 a cluster's next power of ten costs more


def burn_to_before_power_of_ten(dsn: str, before: int) -> None:
    """Bring the cluster's transaction ids to `before` short of the next power of ten, where affordable: the
    digit boundary where a text ordering goes wrong then falls inside the example."""
    with psycopg.connect(dsn) as conn:
        now = current_xid(conn)
    target = 10 ** len(str(now)) - before
    if 0 < target - now <= MAX_BURN:
        burn_xids(dsn, target - now)


# Writer transactions whose ids straddle a power of ten, synced one row per batch: under the text ordering
# the first batch took "10000" before "9999" and the cursor left 9998 and 9999 behind for good. Explicit
# examples run first, so every session tries it (the TimescaleDB cluster is young: 10^4 ... 10^6 are near).
CROSSING = [
    ("insert", 0, 2),
    ("commit", 0, 0),
    ("insert", 1, 2),
    ("commit", 1, 0),
    ("insert", 2, 2),
    ("commit", 2, 0),
    ("insert", 0, 2),
    ("commit", 0, 0),
    ("sync", 1, 1),
    ("sync", 2, 1),
]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(ops=CROSSING, id_digits=3, id_before=2, xid_before=2)
@example(ops=CROSSING, id_digits=7, id_before=3, xid_before=3)
@given(
    ops=st.lists(OPS, min_size=1, max_size=40),
    # ingest ids start just short of a power of ten (10 ... 10^12), so batches straddle a digit boundary
    id_digits=st.integers(1, 12),
    id_before=st.integers(1, 30),
    xid_before=st.none() | st.integers(1, 12),
)
def test_cursor_equals_union_of_committed_rows_under_any_interleaving(
    cursor_dbs: tuple[str, str],
    ops: list[tuple[str, int, int]],
    id_digits: int,
    id_before: int,
    xid_before: int | None,
) -> None:
    src, prod = cursor_dbs
    with psycopg.connect(src, autocommit=True) as conn:
        conn.execute("TRUNCATE trades")
        conn.execute("SELECT setval('kd_ingest_seq', %s)", (max(1, 10**id_digits - id_before),))
        # TimescaleDB: the transaction that creates a chunk holds a lock other inserts wait on until it ends;
        # writers' transactions are short, these stay open, so the chunk is made (and emptied) first
        insert_trade(conn, "warm", DAY0)
        conn.execute("DELETE FROM trades")
    with psycopg.connect(prod, autocommit=True) as conn:
        conn.execute("TRUNCATE trades")
        conn.execute("DELETE FROM sync_cursors")
    if xid_before is not None:
        burn_to_before_power_of_ten(src, xid_before)
    m = Model()
    writers = [psycopg.connect(src) for _ in range(3)]
    try:
        with psycopg.connect(src) as reader, psycopg.connect(prod) as dst:
            for op, a, b in ops:
                if op == "insert":
                    for _ in range(b):
                        tid = f"t{m.next_id}"
                        m.next_id += 1
                        insert_trade(writers[a], tid, DAY0 + m.next_id)
                        m.open.setdefault(a, []).append(tid)
                elif op in ("commit", "abort"):
                    (writers[a].commit if op == "commit" else writers[a].rollback)()
                    (m.committed if op == "commit" else m.aborted).update(m.open.pop(a, []))
                elif op == "sync":
                    sync_table("g1", reader, dst, "trades", batch_size=a, max_batches=b)
                    stored = {r[0] for r in keys(prod, "trades", "trade_id")}
                    assert stored <= m.committed  # never a row of an open or aborted transaction
                else:
                    burn_xids(src, a)
            for i, w in enumerate(writers):  # the rest end, some committed, some not
                (w.commit if i % 2 == 0 else w.rollback)()
                (m.committed if i % 2 == 0 else m.aborted).update(m.open.pop(i, []))
            assert sync_table("g1", reader, dst, "trades", batch_size=3).caught_up  # no max_batches: to the end
        stored_rows = keys(prod, "trades", "trade_id")
        assert len(stored_rows) == len({r[0] for r in stored_rows})  # each once
        assert {r[0] for r in stored_rows} == m.committed
    finally:
        for w in writers:
            w.close()
