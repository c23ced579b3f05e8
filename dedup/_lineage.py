"""A gatherer's book of a market: its WebSocket snapshot on one subscription and that subscription's deltas after
it, in seq order, as far as they run without a gap. The book audit and the coverage record both read a
source's books this way.

A subscription is told by its `sid`, the gatherer's own number (unique within a process run: Kalshi's sids
repeat on every socket). Numbers start again when the process does, so a book's deltas are only those received
before the next process of that gatherer started (`capture_outages.process_started_us`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from dedup._book import apply_delta

Delta = tuple[int, bool, int, int, int]  # (exchange ts, side, price, delta, occurrence): its natural key in a market
NEVER = 2**62


@dataclass
class Snapshot:
    gatherer_id: str
    market: str
    received_us: int
    sid: int | None
    seq: int | None
    yes: dict[int, int]
    no: dict[int, int]

    def copy(self) -> tuple[dict[int, int], dict[int, int]]:
        return dict(self.yes), dict(self.no)


def snapshot_from_row(gid: str, market: str, row: tuple[Any, ...]) -> Snapshot:
    """(received_us, sid, seq, yes prices, yes sizes, no prices, no sizes)."""
    rcv, sid, seq, yp, ys, np_, ns = row
    return Snapshot(gid, market, rcv, sid, seq, dict(zip(yp or [], ys or [], strict=True)),
                    dict(zip(np_ or [], ns or [], strict=True)))  # fmt: skip


def apply(book: tuple[dict[int, int], dict[int, int]], deltas: list[Delta]) -> None:
    yes, no = book
    for _, side, price, delta, _ in deltas:
        apply_delta(yes if side else no, price, delta)


def next_process_start(source: psycopg.Connection[Any], gatherer_id: str, after_us: int) -> int:
    """When the first process of this gatherer that started after `after_us` did (from its outage, or its beats,
    which it sends before opening any connection)."""
    row = source.execute(
        "SELECT min(s) FROM (SELECT process_started_us AS s FROM capture_outages WHERE gatherer_id = %(g)s "
        "AND channel = '*' AND process_started_us > %(t)s UNION ALL SELECT process_started_us FROM capture_beats "
        "WHERE gatherer_id = %(g)s AND process_started_us > %(t)s) x",
        {"g": gatherer_id, "t": after_us},
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else NEVER


def gap_seq(source: psycopg.Connection[Any], snap: Snapshot) -> int | None:
    """The first seq the snapshot's subscription lost after it (a 'skip' gap whose frames never came), if any:
    the book holds from the snapshot up to there."""
    if snap.sid is None or snap.seq is None:
        return None
    row = source.execute(
        "SELECT min(expected_seq) FROM sequence_gaps WHERE gatherer_id = %s AND channel = 'orderbook_delta' "
        "AND kind = 'skip' AND sid = %s AND market_ticker IN (%s, '') AND expected_seq > %s AND detected_us >= %s "
        "AND detected_us < %s",
        (snap.gatherer_id, snap.sid, snap.market, snap.seq, snap.received_us,
         next_process_start(source, snap.gatherer_id, snap.received_us)),
    ).fetchone()  # fmt: skip
    return int(row[0]) if row and row[0] is not None else None


def lineage(source: psycopg.Connection[Any], snap: Snapshot, until_us: int = NEVER) -> tuple[list[Delta], bool]:
    """The snapshot's subscription's deltas of its market after it, in seq order, up to its first gap and
    received before `until_us`, read from the gatherer's own database; and whether a gap ended it."""
    if snap.sid is None or snap.seq is None:
        return [], False
    bound = min(until_us, next_process_start(source, snap.gatherer_id, snap.received_us))
    gap = gap_seq(source, snap)
    rows = source.execute(
        "SELECT exchange_ts_us, side, price, delta, occurrence FROM orderbook_deltas "
        "WHERE market_ticker = %s AND sid = %s AND seq > %s AND seq < %s AND received_us >= %s AND received_us < %s "
        "AND exchange_ts_us >= %s ORDER BY seq",
        (snap.market, snap.sid, snap.seq, gap if gap is not None else 2**62, snap.received_us, bound,
         snap.received_us - 3_600_000_000),
    ).fetchall()  # fmt: skip
    return [(ts, side, price, delta, occ) for ts, side, price, delta, occ in rows], gap is not None


def book_end(conn: psycopg.Connection[Any], snap: Snapshot, horizon: int = NEVER) -> int:
    """Where the book begun at this snapshot ends, on this evidence (production's or the gatherer's own
    database: the same tables): its subscription's first lost seq (the gap's since), the subscription's end, or
    the death of the process that took it (its outage's from, when the next process started after the
    snapshot); else `horizon`. A snapshot the dying process took inside its own outage ends where it begins."""
    row = conn.execute(
        "SELECT min(at) FROM ("
        "SELECT COALESCE(since_us, detected_us) AS at FROM sequence_gaps WHERE gatherer_id = %(g)s "
        "AND market_ticker IN (%(m)s, '') AND channel = 'orderbook_delta' AND kind = 'skip' AND sid = %(sid)s "
        "AND detected_us >= %(r)s "
        "UNION ALL SELECT since_us FROM subscription_ends WHERE gatherer_id = %(g)s AND market_ticker = %(m)s "
        "AND channel = 'orderbook_delta' AND sid = %(sid)s AND ended_us >= %(r)s "
        "UNION ALL SELECT GREATEST(from_us, %(r)s) FROM capture_outages WHERE gatherer_id = %(g)s AND channel = '*' "
        "AND to_us >= %(r)s AND COALESCE(process_started_us, to_us) > %(r)s) e",
        {"g": snap.gatherer_id, "m": snap.market, "sid": snap.sid, "r": snap.received_us},
    ).fetchone()
    return min(horizon, int(row[0])) if row and row[0] is not None else horizon
