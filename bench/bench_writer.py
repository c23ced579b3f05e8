"""Writer rows/s per table, best of three runs each (XREADGROUP -> decode -> COPY -> COMMIT -> XACK)
against the ceiling measured in the same run: binary COPY of the same rows straight into the same table.
Target: at least 60% of that ceiling.

`python -m bench.bench_writer round`: client CPU of one writer round carrying one small entry (what a stream
costs per round whatever the event rate), against the bare round trips any writer needs in the same run:
XREADGROUP, COPY of the decoded rows, XACK."""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg
import redis
from psycopg.conninfo import conninfo_to_dict

from core.codec import PAYLOAD_FIELD, decode_batch, encode_batch
from core.config import WriterConfig
from core.records import Kind, OrderbookDelta, Ticker, Trade
from core.tables import SPECS
from devstack import fresh_database
from writers import StreamWriter, copy_rows

ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
REDIS_URL = "redis://127.0.0.1:6379/14"
T0 = int(time.time() * 1_000_000)


def records(kind: Kind, n: int) -> list[Any]:
    if kind is Kind.ORDERBOOK_DELTA:
        return [
            OrderbookDelta(
                "g1",
                T0 + i,
                T0 + i // 4 * 1000,
                f"KX-M{i % 500}",
                None,
                bool(i & 1),
                1000 * (i % 97 + 1),
                100 * (i % 50 + 1),
                0,
                1,
                i,
            )
            for i in range(n)
        ]
    if kind is Kind.TRADE:
        return [
            Trade(
                "g1",
                T0 + i,
                T0 + i * 10,
                f"KX-M{i % 500}",
                str(uuid.UUID(int=i)),
                52000,
                48000,
                500,
                True,
                "ask",
                True,
                False,
            )
            for i in range(n)
        ]
    return [
        Ticker(
            "g1",
            T0 + i,
            T0 + i * 10,
            f"KX-M{i % 500}",
            None,
            52000,
            51000,
            53000,
            100,
            200,
            5,
            10**6,
            10**5,
            5000,
            4000,
        )
        for i in range(n)
    ]


def fresh_db(role: str = "gatherer") -> str:
    """A new migrated database with today's partitions (devstack.fresh_database, as bench_pipeline)."""
    return fresh_database(ADMIN, f"kdbench_{uuid.uuid4().hex[:8]}", role)


def drop_db(dsn: str) -> None:
    name = conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def raw_copy(dsn: str, kind: Kind, recs: list[Any]) -> float:
    spec = SPECS[kind]
    rows = [spec.row(r) for r in recs]
    with psycopg.connect(dsn) as conn:
        conn.execute(f"TRUNCATE {spec.table}")
        conn.commit()
        t0 = time.perf_counter()
        with conn.cursor() as cur:
            copy_rows(cur, spec.table, spec, rows)
        conn.commit()
        dt = time.perf_counter() - t0
        conn.execute(f"TRUNCATE {spec.table}")
        conn.commit()
    return len(rows) / dt


def _fill(r: redis.Redis, stream: str, recs: list[Any], per_entry: int) -> None:
    pipe = r.pipeline(transaction=False)
    for i in range(0, len(recs), per_entry):
        pipe.xadd(stream, {PAYLOAD_FIELD: encode_batch(recs[i : i + per_entry])})
    pipe.execute()


def writer_rate(dsn: str, kind: Kind, recs: list[Any]) -> float:
    r = redis.Redis.from_url(REDIS_URL)
    stream = f"kdbench:{uuid.uuid4().hex[:6]}"
    _fill(r, stream, recs, 500)
    w = StreamWriter(r, dsn, stream, "bench", WriterConfig(batch_size=40, block_ms=10), f"{stream}:dead")
    w.ensure_group()
    t0 = time.perf_counter()
    while w.run_once():
        pass
    dt = time.perf_counter() - t0
    assert w.stats.rows_new[SPECS[kind].table] == len(recs)
    r.delete(stream)
    r.close()
    w.close()
    return len(recs) / dt


def round_cpu(rounds: int = 300, rows: int = 50) -> dict[str, Any]:
    """CPU µs per round of one `rows`-row delta entry: the writer's, and the bare round trips' (best of three)."""
    dsn = fresh_db()
    kind = Kind.ORDERBOOK_DELTA
    spec = SPECS[kind]
    r = redis.Redis.from_url(REDIS_URL)
    writer_us = floor_us = float("inf")
    try:
        for _ in range(3):
            recs = records(kind, rounds * rows)
            stream = f"kdbench:{uuid.uuid4().hex[:6]}"
            _fill(r, stream, recs, rows)
            cfg = WriterConfig(batch_size=1, block_ms=10, linger_ms=0)
            w = StreamWriter(r, dsn, stream, "bench", cfg, f"{stream}:dead")
            w.ensure_group()
            t0, done = time.process_time(), 0
            while done < rounds and (n := w.run_once()):
                done += n
            writer_us = min(writer_us, (time.process_time() - t0) / done * 1e6)
            w.close()
            r.delete(stream)
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f"TRUNCATE {spec.table}")
                _fill(r, stream, recs, rows)
                r.xgroup_create(stream, "floor", id="0")
                t0 = time.process_time()
                for _ in range(rounds):
                    got: Any = r.xreadgroup("floor", "c", {stream: ">"}, count=1)
                    ((entry_id, fields),) = got[0][1]
                    _, plain = decode_batch(fields[PAYLOAD_FIELD], plain={kind})
                    with conn.cursor() as cur:
                        copy_rows(cur, spec.table, spec, plain, record_order=True)
                    r.xack(stream, "floor", entry_id)
                floor_us = min(floor_us, (time.process_time() - t0) / rounds * 1e6)
                conn.execute(f"TRUNCATE {spec.table}")
            r.delete(stream)
    finally:
        r.close()
        drop_db(dsn)
    return {
        "rows_per_entry": rows,
        "writer_round_cpu_us": round(writer_us),
        "bare_round_trips_cpu_us": round(floor_us),
        "writer_vs_bare": round(floor_us / writer_us, 3),
    }


def run(n: int = 200_000) -> dict[str, Any]:
    dsn = fresh_db()
    out: dict[str, Any] = {"rows": n}
    try:
        for kind in (Kind.ORDERBOOK_DELTA, Kind.TRADE, Kind.TICKER):
            recs = records(kind, n)
            ceiling = rate = 0.0
            for _ in range(3):  # best of three, alternating, so both see the same machine state
                ceiling = max(ceiling, raw_copy(dsn, kind, recs))
                with psycopg.connect(dsn) as conn:
                    conn.execute(f"TRUNCATE {SPECS[kind].table}")
                rate = max(rate, writer_rate(dsn, kind, recs))
            table = SPECS[kind].table
            out[table] = {
                "writer_rows_per_s": round(rate),
                "raw_copy_rows_per_s": round(ceiling),
                "vs_ceiling": round(rate / ceiling, 3),
            }
    finally:
        drop_db(dsn)
    out["target"] = 0.6
    return out


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(round_cpu() if sys.argv[1:] == ["round"] else run()))
