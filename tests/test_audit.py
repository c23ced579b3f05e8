"""The book audit on rows a gatherer database really holds (plain PostgreSQL and TimescaleDB): each REST
snapshot against the book of the gatherer's WebSocket snapshot plus the deltas after it on the subscription,
with every result the audit can give, the differing level named, and the replay resumed from its checkpoint."""

from __future__ import annotations

from typing import Any

import psycopg

from core.records import OrderbookDelta, OrderbookSnapshot, SequenceGap
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
            delta(m, T + 30 * S + 500_000, 1, 5, True, 39_000, 100),  # 0.5 s after a read: that read is busy
            rest_snap(m, T + 10 * S, [(40_000, 1_200)], [(55_000, 500), (54_000, 300)]),
            # the exchange lost a NO delta at 38,000 before this read, and numbered on: the capture cannot know
            rest_snap(m, T + 20 * S, [(40_000, 1_200), (39_000, 100)], [(55_000, 500), (54_000, 300), lost_level[1:]]),
            rest_snap(m, T + 30 * S, [(40_000, 1_200), (39_000, 100)], [(55_000, 500), (54_000, 300)]),
            rest_snap("KXN-26JAN01-T1", T + 10 * S, [(1_000, 100)], []),  # no WebSocket snapshot of it yet
            rest_snap("KXG-26JAN01-T1", T + 10 * S, [(30_000, 100)], []),  # its subscription had a gap
            delta("KXZ-26JAN01-T1", T + 60 * S, 3, 1, True, 1_000, 100),  # the writers got this far
        ],
    )
    assert run(gatherer_db, production_db) == {"matched": 1, "mismatched": 1, "busy": 1, "no_baseline": 1, "gap": 1}
    rows = {(r[0], r[1] - T): r[2:] for r in audits(production_db)}
    assert rows[(m, 10 * S)][:2] == ("matched", 2)
    result, applied, diff = rows[(m, 20 * S)]
    assert (result, applied) == ("mismatched", 1)
    assert diff == [{"side": "no", "price": 38_000, "rest": 5_000, "captured": 0}]
    assert rows[(m, 30 * S)][0] == "busy"
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


def test_no_snapshot_is_audited_before_the_writers_are_past_it(gatherer_db: str, production_db: str) -> None:
    """A REST read is judged only once the database holds deltas received after its window: before that,
    a delta still in the stream could make a matched book look mismatched."""
    m = "KXA-26JAN01-T1"
    store(gatherer_db, [ws_snap(m, T, 1, [(40_000, 1_000)], []), rest_snap(m, T + 10 * S, [(40_000, 1_000)], [])])
    store(gatherer_db, [delta("KXZ-26JAN01-T1", T + 12 * S, 3, 1, True, 1_000, 100)])  # inside the window + 1 s
    assert run(gatherer_db, production_db) == {}
    store(gatherer_db, [delta("KXZ-26JAN01-T1", T + 14 * S, 3, 2, True, 1_000, 100)])
    assert run(gatherer_db, production_db) == {"matched": 1}
