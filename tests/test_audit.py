"""The book audit on rows a gatherer database really holds (plain PostgreSQL and TimescaleDB): each REST
snapshot against the book of the gatherer's WebSocket snapshot plus the deltas after it on the subscription,
with every result the audit can give, the differing level named, and the replay resumed from its checkpoint."""

from __future__ import annotations

from typing import Any

import psycopg

from core.records import CaptureOutage, OrderbookDelta, OrderbookSnapshot, SequenceGap
from dedup._audit import audit_source
from tests.dedupkit import DAY0, store

T = DAY0 + 3_600_000_000
S = 1_000_000
W = 2 * S  # the audit window


def ws_snap(market: str, at: int, sid: int, yes: list[tuple[int, int]], no: list[tuple[int, int]]) -> OrderbookSnapshot:
    return OrderbookSnapshot("g1", at, None, market, None, "ws", sid, 1, yes, no)


def rest_snap(market: str, at: int, yes: list[tuple[int, int]], no: list[tuple[int, int]]) -> OrderbookSnapshot:
    return OrderbookSnapshot("g1", at, None, market, None, "rest", None, None, yes, no)


def delta(market: str, at: int, sid: int, seq: int, side: bool, price: int, qty: int) -> OrderbookDelta:
    return OrderbookDelta("g1", at, at // 1000 * 1000 - 3000, market, None, side, price, qty, 0, sid, seq)


def audits(prod: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(prod) as conn:
        return conn.execute(
            "SELECT market_ticker, rest_received_us, result, deltas_applied, differing FROM book_audits "
            "ORDER BY market_ticker, rest_received_us"
        ).fetchall()


def run(source: str, prod: str) -> dict[str, int]:
    with psycopg.connect(source) as src, psycopg.connect(prod) as p:
        return dict(audit_source("g1", src, p, W, now_us=T + 3_600 * S))


def test_every_result_of_the_audit_and_the_level_that_differs(gatherer_db: str, production_db: str) -> None:
    m, lost_level = "KXA-26JAN01-T1", (False, 38_000, 5_000)
    store(
        gatherer_db,
        [
            ws_snap(m, T, 1, [(40_000, 1_000)], [(55_000, 500)]),
            ws_snap("KXG-26JAN01-T1", T, 2, [(30_000, 100)], []),
            SequenceGap("g1", T + 5 * S, "ob-2", "orderbook_delta", 2, "KXG-26JAN01-T1", 7, 9, "skip"),
        ],
    )
    store(
        gatherer_db,
        [
            delta(m, T + 1 * S, 1, 2, True, 40_000, 200),
            delta(m, T + 2 * S, 1, 3, False, 54_000, 300),
            delta(m, T + 15 * S, 1, 4, True, 39_000, 100),
            delta(m, T + 30 * S + 500_000, 1, 5, True, 39_000, 100),  # 0.5 s after a read: it moves around it
            rest_snap(m, T + 10 * S, [(40_000, 1_200)], [(55_000, 500), (54_000, 300)]),
            # the exchange lost a NO delta at 38,000 before this read, and numbered on: the capture cannot know
            rest_snap(m, T + 20 * S, [(40_000, 1_200), (39_000, 100)], [(55_000, 500), (54_000, 300), lost_level[1:]]),
            rest_snap(m, T + 30 * S, [(40_000, 1_200), (39_000, 100)], [(55_000, 500), (54_000, 300)]),
            rest_snap("KXN-26JAN01-T1", T + 10 * S, [(1_000, 100)], []),  # no WebSocket snapshot of it yet
            rest_snap("KXG-26JAN01-T1", T + 10 * S, [(30_000, 100)], []),  # its subscription had a gap
            delta("KXZ-26JAN01-T1", T + 60 * S, 3, 1, True, 1_000, 100),  # the writers got this far
        ],
    )
    assert run(gatherer_db, production_db) == {"matched": 2, "mismatched": 1, "no_baseline": 1, "gap": 1}
    rows = {(r[0], r[1] - T): r[2:] for r in audits(production_db)}
    assert rows[(m, 10 * S)][:2] == ("matched", 2)
    result, applied, diff = rows[(m, 20 * S)]
    assert (result, applied) == ("mismatched", 1)
    assert diff == [{"side": "no", "price": 38_000, "rest": 5_000, "captured": 0}]
    assert rows[(m, 30 * S)][:2] == ("matched", 0)  # the book before the delta 0.5 s after the read
    assert rows[("KXN-26JAN01-T1", 10 * S)][0] == "no_baseline"
    assert rows[("KXG-26JAN01-T1", 10 * S)][0] == "gap"
    assert run(gatherer_db, production_db) == {}  # the cursor: nothing audited twice

    # later: the replay goes on from the checkpoint (one more delta applied), and the lost level still differs
    store(
        gatherer_db,
        [
            rest_snap(m, T + 40 * S, [(40_000, 1_200), (39_000, 200)], [(55_000, 500), (54_000, 300), lost_level[1:]]),
            delta("KXZ-26JAN01-T1", T + 90 * S, 3, 2, True, 1_000, 100),
        ],
    )
    assert run(gatherer_db, production_db) == {"mismatched": 1}
    result, applied, diff = {(r[0], r[1] - T): r[2:] for r in audits(production_db)}[(m, 40 * S)]
    assert (result, applied) == ("mismatched", 1)
    assert diff == [{"side": "no", "price": 38_000, "rest": 5_000, "captured": 0}]


def test_a_market_that_never_rests_is_judged(gatherer_db: str, production_db: str) -> None:
    """A delta every 300 ms, so every read has deltas within its window on both sides: a REST book equal to
    any state the captured deltas pass through matches, the first one, a middle one or the last; a book
    equal to none mismatches, naming the level of the closest state; a loss long before the read shows."""
    m = "KXM-26JAN01-T1"
    store(gatherer_db, [ws_snap(m, T, 1, [(40_000, 1_000)], [])])
    # YES 40,000 grows by 100 every 300 ms from T + 1 s: size 1,000 + 100 k after the k-th delta
    store(gatherer_db, [delta(m, T + S + 300_000 * k, 1, 2 + k, True, 40_000, 100) for k in range(1, 200)])
    size_at = {k: 1_000 + 100 * k for k in range(0, 200)}
    store(
        gatherer_db,
        [
            # delta k arrives at 1 s + 0.3 k s; a read at t has k < (t - 3) / 0.3 in its base and the
            # window's deltas after: at 20 s the base ends at k = 56 and the window holds k = 57..70
            rest_snap(m, T + 20 * S, [(40_000, size_at[57])], []),  # after the window's first delta
            rest_snap(m, T + 30 * S, [(40_000, size_at[100])], []),  # a middle state of the window (90..103)
            rest_snap(m, T + 40 * S, [(40_000, size_at[130] + 50)], []),  # no state has this size (124..136)
            rest_snap(m, T + 50 * S, [(40_000, size_at[160]), (39_000, 700)], []),  # a level the capture lacks
            delta("KXZ-26JAN01-T1", T + 90 * S, 3, 1, True, 1_000, 100),  # the writers got this far
        ],
    )
    assert run(gatherer_db, production_db) == {"matched": 2, "mismatched": 2}
    rows = {r[1] - T: r[2:] for r in audits(production_db) if r[0] == m}
    assert rows[20 * S][0] == rows[30 * S][0] == "matched"
    result, _, diff = rows[40 * S]
    assert result == "mismatched" and len(diff) == 1 and diff[0]["side"] == "yes" and diff[0]["price"] == 40_000
    assert abs(diff[0]["captured"] - diff[0]["rest"]) == 50  # the closest state: 50 off
    result, _, diff = rows[50 * S]
    assert (result, diff) == ("mismatched", [{"side": "yes", "price": 39_000, "rest": 700, "captured": 0}])


def test_no_snapshot_is_audited_before_the_writers_are_past_it(gatherer_db: str, production_db: str) -> None:
    """A REST read is judged only once the database holds deltas received after its window: before that,
    a delta still in the stream could make a matched book look mismatched."""
    m = "KXA-26JAN01-T1"
    store(gatherer_db, [ws_snap(m, T, 1, [(40_000, 1_000)], []), rest_snap(m, T + 10 * S, [(40_000, 1_000)], [])])
    store(gatherer_db, [delta("KXZ-26JAN01-T1", T + 12 * S, 3, 1, True, 1_000, 100)])  # inside the window + 1 s
    assert run(gatherer_db, production_db) == {}
    store(gatherer_db, [delta("KXZ-26JAN01-T1", T + 14 * S, 3, 2, True, 1_000, 100)])
    assert run(gatherer_db, production_db) == {"matched": 1}


def test_a_gap_found_late_on_a_quiet_subscription_covers_reads_after_the_loss(
    gatherer_db: str, production_db: str
) -> None:
    """The lost message came after the subscription's last frame in sequence (since_us), but the gap shows
    only when the next frame arrives, here after the read: the read is 'gap', not a false alarm; a read
    before since_us is still compared."""
    m = "KXQ-26JAN01-T1"
    store(
        gatherer_db,
        [
            ws_snap(m, T, 1, [(40_000, 1_000)], []),
            delta(m, T + 1 * S, 1, 2, True, 40_000, 200),
            rest_snap(m, T + 3 * S, [(40_000, 1_200)], []),  # more than a window before since_us: compared
            delta(m, T + 6 * S, 1, 3, True, 40_000, 50),  # the last frame in sequence
            # lost at about T + 8 s: a YES bid of 100 at 41,000 the capture never saw
            rest_snap(m, T + 10 * S, [(41_000, 100), (40_000, 1_250)], []),
            SequenceGap("g1", T + 30 * S, "ob-1", "orderbook_delta", 1, m, 4, 5, "skip", T + 6 * S),
            delta(m, T + 30 * S, 1, 5, True, 40_000, -200),
            delta("KXZ-26JAN01-T1", T + 60 * S, 3, 1, True, 1_000, 100),  # the writers got this far
        ],
    )
    assert run(gatherer_db, production_db) == {"matched": 1, "gap": 1}


def test_a_restarted_gatherer_is_judged_only_on_books_it_held_since_their_snapshot(
    gatherer_db: str, production_db: str
) -> None:
    """Finding of the fault run: after every kill -9 and restart, 210 to 394 REST reads of the restarted gatherer
    came out 'mismatched' while production was exact: the audit took the snapshot the dead process had made,
    and the deltas the new process numbered with the same sids (they start again at 1), as one book. A read
    between the death and the new process's snapshot of the market is 'gap'; after it, judged on the new book."""
    m = "KXR-26JAN01-T1"
    store(
        gatherer_db,
        [
            ws_snap(m, T, 1, [(40_000, 1_000)], []),  # process 1, its subscription 1
            delta(m, T + 1 * S, 1, 2, True, 40_000, 100),
            rest_snap(m, T + 3 * S, [(40_000, 1_100)], []),  # judged: the book it held (a window before its death)
            # killed at about T + 6 s; process 2 started at T + 9 s and reported its outage from the last beat
            CaptureOutage("g1", T + 12 * S, "*", T + 6 * S, T + 11 * S, "restart", None, None, T + 9 * S),
            # process 2 subscribes anew: its subscription is 1 again, its seqs start again
            delta(m, T + 10 * S, 1, 2, True, 40_000, -700),  # a frame of process 2 (sid 1, seq 2 again)
            rest_snap(m, T + 11 * S, [(40_000, 300), (39_000, 50)], []),  # before its new book: not judged
            ws_snap(m, T + 12 * S, 1, [(40_000, 300)], [])._replace(seq=1),
            delta(m, T + 13 * S, 1, 2, True, 39_000, 50),
            rest_snap(m, T + 20 * S, [(40_000, 300), (39_000, 50)], []),  # judged on process 2's book
            delta("KXZ-26JAN01-T1", T + 60 * S, 3, 1, True, 1_000, 100),  # the writers got this far
        ],
    )
    assert run(gatherer_db, production_db) == {"matched": 2, "gap": 1}
    rows = {r[1] - T: r[2] for r in audits(production_db) if r[0] == m}
    assert rows == {3 * S: "matched", 11 * S: "gap", 20 * S: "matched"}
