"""Knowing production is exact where there is no ledger, on the whole platform against the simulator:
- a silent exchange-side loss (a delta never sent, the sequence running on without a gap) is flagged by the
  book audit at that market's first REST snapshot it can judge, naming the level, and no other market's
  audit mismatches;
- every gatherer killed (-9) at once for a few seconds: the outage is known, its trades come back from REST
  and production's trades equal the ledger's, each once; the books stay a recorded coverage gap;
- a delta the exchange lost for every subscriber (a seq gap everywhere): exactly it is missing, inside a
  recorded coverage gap, and the book is exact again after the resubscribes;
- one gatherer killed and restarted: against the one that ran on, it lacks nothing outside what it knows."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from dedup import rebuild_book
from devstack import Pipeline, PipelineOptions
from simulator import FaultSchedule, WsFault, compare_with_ledger
from tests.services import ADMIN_DSN, PrivateRedis
from tests.truthkit import deltas_lacking, outside_unverified_gaps

pytestmark = pytest.mark.slow


def options(tmp_path: Path, redis_url: str, **kw: Any) -> PipelineOptions:
    return PipelineOptions(
        db_prefix=f"kd_truth_{uuid.uuid4().hex[:8]}",
        admin_dsn=ADMIN_DSN,
        redis_url=redis_url,
        run_dir=tmp_path / "run",
        lake=tmp_path / "lake",
        sync_interval_s=1,
        export_interval_s=3600,
        lifecycle_interval_s=2,
        **kw,
    )


def drop_databases(prefix: str, gids: list[str]) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        for name in ["prod", *gids]:
            conn.execute(f'DROP DATABASE IF EXISTS "{prefix}_{name}" WITH (FORCE)')


def the_fault(p: Pipeline, kind: str) -> tuple[int, dict[str, Any]]:
    """The one fault of that kind the simulator logged: when, and the message it hit."""
    assert p.sim is not None
    hits = [f for f in p.sim.ledger.faults() if f[2] == kind]
    assert len(hits) == 1, p.sim.ledger.faults()
    body: dict[str, Any] = orjson.loads(hits[0][3])
    return hits[0][0], body


async def run_and_drain(p: Pipeline, seconds: float) -> None:
    await p.start()
    await asyncio.sleep(seconds)
    await p.drain(timeout_s=60)


async def test_a_silent_loss_is_flagged_by_the_book_audit(private_redis: PrivateRedis, tmp_path: Path) -> None:
    faults = FaultSchedule(ws=[WsFault(kind="drop_delta", channel="orderbook_delta", connection=1, after_s=4)])
    opts = options(
        tmp_path, private_redis.url, markets=80, active=40, rate=30, seed=5, gatherers=1, faults=faults,
        poll_interval_s=1.0, audit_window_s=0.3,
    )  # fmt: skip
    p = Pipeline(opts)
    try:
        await run_and_drain(p, 16)
        at_us, body = the_fault(p, "dropped_delta")
        market, side = body["market_ticker"], body["side"]
        price = int(Decimal(body["price_dollars"]) * 100_000)
        with psycopg.connect(p.prod_dsn) as conn:
            rows = conn.execute(
                "SELECT market_ticker, rest_received_us, result, differing FROM book_audits ORDER BY 2"
            ).fetchall()
        judged = [r for r in rows if r[2] in ("matched", "mismatched")]
        assert len({r[0] for r in judged}) >= 10, rows  # the audit ran over many markets
        # no false alarm: every mismatch is the market that lost a delta, and only after the loss
        assert {(r[0], r[1] > at_us) for r in rows if r[2] == "mismatched"} == {(market, True)}
        after = [r for r in judged if r[0] == market and r[1] > at_us]
        assert after and after[0][2] == "mismatched", after  # its first judged read after the loss
        assert {"side": side, "price": price} in [{"side": d["side"], "price": d["price"]} for d in after[0][3]]
    finally:
        await p.stop()
        drop_databases(opts.db_prefix, ["g1"])


async def test_a_delta_the_exchange_lost_for_everyone_is_a_coverage_gap(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    """Kalshi loses one delta for every subscriber (each subscription skips a seq): no gatherer can have
    it, so production lacks exactly that delta, and says so: a coverage gap of its market that starts no
    later than the loss and ends at the resubscribes' snapshots; after them the book is exact again."""
    faults = FaultSchedule(ws=[WsFault(kind="lose_delta", channel="orderbook_delta", connection=1, after_s=4)])
    opts = options(tmp_path, private_redis.url, markets=80, active=40, rate=200, seed=13, gatherers=2, faults=faults)
    p = Pipeline(opts)
    try:
        await run_and_drain(p, 9)
        _, body = the_fault(p, "lost_delta")
        market, lost_ts = body["market_ticker"], body["ts_ms"] * 1000
        assert p.sim is not None
        report = compare_with_ledger(p.sim.ledger, p.prod_dsn, examples=3)
        assert report["orderbook_deltas"]["missing"] == 1, report["orderbook_deltas"]
        assert report["orderbook_deltas"]["missing_keys"][0][:2] == (market, lost_ts)
        assert all(
            v["missing"] == v["extra"] == v["differing"] == 0 for k, v in report.items() if k != "orderbook_deltas"
        )
        assert report["orderbook_deltas"]["extra"] == report["orderbook_deltas"]["differing"] == 0
        with psycopg.connect(p.prod_dsn) as conn:
            gaps = conn.execute(
                "SELECT from_us, to_us FROM coverage_gaps WHERE market_ticker = %s AND channel = 'orderbook_delta'",
                (market,),
            ).fetchall()
            covering = [(f, t) for f, t in gaps if f <= lost_ts < t]
            assert covering, (gaps, lost_ts)
            assert rebuild_book(conn, market, lost_ts + 1, start="first")["inside_coverage_gap"]
            after = max(t for _, t in covering) + 500_000
            book = rebuild_book(conn, market, after)
        truth = p.sim.ledger.book_at(market, after)
        assert truth is not None and not book["inside_coverage_gap"]
        assert dict(book["yes"]) == truth.yes and dict(book["no"]) == truth.no
    finally:
        await p.stop()
        drop_databases(opts.db_prefix, ["g1", "g2"])


async def test_a_trade_the_exchange_lost_for_everyone_comes_back_from_rest(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    """Kalshi loses one trade for every subscriber (each trade subscription skips a seq). Trades, unlike
    deltas, can be fetched again: each gatherer refills the gap's stretch from REST, so production holds
    every trade once, that one from REST, and the trade coverage gap (every gatherer had it) is healed."""
    faults = FaultSchedule(ws=[WsFault(kind="lose_trade", channel="trade", connection=1, after_s=4)])
    opts = options(tmp_path, private_redis.url, markets=80, active=40, rate=200, seed=17, gatherers=2, faults=faults)
    p = Pipeline(opts)
    try:
        await run_and_drain(p, 9)
        trade_id = the_fault(p, "lost_trade")[1]["trade_id"]
        assert p.sim is not None and p.dedup_cfg is not None
        from dedup import sync_all

        healed: list[tuple[Any, ...]] = []
        for _ in range(60):  # the refill runs beside capture
            await asyncio.to_thread(sync_all, p.dedup_cfg)
            healed = _rows(p.prod_dsn, "SELECT trades_healed_us FROM coverage_gaps WHERE channel = 'trade'")
            if healed and all(h[0] is not None for h in healed):
                break
            await asyncio.sleep(0.5)
        assert healed and all(h[0] is not None for h in healed), healed
        report = compare_with_ledger(p.sim.ledger, p.prod_dsn, examples=3)
        assert report["trades"]["missing"] == report["trades"]["extra"] == report["trades"]["differing"] == 0, report
        assert _rows(p.prod_dsn, f"SELECT source FROM trades WHERE trade_id = '{trade_id}'") == [("rest",)]
        outages = _rows(p.prod_dsn, "SELECT gatherer_id, healed_us FROM capture_outages WHERE reason = 'seq_gap'")
        assert {o[0] for o in outages} == {"g1", "g2"} and all(o[1] is not None for o in outages), outages
    finally:
        await p.stop()
        drop_databases(opts.db_prefix, ["g1", "g2"])


@pytest.mark.parametrize("sweep_s", [2.0, 0.0])
async def test_a_trade_lost_without_a_seq_gap_comes_back_from_the_rest_sweep(
    private_redis: PrivateRedis, tmp_path: Path, sweep_s: float
) -> None:
    """Trade frames without seq (as some Kalshi connections send them): a trade the exchange loses for every
    subscriber leaves no gap to see. The gatherers' periodic REST sweep stores it anyway; without the sweep
    (0) production lacks it, which shows the sweep is what brought it."""
    faults = FaultSchedule(ws=[WsFault(kind="lose_trade", channel="trade", connection=1, after_s=3)])
    opts = options(
        tmp_path, private_redis.url, markets=80, active=40, rate=200, seed=19, gatherers=2, faults=faults,
        sim_seq_on_all_channels=False, trade_sweep_s=sweep_s,
    )  # fmt: skip
    p = Pipeline(opts)
    try:
        await run_and_drain(p, 9)  # the loss at 3 s, swept by 5 s (2 s behind), every 2 s
        trade_id = the_fault(p, "lost_trade")[1]["trade_id"]
        assert p.sim is not None
        report = compare_with_ledger(p.sim.ledger, p.prod_dsn, examples=3)["trades"]
        stored = _rows(p.prod_dsn, f"SELECT source FROM trades WHERE trade_id = '{trade_id}'")
        if sweep_s:
            assert report["missing"] == report["extra"] == report["differing"] == 0, report
            assert stored == [("rest",)]
        else:
            assert report["missing"] == 1 and stored == [], report
        gaps = _rows(p.dsns["g1"], "SELECT count(*) FROM sequence_gaps WHERE channel = 'trade'")
        assert gaps == [(0,)]  # nothing showed the loss
    finally:
        await p.stop()
        drop_databases(opts.db_prefix, ["g1", "g2"])


async def test_every_gatherer_down_at_once_trades_come_back_from_rest(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    opts = options(
        tmp_path, private_redis.url, markets=80, active=40, rate=150, seed=9, gatherers=2,
        gatherer_processes=frozenset({"g1", "g2"}),
    )  # fmt: skip
    p = Pipeline(opts)
    try:
        await p.start()
        await asyncio.sleep(4)
        p.kill_gatherer("g1")  # both hosts die together (kill -9): nobody captures anything
        p.kill_gatherer("g2")
        await asyncio.sleep(4)
        p.start_gatherer("g1")
        p.start_gatherer("g2")
        await p.wait_ready(["g1", "g2"])
        await asyncio.sleep(4)
        assert p.sim is not None and p.dedup_cfg is not None
        from dedup import sync_all

        await p.drain(timeout_s=60)
        healed = None
        for _ in range(120):  # the backfill runs beside capture: wait for the gap to be marked healed
            await asyncio.to_thread(sync_all, p.dedup_cfg)
            with psycopg.connect(p.prod_dsn) as conn:
                healed = conn.execute(
                    "SELECT from_us, to_us, trades_backfilled, trades_healed_us FROM coverage_gaps "
                    "WHERE channel = 'trade' AND market_ticker = ''"
                ).fetchall()
            if healed and all(h[3] is not None for h in healed):
                break
            await asyncio.sleep(0.5)
        assert healed and all(h[3] is not None for h in healed), healed
        # the gauge follows: the healed gap counts as healed, and no open one is left behind from before
        from core import metrics

        assert metrics.COVERAGE_GAPS.labels("trade", "open")._value.get() == 0
        assert metrics.COVERAGE_GAPS.labels("trade", "healed")._value.get() == len(healed)
        (from_us, to_us, backfilled, _), *_ = healed
        assert to_us - from_us >= 3_000_000 and backfilled > 0
        report = compare_with_ledger(p.sim.ledger, p.prod_dsn, examples=3)
        assert report["trades"]["missing"] == report["trades"]["extra"] == report["trades"]["differing"] == 0, report
        # every trade no WebSocket saw (neither gatherer database holds a 'ws' copy) lies within the recorded
        # outage, give or take the backfill's edge, and came back from REST. (Not "every trade inside the
        # outage": on a loaded machine a heartbeat runs late, and trades between the last beat and the kill
        # were seen on the WebSocket though the outage, which starts at the beat, covers them.)
        from gatherer._outages import EDGE_US

        ws_seen: set[str] = set()
        for dsn in p.dsns.values():
            with psycopg.connect(dsn) as conn:
                ws_seen |= {r[0] for r in conn.execute("SELECT trade_id FROM trades WHERE source = 'ws'")}
        missed = {r[0]: r[2] for r in p.sim.ledger.rows("trade") if r[0] not in ws_seen}
        assert len(missed) > 20
        outside = {t: ts for t, ts in missed.items() if not from_us - EDGE_US <= ts <= to_us + EDGE_US}
        assert outside == {}, (from_us, to_us, outside)
        blind = set(missed)
        with psycopg.connect(p.prod_dsn) as conn:
            rest = {r[0] for r in conn.execute("SELECT trade_id FROM trades WHERE source = 'rest'")}
        assert blind <= rest
        # deltas cannot be fetched: production lacks the stretch's, each inside an unverified gap of its market
        lacking = deltas_lacking(p.sim.ledger, p.prod_dsn)
        assert len(lacking) > 0 and outside_unverified_gaps(lacking, p.prod_dsn) == []
    finally:
        await p.stop()
        drop_databases(opts.db_prefix, ["g1", "g2"])


def _rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()


async def test_a_restarted_gatherer_misses_only_what_its_outage_says(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    """One gatherer killed (-9) and restarted while another captures on. Compared with the one that ran on, the
    restarted one lacks nothing outside what it knows: its trades are complete (the restart's capture outage,
    from a second before its last heartbeat, came back from REST), a delta it lacks was received inside the
    outage or before its fresh snapshot of that market, and a ticker it lacks inside the outage."""
    opts = options(
        tmp_path, private_redis.url, markets=80, active=40, rate=150, seed=13, gatherers=2,
        gatherer_processes=frozenset({"g2"}),
    )  # fmt: skip
    p = Pipeline(opts)
    try:
        await p.start()
        await asyncio.sleep(4)
        p.kill_gatherer("g2")
        await asyncio.sleep(3)
        p.start_gatherer("g2")
        await p.wait_ready(["g2"])
        await asyncio.sleep(4)
        await p.drain(timeout_s=60)
        g1, g2 = p.dsns["g1"], p.dsns["g2"]
        outage: list[tuple[Any, ...]] = []
        for _ in range(120):  # the backfill runs beside capture
            outage = _rows(g2, "SELECT from_us, to_us, healed_us FROM capture_outages WHERE channel = '*'")
            if outage and all(o[2] is not None for o in outage):
                break
            await asyncio.sleep(0.5)
        await p.drain(timeout_s=60)
        assert len(outage) == 1 and outage[0][2] is not None, outage
        lo, hi, _ = outage[0]
        assert hi - lo >= 3_000_000  # the three seconds it was dead, and the margin before its last beat

        trades = "SELECT trade_id FROM trades"
        assert {r[0] for r in _rows(g1, trades)} <= {r[0] for r in _rows(g2, trades)}
        assert _rows(g2, "SELECT count(*) FROM trades WHERE source = 'rest'")[0][0] > 0

        key = "market_ticker, exchange_ts_us, side, price, delta, occurrence"
        mine = set(_rows(g2, f"SELECT {key} FROM orderbook_deltas"))
        lacking = [r for r in _rows(g1, f"SELECT {key}, received_us FROM orderbook_deltas") if r[:-1] not in mine]
        assert lacking, "the dead gatherer missed deltas"
        fresh = dict(
            _rows(
                g2,
                f"SELECT market_ticker, min(received_us) FROM orderbook_snapshots WHERE source = 'ws' "
                f"AND received_us > {lo} GROUP BY 1",
            )
        )
        late = [r for r in lacking if not lo <= r[-1] <= fresh.get(r[0], lo)]
        assert not late, late[:5]

        key = "market_ticker, exchange_ts_us, digest, occurrence"
        mine = set(_rows(g2, f"SELECT {key} FROM tickers"))
        lacking = [r for r in _rows(g1, f"SELECT {key}, received_us FROM tickers") if r[:-1] not in mine]
        assert lacking and all(lo <= r[-1] <= hi for r in lacking), [r for r in lacking if not lo <= r[-1] <= hi][:5]
    finally:
        await p.stop()
        drop_databases(opts.db_prefix, ["g1", "g2"])
