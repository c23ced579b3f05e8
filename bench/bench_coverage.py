"""What a message Kalshi loses for everyone costs the coverage record, and what a resync costs a gatherer.

- `record`: lost deltas for every subscriber, every few seconds, on subscriptions of `markets_per_connection`
  markets. Production's record of them: unverified gap market-seconds per lost message, and verified ones,
  beside what the record before 2026-12-06 reported from the same evidence (every market of a subscription
  where every gatherer had a sequence gap, to each gatherer's next snapshot: their intersection, unverified) and
  beside the ceiling, the best any record could do: the lost messages' own markets, each from its unverified
  gap's start to the snapshot that ended it.
- `resync`: the deltas each gatherer lacks besides the lost ones: a resync's blind window. The exchange takes
  `spacing_s` between two commands of one connection (data flowing on), as a real one does; the ceiling is 0.
  The fault fires from a trade connection (never resubscribed), so the same file measures older code too.

`python -m bench.bench_coverage [seconds]`: one JSON document on stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg

from devstack import Pipeline, PipelineOptions
from simulator import FaultSchedule, WsFault

ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
REDIS = "redis://127.0.0.1:6379/13"
S = 1_000_000


def run(seconds: float = 30.0, every_s: float = 3.0, spacing_s: float = 0.01) -> dict[str, Any]:
    return asyncio.run(_run(seconds, every_s, spacing_s))


async def _run(seconds: float, every_s: float, spacing_s: float) -> dict[str, Any]:
    losses = int(seconds // every_s) - 1
    faults = FaultSchedule(
        ws=[WsFault(kind="lose_delta", channel="trade", connection=1, after_s=every_s * (k + 1)) for k in range(losses)]
    )
    prefix = f"kd_bench_cov_{uuid.uuid4().hex[:6]}"
    tmp = Path(tempfile.mkdtemp(prefix="kd-bench-cov-"))
    opts = PipelineOptions(
        markets=400, active=200, rate=800, seed=5, gatherers=2, db_prefix=prefix, admin_dsn=ADMIN, redis_url=REDIS,
        run_dir=tmp / "run", lake=tmp / "lake", faults=faults, sync_interval_s=1, export_interval_s=3600,
        markets_per_connection=50, ws_command_spacing_s=spacing_s, rq_worker=False, poll_interval_s=3600,
        lifecycle_interval_s=0,
    )  # fmt: skip
    p = Pipeline(opts)
    try:
        await p.start()
        await asyncio.sleep(seconds)
        await p.drain(timeout_s=120)
        await _settle(p)
        assert p.sim is not None
        lost = [json.loads(f[3]) for f in p.sim.ledger.faults() if f[2] == "lost_delta"]
        lost_keys = {
            (d["market_ticker"], d["ts_ms"] * 1000)
            for d in lost  # the lost delta's market and exchange time
        }
        result = {
            "benchmark_parameters": {"seconds": seconds, "every_s": every_s, "spacing_s": spacing_s,
                                     "markets_per_connection": opts.markets_per_connection, "gatherers": 2},
            "lost_messages": len(lost),
            "record": _record(p.prod_dsn, lost_keys, len(lost)),
            "resync": _resync(p, lost_keys),
        }  # fmt: skip
    finally:
        await p.stop()
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            for name in ("prod", "g1", "g2"):
                conn.execute(f'DROP DATABASE IF EXISTS "{prefix}_{name}" WITH (FORCE)')
    return result


async def _settle(p: Pipeline) -> None:
    """Sync rounds until the record's horizon passed the run's end (skipped on code without a record)."""
    import time

    from dedup import sync_all

    assert p.dedup_cfg is not None
    end, deadline = time.time_ns() // 1000, time.monotonic() + 60
    while time.monotonic() < deadline:
        res = await asyncio.to_thread(sync_all, p.dedup_cfg)
        coverage = res.get("coverage")
        if coverage is None or coverage["horizon_us"] >= end:
            return
        await asyncio.sleep(0.5)


def _record(prod: str, lost: set[tuple[str, int]], n_lost: int) -> dict[str, Any]:
    with psycopg.connect(prod) as conn:
        has_record = conn.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'coverage_gaps' "
            "AND column_name = 'verified_complete'"
        ).fetchone()
        gaps = (
            conn.execute(
                "SELECT market_ticker, from_us, to_us, verified_complete FROM coverage_gaps "
                "WHERE channel = 'orderbook_delta' AND to_us < 2^62"
            ).fetchall()
            if has_record and has_record[0]
            else []
        )
        before = _record_before(conn)
    unverified = [g for g in gaps if not g[3]]
    ideal = [g for g in unverified if any(m == g[0] and g[1] <= ts < g[2] for m, ts in lost)]
    per = max(n_lost, 1)
    return {
        "unverified_gaps": len(unverified),
        "unverified_market_seconds_per_lost": round(sum(g[2] - g[1] for g in unverified) / S / per, 3),
        "verified_gaps": len(gaps) - len(unverified),
        "verified_market_seconds_per_lost": round(sum(g[2] - g[1] for g in gaps if g[3]) / S / per, 3),
        "before_2026_12_06": {
            "gaps": len(before),
            "market_seconds_per_lost": round(sum(t - f for _, f, t in before) / S / per, 3),
        },
        "ceiling": {"gaps": len(ideal), "market_seconds_per_lost": round(sum(g[2] - g[1] for g in ideal) / S / per, 3)},
        "lost_inside_unverified_gaps": sum(any(m == g[0] and g[1] <= ts < g[2] for g in unverified) for m, ts in lost),
    }


def _record_before(conn: psycopg.Connection[Any]) -> list[tuple[str, int, int]]:
    """The book coverage gaps the record before 2026-12-06 derived from the same evidence: per market, each
    gatherer blind from a 'skip' row's since_us to its next WebSocket snapshot of the market; a gap where every
    gatherer was blind at once (no verification: every one of them counted)."""
    rows = conn.execute(
        """SELECT g.market_ticker, g.gatherer_id, COALESCE(g.since_us, g.detected_us),
                  (SELECT min(s.received_us) FROM orderbook_snapshots s WHERE s.market_ticker = g.market_ticker
                     AND s.gatherer_id = g.gatherer_id AND s.source = 'ws' AND s.received_us >= g.detected_us)
             FROM sequence_gaps g WHERE g.channel = 'orderbook_delta' AND g.kind = 'skip' AND g.market_ticker <> ''"""
    ).fetchall()
    sources = [r[0] for r in conn.execute("SELECT DISTINCT source FROM sync_cursors")]
    by: dict[str, dict[str, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
    for m, g, f, t in rows:
        by[m][g].append((f, t if t is not None else 2**62))
    out = []
    for m, per_source in by.items():
        if set(per_source) != set(sources):
            continue
        common = sorted(per_source[sources[0]])
        for g in sources[1:]:
            common = sorted(
                (max(a, c), min(b, d)) for a, b in common for c, d in per_source[g] if max(a, c) < min(b, d)
            )
        out += [(m, f, t) for f, t in common if t < 2**62]
    return out


def _resync(p: Pipeline, lost: set[tuple[str, int]]) -> dict[str, Any]:
    """Per gatherer: deltas it lacks that were not lost for everyone, and its resyncs."""
    assert p.sim is not None
    ledger = p.sim.ledger.rows("delta")
    out: dict[str, Any] = {"ceiling_missed_per_resync": 0}
    for gid, dsn in p.dsns.items():
        with psycopg.connect(dsn) as conn:
            have = set(
                conn.execute(
                    "SELECT market_ticker, exchange_ts_us, side, price, delta, occurrence FROM orderbook_deltas"
                )
            )
            resyncs = conn.execute(
                "SELECT count(DISTINCT (connection_id, sid, detected_us)) FROM sequence_gaps "
                "WHERE channel = 'orderbook_delta' AND kind = 'skip'"
            ).fetchone()
        missed = [r for r in ledger if r not in have and (r[0], r[1]) not in lost]
        n = int(resyncs[0]) if resyncs else 0
        out[gid] = {"resyncs": n, "missed_besides_lost": len(missed),
                    "missed_per_resync": round(len(missed) / n, 2) if n else None}  # fmt: skip
    return out


if __name__ == "__main__":
    print(json.dumps(run(float(sys.argv[1]) if len(sys.argv) > 1 else 30.0)))
