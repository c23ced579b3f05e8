"""Gatherer II against the simulator: every market subscribed, nothing missed on a clean run, every
injected fault detected, recorded and healed."""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson

from core.records import OrderbookDelta, OrderbookSnapshot, SequenceGap, Ticker, Trade
from gatherer._connection import WsConnection
from gatherer._seq import MAX_MISSING, SeqTracker
from router import MemorySink
from simulator import FaultSchedule, WsFault, diff_rows
from tests.gatherkit import FAST_WS, canonical, rebuilt_books, start_gatherer, stop_gatherer
from tests.simkit import running_sim


async def run_market(sim, seconds: float) -> None:  # type: ignore[no-untyped-def]
    sim._engine = asyncio.create_task(sim.engine())
    await asyncio.sleep(seconds)
    await sim.pause()
    await asyncio.sleep(0.5)  # let the last frames arrive


async def test_clean_run_captures_every_event_exactly() -> None:
    async with running_sim(rate=2000, markets=200, active=25, duplicate_rate=0.1, lifecycle_interval_s=0.1) as sim:
        await sim.pause()
        sink = MemorySink()
        reg, pool, task = await start_gatherer(sim, sink)
        assert len(pool.orderbook) >= 15  # 10 markets per connection in this test
        assert len(pool.globals) == 8  # two each of ticker, trade, market and multivariate lifecycle
        await run_market(sim, 2.0)
        await stop_gatherer(reg, pool, task)
    got = canonical(sink.records)
    ledger = sim.ledger
    for kind in ("delta", "trade", "ticker", "lifecycle"):
        diff = diff_rows(set(ledger.rows(kind)), got[kind])
        assert diff == {"missing": [], "extra": []}, (kind, len(diff["missing"]), len(diff["extra"]))
    assert len(got["delta"]) > 1000
    books = rebuilt_books(sink.records)
    end = sim.exchange.last_ts_us
    for t, book in books.items():
        truth = ledger.book_at(t, end)
        assert truth is not None and (book.yes, book.no) == (truth.yes, truth.no), t
    assert not sink.dead


async def test_twin_connections_route_each_trade_and_ticker_once_while_one_of_them_is_down() -> None:
    """Both connections of a redundant pair receive every trade and ticker; the first copy reaches the sink and
    the other is dropped (router.CopyFilter), and what one twin lost or missed while cut, the other's copy
    stands for: the sink holds every trade and ticker of the ledger exactly once."""
    faults = FaultSchedule(
        ws=[
            # each twin cut in turn: whichever one's copies arrive first, the other's stand in while it is away
            *(WsFault(kind="close", channel=c, connection=1, after_messages=40) for c in ("trade", "ticker")),
            *(WsFault(kind="close", channel=c, connection=2, after_messages=150) for c in ("trade", "ticker")),
        ]
    )
    async with running_sim(rate=1500, markets=120, active=60, faults=faults) as sim:
        await sim.pause()
        sink = MemorySink()
        reg, pool, task = await start_gatherer(sim, sink)
        await run_market(sim, 3.0)
        stats = {c.conn_id: c.stats for c in pool.globals}
        await stop_gatherer(reg, pool, task)
    assert len({(f[1], f[2]) for f in sim.ledger.faults()}) == 4
    trades = Counter((r.trade_id, r.exchange_ts_us) for r in sink.records if isinstance(r, Trade))
    tickers = Counter((r.market_ticker, r.exchange_ts_us, r[5:]) for r in sink.records if isinstance(r, Ticker))
    assert max(trades.values()) == 1 and max(tickers.values()) == 1  # once each: no copy routed
    got = canonical(sink.records)
    for kind in ("trade", "ticker"):
        assert diff_rows(set(sim.ledger.rows(kind)), got[kind]) == {"missing": [], "extra": []}, kind
    assert len(trades) > 200 and len(tickers) > 200
    for channel, n in (("trade", len(trades)), ("ticker", len(tickers))):
        twins = [s for cid, s in stats.items() if f":{channel}:" in cid]
        # each record routed by the twin it reached first, the other dropped it (unless it never got it)
        assert len(twins) == 2 and [s.reconnects for s in twins] == [1, 1], twins
        assert sum(s.records for s in twins) == n and 0 < sum(s.copies for s in twins) <= n


async def test_new_markets_are_subscribed_and_captured() -> None:
    async with running_sim(rate=500, markets=100, active=5) as sim:
        await sim.pause()
        sink = MemorySink()
        reg, pool, task = await start_gatherer(sim, sink)
        ex = sim.exchange
        before = len(pool.assignment)
        i = ex.universe.add_market(ex.universe.start_s)
        row = (ex.universe.market_ticker(i), "created", None, None, None, None, None, None)
        sim.ledger.record("lifecycle", (*row, None, None, None, 0))
        import orjson

        from simulator import _wire

        ex.publish(
            "market_lifecycle_v2", row[0], "market_lifecycle_v2", orjson.dumps(_wire.ws_lifecycle(row, None)).decode()
        )
        for _ in range(100):
            if ex.universe.market_ticker(i) in pool.assignment:
                break
            await asyncio.sleep(0.02)
        assert len(pool.assignment) == before + 1
        conn = pool.assignment[ex.universe.market_ticker(i)]
        assert isinstance(conn, WsConnection)
        for _ in range(100):
            if conn.tickers and ex.universe.market_ticker(i) in conn.tickers and conn._control.empty():
                break
            await asyncio.sleep(0.02)
        # the market opens and trades: its deltas reach the sink
        ex.state(i)
        ex.universe.status[i] = 1
        ex._make_hot(i, ex.now_us())
        ex.hot[:] = [i]
        for _ in range(200):
            ex.step(ex.now_us())
        await asyncio.sleep(0.5)
        await stop_gatherer(reg, pool, task)
    got = canonical(sink.records)
    want = {r for r in sim.ledger.rows("delta") if r[0] == ex.universe.market_ticker(i)}
    assert want and want <= got["delta"]


async def test_faults_detected_recorded_and_healed() -> None:
    ob = "orderbook_delta"
    faults = FaultSchedule(
        ws=[
            WsFault(kind="close", channel="ticker", connection=1, after_messages=20),  # one of the redundant pair
            WsFault(kind="close", channel="market_lifecycle_v2", connection=2, after_s=1.0),  # a quiet one
            WsFault(kind="skip_seq", channel=ob, connection=1, after_messages=30),
            WsFault(kind="duplicate", channel=ob, connection=2, after_messages=30),
            WsFault(kind="reorder", channel=ob, connection=3, after_messages=30),
            WsFault(kind="malformed", channel=ob, connection=4, after_messages=30),
            WsFault(kind="truncated", channel=ob, connection=5, after_messages=30),
            WsFault(kind="unknown_type", channel=ob, connection=6, after_messages=30),
            WsFault(kind="close", channel=ob, connection=7, after_messages=40),
            WsFault(kind="silence", channel=ob, connection=8, after_messages=20),
            WsFault(kind="bad_utf8", channel=ob, connection=9, after_messages=20),  # a dead letter, not a reconnect
        ]
    )
    async with running_sim(rate=1500, markets=120, active=120, faults=faults, lifecycle_interval_s=0) as sim:
        await sim.pause()
        sink = MemorySink()
        reg, pool, task = await start_gatherer(sim, sink)
        await run_market(sim, 5.0)
        stats = {c.conn_id: c.stats for c in pool.connections()}
        lossy = {t for c in pool.orderbook if c.stats.resyncs or c.stats.reconnects for t in c.tickers or ()}
        await stop_gatherer(reg, pool, task)
    fired = {(f[1], f[2]) for f in sim.ledger.faults()}
    assert len(fired) == 11, fired
    gaps = [r for r in sink.records if isinstance(r, SequenceGap)]
    assert {g.kind for g in gaps} >= {"skip", "reorder"}
    assert sum(s.repeats for s in stats.values()) >= 1
    assert sum(s.resyncs for s in stats.values()) >= 2  # skip_seq and truncated
    assert sorted(d[1] for d in sink.dead) == ["malformed", "malformed", "malformed", "unknown_type"]
    assert sum(s.reconnects for s in stats.values()) >= 3  # two closes and the silent connection
    # every connection kind reconnected: ticker and lifecycle here, orderbook above (trade: tests/test_end_to_end.py)
    assert sum(v.reconnects for k, v in stats.items() if ":orderbook:" not in k) == 2
    assert sum(v.reconnects for k, v in stats.items() if ":market_lifecycle_v2:" in k) == 1
    # after resync, every book is exact again
    books = rebuilt_books(sink.records)
    end = sim.exchange.last_ts_us
    truth = {t: sim.ledger.book_at(t, end) for t in books}
    wrong = [t for t, b in books.items() if (b.yes, b.no) != (truth[t].yes, truth[t].no)]  # type: ignore[union-attr]
    assert wrong == []
    # what this one gatherer missed is bounded by the faults: a lost frame or two per fault, plus the
    # frames in flight on cut connections (the other gatherers cover those)
    got = canonical(sink.records)
    missing = {k: len(set(sim.ledger.rows(k)) - got[k]) for k in ("delta", "trade", "ticker")}
    assert missing["ticker"] == 0 and missing["trade"] == 0  # the redundant pair covered the cut ones
    assert missing["delta"] > 0
    # and only on connections that lost frames (resynced or reconnected): the others missed nothing
    assert {r[0] for r in set(sim.ledger.rows("delta")) - got["delta"]} <= lossy
    assert len(lossy) <= 5 * 10  # skip_seq, reorder, truncated, close, silence: 10 markets each


async def test_a_resubscribe_misses_only_the_lost_frame() -> None:
    """A seq gap on a busy orderbook connection: the frames of the old subscription are kept until its
    unsubscribe is answered and the subscribe goes out right behind the unsubscribe, so the connection
    misses the lost message and what the exchange sent between the two commands, not a round trip's worth
    of frames. The simulator answers commands 30 ms late, as a busy exchange would, while its data flows on.
    A reorder on the same connection is waited out and costs nothing. (What a real exchange publishes
    between the two commands is lost whatever the client does: Kalshi has no atomic resubscribe.)"""
    ob = "orderbook_delta"
    faults = FaultSchedule(
        ws=[
            WsFault(kind="reorder", channel=ob, connection=1, after_messages=100),
            WsFault(kind="skip_seq", channel=ob, connection=1, after_messages=2500),  # after the grace
        ]
    )
    ws = FAST_WS.model_copy(update={"markets_per_connection": 100})
    async with running_sim(
        rate=4000, markets=40, active=40, faults=faults, lifecycle_interval_s=0, ws_command_latency_s=0.03
    ) as sim:
        await sim.pause()
        sink = MemorySink()
        reg, pool, task = await start_gatherer(sim, sink, ws=ws)
        assert len(pool.orderbook) == 1
        await run_market(sim, 2.0)
        conn = pool.orderbook[0]
        stats = conn.stats
        await stop_gatherer(reg, pool, task)
    assert {f[2] for f in sim.ledger.faults()} == {"reorder", "skip_seq"}
    assert (stats.gaps, stats.late, stats.healed, stats.resyncs, stats.reconnects) == (2, 1, 1, 1, 0)
    assert stats.stale == 0  # no frame of the old subscription was thrown away
    # The reorder leaves 'reorder' rows only: a 'skip' row would read as a blind stretch until the next
    # snapshot, which a gap healed without a resubscribe never gets. The lost frame leaves 'skip' rows.
    gaps = [r for r in sink.records if isinstance(r, SequenceGap)]
    by_kind = {k: {(g.sid, g.expected_seq) for g in gaps if g.kind == k} for k in ("skip", "reorder")}
    assert len(by_kind["skip"]) == 1 and len(by_kind["reorder"]) == 1, by_kind
    assert len(gaps) == 2 * 40  # a row per market of the connection for each
    # each row says since when frames may be missing: the last frame in sequence before it (its exchange time)
    frames = [r for r in sink.records if isinstance(r, OrderbookDelta | OrderbookSnapshot)]
    before = {(r.sid, r.seq): min(r.received_us, r.exchange_ts_us or r.received_us) for r in frames}
    ((sid, expected),) = by_kind["skip"]
    assert {g.since_us for g in gaps if g.kind == "skip"} == {before[(sid, expected - 1)]}
    want = set(sim.ledger.rows("delta"))
    missing = want - canonical(sink.records)["delta"]
    assert len(want) > 3000
    # Only the lost one: the simulator carries out commands that arrive together back to back, so a client
    # that waited for the unsubscribe's answer before subscribing (as this one did until 2026-12-01) misses
    # the 30 ms between them too: it missed 374-379 deltas here, 178-183 of which it had received and thrown
    # away as stale.
    assert len(missing) == 1, len(missing)
    books = rebuilt_books(sink.records)
    end = sim.exchange.last_ts_us
    truth = {t: sim.ledger.book_at(t, end) for t in books}
    wrong = [t for t, b in books.items() if (b.yes, b.no) != (truth[t].yes, truth[t].no)]  # type: ignore[union-attr]
    assert wrong == []  # the resubscribe's snapshots made every book exact again


async def test_a_loss_while_the_snapshots_arrive_is_dated_no_later_than_the_lost_delta() -> None:
    """Kalshi's snapshots carry no time: each is a book as of some moment after the subscribe left, and every
    delta is numbered behind the whole batch of them. A delta lost for everyone while the batch is still on
    its way was published before the last snapshots arrived, so a gap dated from the last one's receipt
    starts after the loss, and production read that delta as covered (issue 28: one run of test_holes in 6).
    Here the exchange stalls the connection halfway through its snapshots and loses the next delta
    meanwhile; the gap must start no later than that delta, whichever snapshots came before it."""
    ob = "orderbook_delta"
    faults = FaultSchedule(
        ws=[
            WsFault(kind="stall", channel=ob, connection=1, after_messages=20, duration_s=0.15),
            WsFault(kind="lose_delta", channel=ob, connection=1, after_messages=20),
        ]
    )
    ws = FAST_WS.model_copy(update={"markets_per_connection": 100})
    async with running_sim(rate=2000, markets=40, active=40, faults=faults, lifecycle_interval_s=0) as sim:
        sink = MemorySink()  # the market runs from the start: deltas are published while the snapshots arrive
        reg, pool, task = await start_gatherer(sim, sink, ws=ws)
        assert len(pool.orderbook) == 1
        await asyncio.sleep(1.0)
        await sim.pause()
        await asyncio.sleep(0.3)
        await stop_gatherer(reg, pool, task)
    lost = [f for f in sim.ledger.faults() if f[2] == "lost_delta"]
    assert len(lost) == 1, lost
    lost_ts_us = orjson.loads(lost[0][3])["ts_ms"] * 1000
    skips = [r for r in sink.records if isinstance(r, SequenceGap) and r.kind == "skip"]
    assert skips and len({g.sid for g in skips}) == 1
    first = [r for r in sink.records if isinstance(r, OrderbookSnapshot) and r.sid == skips[0].sid]
    assert len(first) == 40
    # the case bites: some of the subscription's snapshots arrived after the lost delta was published
    assert max(r.received_us for r in first) > lost_ts_us
    assert {g.since_us <= lost_ts_us for g in skips} == {True}, ({g.since_us for g in skips}, lost_ts_us)


def test_seq_tracker_tells_late_from_repeat_and_knows_when_it_cannot() -> None:
    t = SeqTracker()
    assert [t.check(s) for s in (1, 2, 5, 3, 3, 4, 2)] == ["ok", "ok", "gap", "late", "repeat", "late", "repeat"]
    assert not t.missing and not t.overflow  # every skipped number came: a gap healed by late frames
    t.check(6 + MAX_MISSING + 1)  # more skipped numbers than it remembers
    assert t.overflow and len(t.missing) == MAX_MISSING
    assert t.check(6) == "late" and t.check(6 + MAX_MISSING) == "repeat"  # the one it could not remember


async def test_a_trade_gap_whose_frames_never_come_is_reported_for_a_refill() -> None:
    """Trades are not resubscribed: a skipped seq on a trade connection is reported to the owner (which
    refills the stretch from REST) once gap_grace_s has passed without it; a reorder heals and is not."""
    faults = FaultSchedule(
        ws=[
            WsFault(kind="reorder", channel="trade", connection=1, after_messages=20),
            WsFault(kind="skip_seq", channel="trade", connection=1, after_messages=150),
        ]
    )
    async with running_sim(rate=2000, markets=40, active=40, faults=faults, lifecycle_interval_s=0) as sim:
        await sim.pause()
        sink = MemorySink()
        reg, pool, task = await start_gatherer(sim, sink)
        losses: list[tuple[int, int]] = []
        pool.on_trade_loss = lambda a, b: losses.append((a, b))
        await run_market(sim, 3.0)
        first = next(c for c in pool.globals if c.conn_id.endswith(":trade:1"))
        stats = first.stats
        await stop_gatherer(reg, pool, task)
    assert {f[2] for f in sim.ledger.faults()} == {"reorder", "skip_seq"}
    assert (stats.gaps, stats.late, stats.healed) == (2, 1, 1)
    assert len(losses) == 1, losses
    ((since, detected),) = losses
    assert since <= detected and detected - since < 1_000_000
    # the skipped trade was published inside the stretch reported (exchange times are whole milliseconds)
    assert any(since - 1000 <= r[2] <= detected for r in sim.ledger.rows("trade"))
    assert canonical(sink.records)["trade"] == set(sim.ledger.rows("trade"))  # the second connection had it
