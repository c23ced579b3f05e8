"""The coverage record (dedup._coverage): a gap wherever no gatherer holds a market's book though one lost it,
and only there; each gap a fresh snapshot ended checked against production's book, so a lost message leaves an
unverified gap on the market whose book it changed and verified ones elsewhere.

The timeline on its own first, then on gatherer databases (plain PostgreSQL and TimescaleDB) merged into
production, with the findings of the fault run that broke the old record: a gatherer back from a restart that
held no book yet, gaps on every market of a subscription, a gatherer whose beats stopped."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest

from core.records import (
    CaptureBeat,
    CaptureOutage,
    OrderbookDelta,
    OrderbookSnapshot,
    SequenceGap,
    SubscriptionEnd,
)
from dedup import build_coverage, sync_all
from dedup._coverage import OPEN_END, Evidence, Gap, timeline
from tests.dedupkit import dedup_config, store
from tests.services import TempDatabases, new_gatherer_db

S = 1_000_000


# ---- the timeline alone ----------------------------------------------------------------------------------------


def ev(at: int, g: str, kind: str, sid: int | None = None) -> Evidence:
    return Evidence(at, 1 if kind == "start" else 0, g, kind, sid)


def spans(gaps: list[Gap]) -> list[tuple[int, int, str | None]]:
    return [(g.from_us, g.to_us, g.ended_by.gatherer_id if g.ended_by else None) for g in gaps]


def test_a_gap_only_where_no_gatherer_holds_the_book_and_one_lost_it() -> None:
    evidence = sorted(
        [
            ev(10, "g1", "start", 1), ev(10, "g2", "start", 1),
            ev(50, "g1", "lost", 1),  # g2 still holds: no gap
            ev(60, "g2", "lost", 1),  # nobody holds it from 60 ...
            ev(70, "g1", "start", 2),  # ... until g1's fresh snapshot
            ev(90, "g2", "start", 2),
            ev(100, "g1", "lost", 2), ev(101, "g2", "lost", 2),  # both again, and nothing since: open
        ]
    )  # fmt: skip
    assert spans(timeline("M", evidence, 0, 1_000)) == [(60, 70, "g1"), (101, OPEN_END, None)]
    # only gaps that end after `lo` (the rebuild's start) are returned
    assert spans(timeline("M", evidence, 75, 1_000)) == [(101, OPEN_END, None)]
    # and evidence past the horizon is not read yet
    assert spans(timeline("M", evidence, 0, 95)) == [(60, 70, "g1")]


def test_no_gap_before_a_gatherer_first_holds_a_book_nor_after_it_is_released() -> None:
    evidence = sorted(
        [
            ev(10, "g1", "start", 1),  # nothing before it: not captured yet, no hole
            ev(20, "g1", "released", 1),  # the market left capture
            ev(30, "g2", "start", 1), ev(40, "g2", "lost", 1),  # g2 lost it ...
            ev(45, "g1", "released", 1),  # ... and a registry saw the market finish: nobody wants its book
        ]
    )  # fmt: skip
    assert spans(timeline("M", evidence, 0, 100)) == [(40, 45, None)]
    # a gatherer that lost the book and never came back, while another held it until it released the market
    # (a market settled while the first one was down): no gap
    evidence = sorted([ev(10, "g1", "start", 1), ev(10, "g2", "start", 1), ev(20, "g2", "lost"),
                       ev(50, "g1", "released", 1)])  # fmt: skip
    assert spans(timeline("M", evidence, 0, 100)) == []


def test_an_end_of_an_older_subscription_does_not_end_a_newer_book() -> None:
    """Make-before-break: the old subscription's own gap rows can come after the new one's snapshot."""
    evidence = sorted(
        [ev(10, "g1", "start", 1), ev(50, "g1", "lost", 1), ev(55, "g1", "start", 2), ev(60, "g1", "lost", 1)]
    )
    assert spans(timeline("M", evidence, 0, 100)) == [(50, 55, "g1")]
    # an end of every book (an outage, the beats stopped) ends the newer one too
    assert spans(timeline("M", [*evidence, ev(70, "g1", "lost")], 0, 100)) == [(50, 55, "g1"), (70, OPEN_END, None)]


def test_a_loss_right_after_a_snapshot_is_dated_before_its_arrival_and_still_ends_that_book() -> None:
    """The end's since_us is the exchange time of the subscription's last frame in sequence, which can precede
    the snapshot's arrival (a receive time) though it came after the snapshot in the subscription. Found by the
    end-to-end hole test: read in time order, the end came before the book began and was dropped, and the book
    counted as held over a delta lost for everyone."""
    from dedup._coverage import Liveness, market_evidence

    live = Liveness({}, set(), 10**9)
    rows = [("g1", 10, "start", 1, 1, ""), ("g1", 50, "lost", 1, None, ""), ("g1", 60, "start", 2, 1, ""),
            ("g1", 58, "lost", 2, None, ""), ("g1", 90, "start", 3, 1, "")]  # fmt: skip
    gaps = timeline("M", market_evidence(rows, {}, live, ["g1"]), 0, 100)
    # not [(50, 60, 'g1'), (60...)]: subscription 2's book held nothing; its snapshot still ends the first gap
    # (it is the book at its cut) and the second one begins at its loss
    assert spans(gaps) == [(50, 58, "g1"), (58, 90, "g1")]


# ---- on real databases -----------------------------------------------------------------------------------------


def snap(gid: str, m: str, at: int, sid: int, seq: int, yes: list[tuple[int, int]]) -> OrderbookSnapshot:
    return OrderbookSnapshot(gid, at, None, m, None, "ws", sid, seq, yes, [])


def delta(gid: str, m: str, at: int, sid: int, seq: int, price: int, qty: int, occ: int = 0) -> OrderbookDelta:
    return OrderbookDelta(gid, at + 2_000, at, m, None, True, price, qty, occ, sid, seq)


def gap(gid: str, m: str, at: int, sid: int, expected: int, since: int) -> SequenceGap:
    return SequenceGap(gid, at, f"{gid}:orderbook:1", "orderbook_delta", sid, m, expected, expected + 1, "skip", since)


def gaps_of(prod: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(prod) as conn:
        return conn.execute(
            "SELECT market_ticker, from_us, to_us, verified_complete, differing, ended_by, check_note "
            "FROM coverage_gaps WHERE channel = 'orderbook_delta' ORDER BY market_ticker, from_us"
        ).fetchall()


@pytest.fixture
def two(gatherer_server: TempDatabases) -> dict[str, str]:
    return {g: new_gatherer_db(gatherer_server, f"kd{g}") for g in ("g1", "g2")}


def now_minus(seconds: float) -> int:
    return time.time_ns() // 1000 - int(seconds * S)


def test_a_message_lost_for_everyone_leaves_an_unverified_gap_only_where_it_changed_the_book(
    two: dict[str, str], production_db: str
) -> None:
    """Both gatherers lose a message of one subscription of three markets (each has a seq gap there) and resync.
    The lost delta was M2's: M2's gap is unverified, naming the level; M1's fresh snapshot equals production's
    book, so its gap is verified complete; M3 lies on another subscription of g2, which held it throughout."""
    t = now_minus(600)
    book = [(40_000, 1_000)]
    for gid, lag in (("g1", 0), ("g2", 100_000)):
        markets = ("M1", "M2", "M3") if gid == "g1" else ("M1", "M2")
        rows: list[Any] = [snap(gid, m, t + lag, 1, k, book) for k, m in enumerate(markets, 1)]
        rows += [delta(gid, "M2", t + 1 * S, 1, 4, 40_000, 200), delta(gid, "M2", t + 2 * S, 1, 5, 39_000, 300)]
        # the lost message, M2's +50 at 39,000, came after t + 3 s: every gatherer's subscription skips a seq
        rows += [gap(gid, m, t + 4 * S + lag, 1, 6, t + 3 * S + lag) for m in markets]
        after = {"M1": book, "M2": [(40_000, 1_200), (39_000, 350)], "M3": book}
        rows += [snap(gid, m, t + 5 * S + lag, 2, k, after[m]) for k, m in enumerate(markets, 1)]
        if gid == "g2":
            rows.append(snap(gid, "M3", t, 3, 1, book))  # M3 on another subscription, never lost
        store(two[gid], rows)
    sync_all(dedup_config(production_db, two))
    got = {r[0]: r[1:] for r in gaps_of(production_db)}
    assert set(got) == {"M1", "M2"}  # M3: g2 held it throughout
    assert got["M1"][:5] == (t + 3 * S + 100_000, t + 5 * S, True, None, "g1")
    f, to, verified, differing, ended_by, note = got["M2"]
    assert (f, to, verified, ended_by, note) == (t + 3 * S + 100_000, t + 5 * S, False, "g1", None)
    assert differing == [{"side": "yes", "price": 39_000, "snapshot": 350, "production": 300}]


def test_a_book_that_held_nothing_still_serves_a_check_with_its_snapshot(
    two: dict[str, str], production_db: str
) -> None:
    """Both gatherers lose a message, resync, and lose another while the new subscription's snapshots still
    arrive: that gap is dated from the subscribe (snapshots carry no time), before the snapshot's arrival, so
    the new book held nothing and its start moves back to its end. Its snapshot is still a true book cut before
    the loss: it ends the first gap and begins the second, and both are checked against it (verified, nothing
    of this market changed). The moved start once looked its snapshot up at the moved time and found none: the
    gaps it bounds could not be checked ('a snapshot is not in production yet'), here merged into one, and in the
    hole test some stayed unverified with nothing of their market lost ("only the holes" failed)."""
    t = now_minus(600)
    m, book = "KXE-26DEC06-T50", [(45_000, 70)]
    later = [*book, (44_000, 10)]  # the book after the delta at t + 1 s
    for gid, lag in (("g1", 0), ("g2", 300)):
        store(two[gid], [
            snap(gid, m, t + lag, 1, 1, book), delta(gid, m, t + 1 * S, 1, 2, 44_000, 10),
            gap(gid, m, t + 3 * S + lag, 1, 3, t + 2 * S),  # the first loss
            snap(gid, m, t + 4 * S + 5_000 + lag, 2, 7, later),
            gap(gid, m, t + 4 * S + 20_000 + lag, 2, 9, t + 4 * S + lag),  # since: the subscribe left
            snap(gid, m, t + 6 * S + lag, 3, 1, later),
        ])  # fmt: skip
    sync_all(dedup_config(production_db, two))
    got = [(f, to, verified, ended_by, note) for _, f, to, verified, _, ended_by, note in gaps_of(production_db)]
    # each moved start ends a gap and its loss begins the next (verified gaps are not merged)
    g1_moved, g2_moved = t + 4 * S, t + 4 * S + 300
    assert got == [
        (t + 2 * S, g1_moved, True, "g1", None),
        (g1_moved, g2_moved, True, "g2", None),
        (g2_moved, t + 6 * S, True, "g1", None),
    ], got


def test_a_gatherer_back_from_a_restart_holds_no_book_until_its_snapshot(
    two: dict[str, str], production_db: str
) -> None:
    """Finding of the fault run: g2 killed and restarted; 1.4 s after its process came back, before its snapshot
    of the market arrived, the exchange lost a delta for everyone. g1 had the seq gap; production must record a
    gap from g1's loss to g2's (or g1's) next snapshot, not count g2 as covering because it was up again. The
    restarted process numbers its subscriptions from 1 again: its old sid must not be taken for the new one."""
    t = now_minus(600)
    m, book = "KXA-26DEC06-T50", [(30_000, 500)]
    store(two["g1"], [snap("g1", m, t, 1, 1, book), gap("g1", m, t + 8 * S, 1, 2, t + 7_400_000),
                      snap("g1", m, t + 9 * S, 2, 1, [(30_000, 400)])])  # fmt: skip
    store(
        two["g2"],
        [
            snap("g2", m, t, 1, 1, book),
            snap("g2", m, t + 4_500_000, 1, 1, book),  # the old process's last moments: it died with this book
            CaptureOutage("g2", t + 8 * S, "*", t + 4 * S, t + 6 * S, "restart", None, None, t + 6 * S),
            snap("g2", m, t + 8_500_000, 1, 1, [(30_000, 400)]),  # the new process's first book of it
        ],
    )
    sync_all(dedup_config(production_db, two))
    rows = gaps_of(production_db)
    assert [(r[1], r[2], r[5]) for r in rows] == [(t + 7_400_000, t + 8_500_000, "g2")]
    assert rows[0][3] is False and rows[0][4] == [{"side": "yes", "price": 30_000, "snapshot": 400,
                                                    "production": 500}]  # fmt: skip


def test_a_gatherer_whose_beats_stopped_holds_nothing_after_its_last(two: dict[str, str], production_db: str) -> None:
    """g2 died and never came back (no outage reported yet): only its stopped beats tell. g1 loses the market's
    book later: a gap from there, though g2's last evidence is a book it began."""
    t = now_minus(600)
    m, book = "KXB-26DEC06-T50", [(20_000, 100)]
    store(two["g1"], [snap("g1", m, t, 1, 1, book), gap("g1", m, t + 61 * S, 1, 2, t + 60 * S),
                      CaptureBeat("g1", now_minus(1), t)])  # fmt: skip
    store(two["g2"], [snap("g2", m, t, 1, 1, book), CaptureBeat("g2", t + 30 * S, t)])
    cfg = dedup_config(production_db, two)
    sync_all(cfg)
    assert [(r[1], r[2]) for r in gaps_of(production_db)] == [(t + 60 * S, OPEN_END)]
    # g2 comes back and subscribes: the gap ends at its snapshot, which shows nothing was lost
    back = now_minus(20)
    store(two["g2"], [CaptureOutage("g2", back, "*", t + 29 * S, back, "restart", None, None, back - S),
                      snap("g2", m, back, 1, 1, book), CaptureBeat("g2", now_minus(1), back - S)])  # fmt: skip
    store(two["g1"], [CaptureBeat("g1", now_minus(1), t)])
    sync_all(cfg)
    ((_, f, to, verified, _, ended_by, _),) = gaps_of(production_db)
    assert (f, to, verified, ended_by) == (t + 60 * S, back, True, "g2")


def test_a_released_market_and_a_lost_connection(two: dict[str, str], production_db: str) -> None:
    """A subscription end: 'disconnected' ends the book like a gap; 'released' (the market left capture) leaves
    no gap even where the other gatherer had lost the book."""
    t = now_minus(600)
    book = [(10_000, 10)]
    end = SubscriptionEnd
    store(two["g1"], [snap("g1", "A", t, 1, 1, book), end("g1", t + 2 * S, "c", "orderbook_delta", 1, "A",
                      "disconnected", t + S), snap("g1", "A", t + 3 * S, 2, 1, book),
                      snap("g1", "B", t, 1, 2, book), end("g1", t + 5 * S, "c", "orderbook_delta", 1, "B",
                      "released", t + 5 * S)])  # fmt: skip
    store(two["g2"], [snap("g2", "A", t, 1, 1, book), gap("g2", "A", t + 2 * S, 1, 5, t + 2 * S),
                      snap("g2", "B", t, 1, 2, book), gap("g2", "B", t + 2 * S, 1, 5, t + 2 * S)])  # fmt: skip
    sync_all(dedup_config(production_db, two))
    rows = gaps_of(production_db)
    # A: g1 lost at t+1 s (disconnected), g2 at t+2 s: a gap until g1's snapshot at t+3 s, verified (same book).
    # B: g2 lost it at t+2 s while g1 held it; g1 released it at t+5 s: the market left capture, no gap
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [("A", t + 2 * S, t + 3 * S, True)]


def test_the_record_is_rebuilt_when_late_evidence_arrives(two: dict[str, str], production_db: str) -> None:
    """Evidence that reaches production late (a writer behind) corrects the record: a snapshot that shows g2 held
    the book removes a gap derived without it."""
    t = now_minus(600)
    m, book = "KXC-26DEC06-T50", [(50_000, 5)]
    store(two["g1"], [snap("g1", m, t, 1, 1, book), gap("g1", m, t + 3 * S, 1, 2, t + 2 * S),
                      snap("g1", m, t + 5 * S, 2, 1, book)])  # fmt: skip
    store(two["g2"], [snap("g2", m, t + 10 * S, 1, 1, book)])  # g2 began its book only later ...
    cfg = dedup_config(production_db, two)
    sync_all(cfg)
    assert [(r[1], r[2]) for r in gaps_of(production_db)] == [(t + 2 * S, t + 5 * S)]
    store(two["g2"], [snap("g2", m, t + S, 7, 1, book)])  # ... but here is its earlier one, merged late
    sync_all(cfg)
    assert gaps_of(production_db) == []


def test_build_coverage_is_idempotent(two: dict[str, str], production_db: str) -> None:
    t = now_minus(600)
    m, book = "KXD-26DEC06-T50", [(50_000, 5)]
    for gid in ("g1", "g2"):
        store(two[gid], [snap(gid, m, t, 1, 1, book), gap(gid, m, t + 3 * S, 1, 2, t + 2 * S),
                         snap(gid, m, t + 5 * S, 2, 1, book)])  # fmt: skip
    cfg = dedup_config(production_db, two)
    sync_all(cfg)
    first = gaps_of(production_db)
    assert len(first) == 1 and first[0][3] is True
    with psycopg.connect(production_db) as prod:
        prod.execute("DELETE FROM coverage_progress")  # forget every cursor: everything rebuilt again
        prod.commit()
        build_coverage(prod, {"g1": None, "g2": None}, 30 * S)
    assert [r[:4] for r in gaps_of(production_db)] == [r[:4] for r in first]
