"""The coverage record: every stretch where production cannot be complete for a market's book, and only those.

Coverage comes from evidence, per gatherer and market. A gatherer holds a market's book from its WebSocket
snapshot of it until the first of: a sequence gap on that subscription (from the gap's `since_us`), the
subscription's end (`subscription_ends`: the connection lost, the gatherer stopped, the market released), an
outage of the process (`capture_outages` channel `*`: books begun before the next process started end at its
`from_us`), or its beats stopping (`capture_beats`: a gatherer silent for `dead_after_s` holds nothing after its
last beat). A process that is up but has no snapshot of a market yet does not hold it.

A coverage gap of a market is a stretch where no gatherer holds its book while one has lost it (a gatherer
that never held it wants nothing). It ends when a gatherer holds the book again (its snapshot), or when a
gatherer releases the market: its registry saw it finish (every registry reads the same exchange), so its book
moves no more and nobody wants it. A gap ended by a snapshot is then checked: production's book when
the gap began (the book the last holder had: its snapshot plus its subscription's deltas up to its end) plus
every delta production holds from there to the snapshot's cut, against the snapshot. Equal: nothing of this
market was lost (`verified_complete`). Different: the gap stands, with the differing levels. So a message
Kalshi loses for everyone leaves an unverified gap on the market whose book it changed, and verified ones on
the other markets of the subscriptions that lost it.

The record is rebuilt per market from its evidence whenever evidence about it arrives, and only up to the
horizon where every live gatherer's evidence is in (the oldest live last beat, less `SETTLE_US`), so evidence
that arrives late corrects it. Channel `trade` gaps (every gatherer's trade capture out at once) come from
capture outages (dedup._gaps) and are healed from REST.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

from dedup._lineage import NEVER, Delta, Snapshot, apply, book_end, lineage, snapshot_from_row
from dedup._sync import job_lock

log = logging.getLogger(__name__)
CHANNEL = "orderbook_delta"
OPEN_END = NEVER  # a gap no snapshot has ended yet
SETTLE_US = 5_000_000  # evidence of a moment reaches production within this of the gatherer's beat after it
CUT_WINDOW_US = 2_000_000  # how far before its arrival a snapshot may have been cut (exchange and network)
# A check is final once the horizon is this far past the gap's end: every delta of the stretch has been merged
# from every gatherer by then (the delta writers may lag the evidence a little). Until then it is provisional
# and done again each round.
FINAL_AFTER_US = 30_000_000
BATCH = 500  # markets rebuilt per query


# ---- evidence -------------------------------------------------------------------------------------------------


@dataclass(order=True)
class Evidence:
    at_us: int
    order: int  # at one moment: a start moved back to its own end (-1), ends (0), starts (1)
    gatherer_id: str = field(compare=False)
    kind: str = field(compare=False)  # 'start' | 'lost' | 'released'
    sid: int | None = field(compare=False, default=None)  # an end of one subscription only; None: every book
    seq: int | None = field(compare=False, default=None)
    # a start's snapshot arrival, the key of its row: at_us may be moved back to the start's own end (below)
    snapshot_us: int | None = field(compare=False, default=None)


@dataclass
class Hold:
    gatherer_id: str
    received_us: int  # its snapshot's arrival
    sid: int | None
    seq: int | None


@dataclass
class Gap:
    market: str
    from_us: int
    to_us: int
    base: Hold | None  # the book the last holder had when it began
    ended_by: Hold | None  # the snapshot that ended it (None: open, or nobody wants the market any more)
    sources: list[str]


@dataclass
class Liveness:
    """Per source: its last beat and the process that sent it; `dead`: silent for dead_after."""

    beats: dict[str, int]
    dead: set[str]
    horizon_us: int


def liveness(prod: psycopg.Connection[Any], sources: list[str], now_us: int, dead_after_us: int) -> Liveness:
    beats = {
        g: int(b)
        for g, b in prod.execute(
            "SELECT gatherer_id, beat_us FROM capture_beats WHERE gatherer_id = ANY(%s)", (sources,)
        )
    }
    dead = {g for g, b in beats.items() if now_us - b > dead_after_us}
    live = [b for g, b in beats.items() if g not in dead]
    # a source that never beat (a gatherer of an older version) is taken as alive now
    live += [now_us for g in sources if g not in beats]
    horizon = (min(live) if live else now_us) - SETTLE_US
    return Liveness(beats, dead, horizon)


def _outages(prod: psycopg.Connection[Any]) -> dict[str, list[tuple[int, int, int | None]]]:
    """gatherer -> [(from, to, process_started)] of its process outages."""
    out: dict[str, list[tuple[int, int, int | None]]] = defaultdict(list)
    for g, f, t, started in prod.execute(
        "SELECT gatherer_id, from_us, to_us, process_started_us FROM capture_outages WHERE channel = '*' ORDER BY 2"
    ):
        out[g].append((int(f), int(t), None if started is None else int(started)))
    return out


def _evidence_rows(
    prod: psycopg.Connection[Any], markets: list[str], lo: list[int], hi: int
) -> dict[str, list[tuple[str, int, str, int | None, int | None, str]]]:
    """Per market its starts and ends after its own `lo` up to `hi`, and at or before `lo` each gatherer's last
    start and each subscription's last end (an end of an older subscription must not end a newer book):
    (gatherer, at, kind, sid, seq, detail)."""
    params = (markets, lo)
    pairs = "unnest(%s::text[], %s::bigint[]) AS d(m, lo)"
    rows: list[tuple[Any, ...]] = []
    rows += prod.execute(
        f"SELECT d.m, s.gatherer_id, s.received_us, 'start', s.sid, s.seq FROM {pairs} CROSS JOIN LATERAL "
        "(SELECT gatherer_id, received_us, sid, seq FROM orderbook_snapshots WHERE market_ticker = d.m "
        "AND source = 'ws' AND received_us > d.lo AND received_us <= %s) s",
        (*params, hi),
    ).fetchall()
    rows += prod.execute(
        f"SELECT d.m, s.gatherer_id, s.received_us, 'start', s.sid, s.seq FROM {pairs} CROSS JOIN LATERAL "
        "(SELECT DISTINCT ON (gatherer_id) gatherer_id, received_us, sid, seq FROM orderbook_snapshots "
        "WHERE market_ticker = d.m AND source = 'ws' AND received_us <= d.lo ORDER BY gatherer_id, received_us DESC) s",
        params,
    ).fetchall()
    ends = (
        "SELECT gatherer_id, COALESCE(since_us, detected_us) AS at, 'lost' AS kind, sid, NULL::bigint AS seq "
        "FROM sequence_gaps WHERE market_ticker = d.m AND channel = 'orderbook_delta' AND kind = 'skip' "
        "UNION ALL SELECT gatherer_id, since_us, CASE WHEN reason = 'released' THEN 'released' ELSE 'lost' END, "
        "sid, NULL FROM subscription_ends WHERE market_ticker = d.m AND channel = 'orderbook_delta'"
    )
    rows += prod.execute(
        f"SELECT d.m, e.gatherer_id, e.at, e.kind, e.sid, e.seq FROM {pairs} CROSS JOIN LATERAL "
        f"(SELECT * FROM ({ends}) x WHERE x.at > d.lo AND x.at <= %s) e",
        (*params, hi),
    ).fetchall()
    rows += prod.execute(
        f"SELECT d.m, e.gatherer_id, e.at, e.kind, e.sid, e.seq FROM {pairs} CROSS JOIN LATERAL "
        f"(SELECT DISTINCT ON (gatherer_id, sid) * FROM ({ends}) x WHERE x.at <= d.lo "
        "ORDER BY gatherer_id, sid, x.at DESC) e",
        params,
    ).fetchall()
    out: dict[str, list[tuple[str, int, str, int | None, int | None, str]]] = defaultdict(list)
    for m, g, at, kind, sid, seq in rows:
        out[m].append((g, int(at), kind, sid, seq, ""))
    return out


def market_evidence(
    rows: Iterable[tuple[str, int, str, int | None, int | None, str]],
    outages: Mapping[str, list[tuple[int, int, int | None]]],
    live: Liveness,
    sources: list[str],
) -> list[Evidence]:
    """One market's evidence in time order, outages and silences included, starts a dead process made dropped."""
    out: list[Evidence] = []
    for g, at, kind, sid, seq, _ in rows:
        if g not in sources:
            continue
        if kind == "start":
            # a snapshot the process that died made in its last moments (inside the outage, before the next
            # process started) began no book that outlived it
            if any(f <= at and (started is None or at < started) and at <= t for f, t, started in outages.get(g, [])):
                continue
            if g in live.dead and at > live.beats[g]:
                continue
            out.append(Evidence(at, 1, g, "start", sid, seq, at))
        else:
            out.append(Evidence(at, 0, g, kind, sid))
    # A gap's since_us is an exchange time (the last frame in sequence before the loss), a snapshot's moment a
    # receive time, and the two clocks differ by the latency: a loss right after a subscription's snapshot can
    # date its end before the snapshot's arrival, though it came after it in the subscription's sequence, and a loss
    # while a subscription's snapshots still arrive is dated from its subscribe (snapshots carry no time). The book
    # held nothing after since_us: its start moves back to its end. Its snapshot stays what it is, a true book cut
    # before the loss in the sequence, so a gap check can start or end from it (Hold keeps its arrival).
    first_end: dict[tuple[str, int], int] = {}
    for e in out:
        if e.kind != "start" and e.sid is not None:
            key = (e.gatherer_id, e.sid)
            first_end[key] = min(first_end.get(key, e.at_us), e.at_us)
    for e in out:
        if e.kind == "start" and e.sid is not None and first_end.get((e.gatherer_id, e.sid), e.at_us) < e.at_us:
            e.at_us, e.order = first_end[(e.gatherer_id, e.sid)], -1  # before its end at that moment
    for g in sources:
        for f, _, _ in outages.get(g, []):
            out.append(Evidence(f, 0, g, "lost"))
        if g in live.dead:
            out.append(Evidence(live.beats[g], 0, g, "lost"))
    out.sort()
    return out


def timeline(market: str, evidence: list[Evidence], lo: int, hi: int) -> list[Gap]:
    """The market's gaps that end after `lo`, from its evidence (all of it up to `hi`, in time order)."""
    holds: dict[str, Hold] = {}
    lost: dict[str, tuple[int, Hold | None]] = {}  # gatherer -> (when, the book it lost)
    gaps: list[Gap] = []
    start: int | None = None
    base: Hold | None = None
    for ev in evidence:
        if ev.at_us > hi:
            break
        g = ev.gatherer_id
        if ev.kind == "start":
            holds[g] = Hold(g, ev.at_us if ev.snapshot_us is None else ev.snapshot_us, ev.sid, ev.seq)
            lost.pop(g, None)
        elif ev.kind == "released":
            # the market left capture (a registry saw it finish: every gatherer's agrees): nobody wants its book
            if g in holds and (holds[g].sid is None or holds[g].sid == ev.sid):
                holds.pop(g)
            lost.clear()
        elif g in holds and (ev.sid is None or holds[g].sid is None or holds[g].sid == ev.sid):
            lost[g] = (ev.at_us, holds.pop(g))
        if start is None and not holds and lost:
            start = max(t for t, _ in lost.values())
            base = max(lost.values(), key=lambda v: v[0])[1]
        elif start is not None and (holds or not lost):
            ended = holds[g] if holds and g in holds and ev.kind == "start" else None
            gaps.append(Gap(market, start, ev.at_us, base, ended, []))
            start, base = None, None
    if start is not None:
        gaps.append(Gap(market, start, OPEN_END, base, None, []))
    return [gp for gp in gaps if gp.to_us > lo and gp.to_us > gp.from_us]


# ---- the check of a gap ---------------------------------------------------------------------------------------


@dataclass
class Check:
    verified: bool
    differing: list[dict[str, Any]] | None  # the levels that differ (the closest candidate); None when verified
    note: str | None = None  # why it could not be checked (then unverified, tried again)


def _levels_diff(
    a: tuple[dict[int, int], dict[int, int]], b: tuple[dict[int, int], dict[int, int]]
) -> list[dict[str, Any]]:
    out = []
    for side, x, y in (("yes", a[0], b[0]), ("no", a[1], b[1])):
        for price in sorted(x.keys() | y.keys(), reverse=True):
            if x.get(price, 0) != y.get(price, 0):
                out.append({"side": side, "price": price, "snapshot": x.get(price, 0), "production": y.get(price, 0)})
    return out


def check_gap(
    gap: Gap,
    prod: psycopg.Connection[Any],
    sources: Mapping[str, psycopg.Connection[Any] | None],
    horizon: int,
) -> Check:
    """Production's book before the gap plus every delta production holds up to the ending snapshot's cut,
    against that snapshot. The cut of a snapshot is pinned by its own subscription's first delta after it; a
    snapshot whose subscription sent none yet takes production's deltas up to where that subscription's book is
    known to run without a gap."""
    if gap.ended_by is None or gap.base is None:  # an open gap, or one before any book: nothing to check
        return Check(False, None, "no snapshot ended it" if gap.ended_by is None else "no book before it")
    b_src, y_src = sources.get(gap.base.gatherer_id), sources.get(gap.ended_by.gatherer_id)
    if b_src is None or y_src is None:
        return Check(False, None, "a source database is unreachable")
    sb, sy = _snapshot(prod, gap.market, gap.base), _snapshot(prod, gap.market, gap.ended_by)
    if sb is None or sy is None:
        return Check(False, None, "a snapshot is not in production yet")
    before, _ = lineage(b_src, sb)
    after, y_gap = lineage(y_src, sy)
    before_keys, after_keys = set(before), set(after)
    # the subscription's first delta after its snapshot pins the cut; one that sent nothing yet says nothing
    # happened to the book from the cut up to where its book is known to run (its first gap, its end, or the
    # horizon): production's deltas up to there are all before the cut
    hi = after[0][0] if after else gap.ended_by.received_us if y_gap else book_end(prod, sy, horizon)
    lo = before[-1][0] if before else sb.received_us - CUT_WINDOW_US
    rows = prod.execute(
        "SELECT exchange_ts_us, side, price, delta, occurrence FROM orderbook_deltas WHERE market_ticker = %s "
        "AND exchange_ts_us >= %s AND exchange_ts_us <= %s ORDER BY exchange_ts_us, occurrence",
        (gap.market, lo, hi),
    ).fetchall()
    between: list[Delta] = [r for r in ((int(a), s, p, d, o) for a, s, p, d, o in rows) if r not in before_keys
                            and r not in after_keys]  # fmt: skip
    book = sb.copy()
    apply(book, before)
    want = sy.copy()
    if before:  # pinned at the last delta the base book holds: every later one of production is in between
        apply(book, between)
        diff = _levels_diff(want, book)
        return Check(not diff, diff or None)
    # the base snapshot's own cut is unknown: its subscription sent nothing after it before it ended. The
    # deltas near its arrival may be before or after that cut; those after its arrival are after it.
    fixed = [d for d in between if d[0] > sb.received_us]
    near = [d for d in between if d[0] <= sb.received_us]
    apply(book, fixed)
    best: list[dict[str, Any]] | None = None
    for k in range(len(near) + 1):  # the cut before near[k]: near[k:] are after it
        candidate = (dict(book[0]), dict(book[1]))
        apply(candidate, near[k:])
        diff = _levels_diff(want, candidate)
        if not diff:
            return Check(True, None)
        if best is None or len(diff) < len(best):
            best = diff
    return Check(False, best)


def _snapshot(prod: psycopg.Connection[Any], market: str, hold: Hold) -> Snapshot | None:
    row = prod.execute(
        "SELECT received_us, sid, seq, yes_bid_prices, yes_bid_sizes, no_bid_prices, no_bid_sizes "
        "FROM orderbook_snapshots WHERE gatherer_id = %s AND market_ticker = %s AND received_us = %s AND source = 'ws'",
        (hold.gatherer_id, market, hold.received_us),
    ).fetchone()
    return None if row is None else snapshot_from_row(hold.gatherer_id, market, row)


# ---- one round ------------------------------------------------------------------------------------------------


@dataclass
class CoverageResult:
    horizon_us: int
    markets_rebuilt: int = 0
    gaps: int = 0
    verified: int = 0
    unverified: int = 0
    dead: list[str] = field(default_factory=list)
    skipped_locked: bool = False  # another round was running


_GUARD = "ingest_xid < pg_snapshot_xmin(pg_current_snapshot())"
_EVIDENCE_TABLES = {  # table -> (the moment its rows are evidence of, the rows that are evidence of a book)
    "orderbook_snapshots": ("received_us", "source = 'ws'"),
    "sequence_gaps": ("COALESCE(since_us, detected_us)", "channel = 'orderbook_delta' AND kind = 'skip'"),
    "subscription_ends": ("since_us", "channel = 'orderbook_delta'"),
}


def _progress(prod: psycopg.Connection[Any], name: str) -> tuple[str, int, int | None]:
    row = prod.execute("SELECT last_xid::text, last_id, value_us FROM coverage_progress WHERE name = %s", (name,))
    got = row.fetchone()
    return (str(got[0]), int(got[1]), got[2]) if got else ("0", 0, None)


def _set_progress(
    prod: psycopg.Connection[Any], name: str, xid: str = "0", id_: int = 0, value: int | None = None
) -> None:
    prod.execute(
        "INSERT INTO coverage_progress (name, last_xid, last_id, value_us) VALUES (%s, %s::xid8, %s, %s) "
        "ON CONFLICT (name) DO UPDATE SET last_xid = EXCLUDED.last_xid, last_id = EXCLUDED.last_id, "
        "value_us = EXCLUDED.value_us",
        (name, xid, id_, value),
    )


@dataclass
class _Progress:
    """Where the round got to, written only once every market it found dirty is rebuilt: a round that dies half
    way leaves the cursors where they were, and the next one rebuilds those markets again."""

    cursors: dict[str, tuple[str, int]] = field(default_factory=dict)
    dead: dict[str, int] = field(default_factory=dict)  # gatherers found silent, at their last beat
    revived: list[str] = field(default_factory=list)

    def save(self, prod: psycopg.Connection[Any], horizon: int) -> None:
        for name, (xid, id_) in self.cursors.items():
            _set_progress(prod, name, xid, id_)
        for g, beat in self.dead.items():
            _set_progress(prod, f"dead:{g}", value=beat)
        for g in self.revived:
            prod.execute("DELETE FROM coverage_progress WHERE name = %s", (f"dead:{g}",))
        _set_progress(prod, "horizon", value=horizon)


def _dirty(prod: psycopg.Connection[Any], previous_horizon: int, horizon: int, progress: _Progress) -> dict[str, int]:
    """market -> from when to rebuild it: evidence newly merged into production (whatever its time), and
    evidence the horizon has just passed."""
    dirty: dict[str, int] = {}

    def mark(market: str, at: int) -> None:
        if market:
            dirty[market] = min(dirty.get(market, at), at)

    for table, (at, where) in _EVIDENCE_TABLES.items():
        xid, last, _ = _progress(prod, f"cursor:{table}")
        rows = prod.execute(
            f"SELECT market_ticker, {at}, ingest_xid::text, ingest_id FROM {table} "
            f"WHERE {where} AND (ingest_xid, ingest_id) > (%s::xid8, %s) AND {_GUARD} ORDER BY ingest_xid, ingest_id",
            (xid, last),
        ).fetchall()
        for m, t, _, _ in rows:
            mark(m, min(int(t), previous_horizon) - 1)
        if rows:
            progress.cursors[f"cursor:{table}"] = (rows[-1][2], rows[-1][3])
        for (m,) in prod.execute(
            f"SELECT DISTINCT market_ticker FROM {table} WHERE {where} AND {at} > %s AND {at} <= %s",
            (previous_horizon - SETTLE_US, horizon),
        ):
            mark(m, previous_horizon - SETTLE_US)
    return dirty


def _held_by(prod: psycopg.Connection[Any], gatherer_id: str, before_us: int) -> list[str]:
    return [
        m
        for (m,) in prod.execute(
            "SELECT DISTINCT market_ticker FROM orderbook_snapshots WHERE gatherer_id = %s AND source = 'ws' "
            "AND received_us <= %s",
            (gatherer_id, before_us),
        )
    ]


def _whole_gatherer_changes(
    prod: psycopg.Connection[Any], live: Liveness, previous_horizon: int, dirty: dict[str, int], progress: _Progress
) -> None:
    """Outages and silences end every book of a gatherer: each market it held is rebuilt."""

    def mark_all(g: str, at: int) -> None:
        for m in _held_by(prod, g, at):
            dirty[m] = min(dirty.get(m, at - 1), at - 1)

    xid, last, _ = _progress(prod, "cursor:capture_outages")
    rows = prod.execute(
        f"SELECT gatherer_id, from_us, ingest_xid::text, ingest_id FROM capture_outages WHERE channel = '*' "
        f"AND (ingest_xid, ingest_id) > (%s::xid8, %s) AND {_GUARD} ORDER BY ingest_xid, ingest_id",
        (xid, last),
    ).fetchall()
    for g, f, _, _ in rows:
        mark_all(g, int(f))
    if rows:
        progress.cursors["cursor:capture_outages"] = (rows[-1][2], rows[-1][3])
    was_dead = {name.removeprefix("dead:"): v for name, v in prod.execute(
        "SELECT name, value_us FROM coverage_progress WHERE name LIKE 'dead:%%'")}  # fmt: skip
    for g in live.dead - was_dead.keys():
        log.warning("coverage: gatherer %s has not beaten since %d: its books end there", g, live.beats[g])
        mark_all(g, live.beats[g])
        progress.dead[g] = live.beats[g]
    for g in was_dead.keys() - live.dead:
        mark_all(g, int(was_dead[g] or previous_horizon))
        progress.revived.append(g)


def build_coverage(
    prod: psycopg.Connection[Any],
    sources: Mapping[str, psycopg.Connection[Any] | None],
    dead_after_us: int,
    now_us: int | None = None,
) -> CoverageResult:
    """One round: rebuild the coverage record of every market with new evidence, up to the horizon. `sources`:
    every configured gatherer, its database connection or None when unreachable (its gaps are checked later)."""
    with job_lock(prod, "*", "coverage_gaps") as mine:  # one round at a time: they rebuild the same markets
        if not mine:
            _, _, stored = _progress(prod, "horizon")
            prod.commit()
            return CoverageResult(int(stored or 0), skipped_locked=True)
        return _build(prod, sources, dead_after_us, now_us if now_us is not None else time.time_ns() // 1000)


def _build(
    prod: psycopg.Connection[Any],
    sources: Mapping[str, psycopg.Connection[Any] | None],
    dead_after_us: int,
    now_us: int,
) -> CoverageResult:
    ids = sorted(sources)
    live = liveness(prod, ids, now_us, dead_after_us)
    _, _, prev = _progress(prod, "horizon")
    previous_horizon = int(prev) if prev is not None else 0
    horizon = max(live.horizon_us, previous_horizon)
    result = CoverageResult(horizon, dead=sorted(live.dead))
    progress = _Progress()
    dirty = _dirty(prod, previous_horizon, horizon, progress)
    _whole_gatherer_changes(prod, live, previous_horizon, dirty, progress)
    outages = _outages(prod)
    prod.commit()
    markets = sorted(dirty)
    for k in range(0, len(markets), BATCH):
        chunk = markets[k : k + BATCH]
        los = [dirty[m] for m in chunk]
        evidence = _evidence_rows(prod, chunk, los, horizon)
        for m, lo in zip(chunk, los, strict=True):
            gaps = timeline(m, market_evidence(evidence.get(m, []), outages, live, ids), lo, horizon)
            _store(prod, m, lo, gaps, ids, sources, result)
            result.markets_rebuilt += 1
        prod.commit()
    progress.save(prod, horizon)
    prod.commit()
    _recheck(prod, sources, result)
    return result


def _store(
    prod: psycopg.Connection[Any],
    market: str,
    lo: int,
    gaps: list[Gap],
    ids: list[str],
    sources: Mapping[str, psycopg.Connection[Any] | None],
    result: CoverageResult,
) -> None:
    """Replace the market's gaps that end after `lo` by the rebuilt ones; a gap already stored with the same
    bounds and a final check keeps it."""
    known = {
        (int(f), int(t), e): (bool(v), d)
        for f, t, e, v, d in prod.execute(
            "SELECT from_us, to_us, end_snapshot_us, verified_complete, differing FROM coverage_gaps "
            "WHERE market_ticker = %s AND channel = %s AND to_us > %s AND check_note IS NULL",
            (market, CHANNEL, lo),
        )
    }
    prod.execute(
        "DELETE FROM coverage_gaps WHERE market_ticker = %s AND channel = %s AND to_us > %s", (market, CHANNEL, lo)
    )
    for gap, check in _merged(gaps, prod, sources, known, result.horizon_us):
        _put(prod, gap, check, ids)
        result.gaps += 1
        result.verified += check.verified
        result.unverified += not check.verified


def _put(prod: psycopg.Connection[Any], gap: Gap, check: Check, ids: list[str]) -> None:
    base, end = gap.base, gap.ended_by
    prod.execute(
        "INSERT INTO coverage_gaps (market_ticker, channel, from_us, to_us, sources, verified_complete, differing, "
        "base_by, base_snapshot_us, ended_by, end_snapshot_us, check_note) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (market_ticker, channel, from_us) DO UPDATE SET to_us = EXCLUDED.to_us, "
        "verified_complete = EXCLUDED.verified_complete, differing = EXCLUDED.differing, base_by = EXCLUDED.base_by, "
        "base_snapshot_us = EXCLUDED.base_snapshot_us, ended_by = EXCLUDED.ended_by, "
        "end_snapshot_us = EXCLUDED.end_snapshot_us, check_note = EXCLUDED.check_note, "
        "ingest_id = nextval('kd_ingest_seq')",
        (gap.market, CHANNEL, gap.from_us, gap.to_us, ids, check.verified,
         None if check.differing is None else json.dumps(check.differing),
         base.gatherer_id if base else None, base.received_us if base else None,
         end.gatherer_id if end else None, end.received_us if end else None, check.note),
    )  # fmt: skip


def _checked(
    gap: Gap, prod: psycopg.Connection[Any], sources: Mapping[str, psycopg.Connection[Any] | None], horizon: int
) -> Check:
    """The gap's check, provisional while the horizon is not yet FINAL_AFTER_US past its end."""
    check = check_gap(gap, prod, sources, horizon)
    if check.note is None and gap.ended_by is not None and horizon < gap.to_us + FINAL_AFTER_US:
        check.note = "provisional"
    return check


def _merged(
    gaps: list[Gap],
    prod: psycopg.Connection[Any],
    sources: Mapping[str, psycopg.Connection[Any] | None],
    known: Mapping[tuple[int, int, int | None], tuple[bool, Any]],
    horizon: int,
) -> list[tuple[Gap, Check]]:
    """Each gap with its check (a final one kept from before when its bounds are the same); unverified gaps that
    touch are one gap, so a quant drops one stretch, not a run of them."""
    out: list[tuple[Gap, Check]] = []
    for gap in gaps:
        end_us = gap.ended_by.received_us if gap.ended_by else None
        prior = known.get((gap.from_us, gap.to_us, end_us))
        check = Check(prior[0], prior[1]) if prior is not None else _checked(gap, prod, sources, horizon)
        if out and not check.verified and not out[-1][1].verified and out[-1][0].to_us >= gap.from_us:
            prev, prev_check = out.pop()
            gap = Gap(gap.market, prev.from_us, max(prev.to_us, gap.to_us), prev.base, gap.ended_by, [])
            levels = (prev_check.differing or []) + (check.differing or [])
            check = Check(False, levels or None, check.note or prev_check.note)
        out.append((gap, check))
    return out


def _recheck(
    prod: psycopg.Connection[Any], sources: Mapping[str, psycopg.Connection[Any] | None], result: CoverageResult
) -> None:
    """Gaps whose check is not final (provisional, or a source was down): again, now."""
    rows = prod.execute(
        "SELECT market_ticker, from_us, to_us, base_by, base_snapshot_us, ended_by, end_snapshot_us, sources "
        "FROM coverage_gaps WHERE channel = %s AND check_note IS NOT NULL AND ended_by IS NOT NULL "
        "AND base_by IS NOT NULL ORDER BY from_us LIMIT 2000",
        (CHANNEL,),
    ).fetchall()
    for market, f, t, bg, bt, eg, et, ids in rows:
        base, end = _hold(prod, market, bg, int(bt)), _hold(prod, market, eg, int(et))
        if base is None or end is None:
            continue
        gap = Gap(market, int(f), int(t), base, end, [])
        _put(prod, gap, _checked(gap, prod, sources, result.horizon_us), list(ids))
    prod.commit()


def _hold(prod: psycopg.Connection[Any], market: str, gatherer_id: str, received_us: int) -> Hold | None:
    row = prod.execute(
        "SELECT sid, seq FROM orderbook_snapshots WHERE gatherer_id = %s AND market_ticker = %s AND received_us = %s "
        "AND source = 'ws'",
        (gatherer_id, market, received_us),
    ).fetchone()
    return None if row is None else Hold(gatherer_id, received_us, row[0], row[1])


def coverage_summary(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Production's coverage record in numbers: book gaps verified complete, unverified (the holes), still
    open, their market-seconds, and trade gaps open and healed."""
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE channel = 'orderbook_delta' AND verified_complete), "
        "count(*) FILTER (WHERE channel = 'orderbook_delta' AND NOT verified_complete AND to_us < 2^62), "
        "count(*) FILTER (WHERE channel = 'orderbook_delta' AND to_us >= 2^62), "
        "coalesce(sum(to_us - from_us) FILTER (WHERE channel = 'orderbook_delta' AND NOT verified_complete "
        "AND to_us < 2^62), 0) / 1e6, "
        "count(*) FILTER (WHERE channel = 'trade' AND trades_healed_us IS NULL), "
        "count(*) FILTER (WHERE channel = 'trade' AND trades_healed_us IS NOT NULL) FROM coverage_gaps"
    ).fetchone()
    verified, unverified, open_, seconds, trade_open, trade_healed = row or (0, 0, 0, 0, 0, 0)
    return {
        "book_gaps_verified": verified,
        "book_gaps_unverified": unverified,
        "book_gaps_open": open_,
        "unverified_market_seconds": round(float(seconds), 3),
        "trade_gaps_open": trade_open,
        "trade_gaps_healed": trade_healed,
    }
