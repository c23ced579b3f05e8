"""The book audit: each REST order book snapshot a gatherer took is compared with the book that gatherer's
WebSocket capture gives at the same moment, so a loss the sequence numbers cannot show (the exchange dropping
a delta and numbering on, a gatherer bug slipping a row) shows up in production, where there is no ledger.

A REST snapshot carries no sequence number and no time, only the moment the gatherer received it (t): the
exchange read its book at some moment shortly before t, and which captured state that was is not known. The
captured book is the gatherer's last WebSocket snapshot of the market before t and its subscription's deltas
after it (dedup._lineage: same gatherer-local sid, higher seq, up to the subscription's first gap); a read is
judged only when the gatherer held that book continuously from the snapshot to the read (no gap, subscription
end or death of its process in between: else `gap`). The book before the read takes the deltas received
before t - `window`; the candidate states are that book and the book after each further delta received within
`window` of t, in seq order.
`matched`: the REST book equals one of them. `mismatched`: none, with the differing levels of the closest
kept. A delta the capture lacks stays wrong in every state after it, so a loss shows at the first read more
than `window` after it, whatever the market's pace (a market that never rests is judged too). Other results:
`no_baseline` (no WebSocket snapshot yet), `gap` (a sequence gap on the subscription since its snapshot:
the book is known to be incomplete there and is resynced).

Runs in production's deduplicator over each source database (read only), after the writers have settled:
a snapshot is audited once the source holds deltas received `window` + 1 s past it. Results go to
production's `book_audits`; a checkpoint per (gatherer, market) keeps the replay from starting at the
subscription's snapshot every time.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg

from core import metrics
from dedup._book import apply_delta
from dedup._lineage import Snapshot, book_end, gap_seq, snapshot_from_row

log = logging.getLogger(__name__)
SKEW_US = 60_000_000  # exchange times vs a gatherer's receive times: bounds the delta scan, generously
SETTLE_US = 1_000_000


@dataclass
class Book:
    sid: int
    seq: int
    received_us: int  # deltas received before this are in (the checkpoint's cut, or the snapshot's arrival)
    yes: dict[int, int] = field(default_factory=dict)
    no: dict[int, int] = field(default_factory=dict)
    baseline_us: int | None = None  # the WebSocket snapshot this book began at (its identity)

    def apply(self, side: bool, price: int, delta: int) -> None:
        apply_delta(self.yes if side else self.no, price, delta)


def _levels(prices: list[int] | None, sizes: list[int] | None) -> dict[int, int]:
    return dict(zip(prices or [], sizes or [], strict=True))


def differing(rest: Book, captured: Book) -> list[dict[str, Any]]:
    out = []
    for side, a, b in (("yes", rest.yes, captured.yes), ("no", rest.no, captured.no)):
        for price in sorted(a.keys() | b.keys(), reverse=True):
            if a.get(price, 0) != b.get(price, 0):
                out.append({"side": side, "price": price, "rest": a.get(price, 0), "captured": b.get(price, 0)})
    return out


def _frontier(source: psycopg.Connection[Any]) -> int | None:
    """Receive time of the newest delta the source's writers have stored: how far its capture is settled."""
    row = source.execute(
        "SELECT received_us FROM orderbook_deltas ORDER BY ingest_xid DESC, ingest_id DESC LIMIT 1"
    ).fetchone()
    return None if row is None else int(row[0])


def audit_source(
    gatherer_id: str,
    source: psycopg.Connection[Any],
    prod: psycopg.Connection[Any],
    window_us: int,
    limit: int = 20_000,
    now_us: int | None = None,
) -> Counter[str]:
    """Audit the source's REST snapshots after production's cursor for it; returns results by kind."""
    now_us = now_us if now_us is not None else time.time_ns() // 1000
    row = prod.execute("SELECT audited_to_us FROM audit_cursors WHERE source = %s", (gatherer_id,)).fetchone()
    cursor = int(row[0]) if row else 0
    frontier = _frontier(source)
    if frontier is None:
        return Counter()
    settled = min(frontier, now_us) - window_us - SETTLE_US
    snaps = source.execute(
        "SELECT market_ticker, received_us, yes_bid_prices, yes_bid_sizes, no_bid_prices, no_bid_sizes "
        "FROM orderbook_snapshots WHERE source = 'rest' AND received_us > %s AND received_us <= %s "
        "ORDER BY received_us LIMIT %s",
        (cursor, settled, limit + 1),
    ).fetchall()
    if len(snaps) > limit:  # stop before the last receive time, so no row at a boundary is skipped
        last = snaps[-1][1]
        snaps = [s for s in snaps if s[1] < last]
    if not snaps:
        return Counter()
    by_market: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for s in snaps:
        by_market[s[0]].append(s)
    checkpoints = {
        m: Book(sid, seq, rcv, _levels(yp, ys), _levels(np_, ns), base)
        for m, sid, seq, rcv, yp, ys, np_, ns, base in prod.execute(
            "SELECT market_ticker, sid, seq, received_us, yes_prices, yes_sizes, no_prices, no_sizes, baseline_us "
            "FROM audit_checkpoints WHERE gatherer_id = %s AND market_ticker = ANY(%s)",
            (gatherer_id, list(by_market)),
        )
    }
    results: Counter[str] = Counter()
    audits: list[tuple[Any, ...]] = []
    saved: dict[str, Book] = {}
    for market, rest_snaps in by_market.items():
        for r in _audit_market(gatherer_id, source, market, rest_snaps, checkpoints.get(market), window_us):
            results[r[3]] += 1
            audits.append(r[:-1])
            if r[-1] is not None:
                saved[market] = r[-1]
    with prod.transaction():
        with prod.cursor() as cur:
            cur.executemany(
                "INSERT INTO book_audits (gatherer_id, market_ticker, rest_received_us, result, levels, "
                "deltas_applied, baseline_us, differing) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                audits,
            )
            cur.executemany(
                "INSERT INTO audit_checkpoints (gatherer_id, market_ticker, sid, seq, received_us, yes_prices, "
                "yes_sizes, no_prices, no_sizes, baseline_us) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (gatherer_id, market_ticker) DO UPDATE SET sid = EXCLUDED.sid, seq = EXCLUDED.seq, "
                "received_us = EXCLUDED.received_us, yes_prices = EXCLUDED.yes_prices, "
                "yes_sizes = EXCLUDED.yes_sizes, no_prices = EXCLUDED.no_prices, no_sizes = EXCLUDED.no_sizes, "
                "baseline_us = EXCLUDED.baseline_us",
                [
                    (gatherer_id, m, b.sid, b.seq, b.received_us, list(b.yes), list(b.yes.values()), list(b.no),
                     list(b.no.values()), b.baseline_us)
                    for m, b in saved.items()
                ],
            )  # fmt: skip
            cur.execute(
                "INSERT INTO audit_cursors (source, audited_to_us) VALUES (%s, %s) ON CONFLICT (source) "
                "DO UPDATE SET audited_to_us = EXCLUDED.audited_to_us, updated_at = now()",
                (gatherer_id, max(s[1] for s in snaps)),
            )
    source.rollback()
    for result, n in results.items():
        metrics.BOOK_AUDITS.labels(result).inc(n)
    if results["mismatched"]:
        log.error("book audit %s: %d REST snapshots differ from the captured book", gatherer_id, results["mismatched"])
    return results


def _audit_market(
    gatherer_id: str,
    source: psycopg.Connection[Any],
    market: str,
    rest_snaps: list[tuple[Any, ...]],
    checkpoint: Book | None,
    window_us: int,
) -> list[tuple[Any, ...]]:
    """One market's REST snapshots (oldest first): rows of book_audits, each with the book to keep after it."""
    first_t, last_t = rest_snaps[0][1], rest_snaps[-1][1]
    base_rows = source.execute(
        "SELECT received_us, sid, seq, yes_bid_prices, yes_bid_sizes, no_bid_prices, no_bid_sizes "
        "FROM orderbook_snapshots WHERE gatherer_id = %s AND market_ticker = %s AND source = 'ws' "
        "AND received_us < %s ORDER BY received_us",
        (gatherer_id, market, last_t),
    ).fetchall()
    # WebSocket snapshots that can serve as a baseline: the last before the first REST one, and any after
    bases = [snapshot_from_row(gatherer_id, market, r) for r in base_rows if r[0] >= first_t]
    before = [r for r in base_rows if r[0] < first_t]
    if before:
        bases.insert(0, snapshot_from_row(gatherer_id, market, before[-1]))
    out: list[tuple[Any, ...]] = []
    book: Book | None = None
    held: tuple[Snapshot, int, list[tuple[Any, ...]]] | None = None  # the baseline, where its book ends, its deltas
    for _, t, yp, ys, np_, ns in rest_snaps:
        base = next((b for b in reversed(bases) if b.received_us < t), None)
        if base is None:
            out.append((gatherer_id, market, t, "no_baseline", 0, 0, None, None, None))
            continue
        if held is None or held[0] is not base:
            end = book_end(source, base)
            held = (base, end, _deltas(source, base, end, last_t + window_us, checkpoint))
            if checkpoint is not None and checkpoint.baseline_us == base.received_us:
                book = checkpoint  # replay from where the last audit stopped, not from the snapshot
            else:
                book = Book(base.sid or 0, base.seq or 0, base.received_us, dict(base.yes), dict(base.no),
                            base.received_us)  # fmt: skip
        _, end, deltas = held
        assert book is not None
        if end <= t + window_us:  # the book ended before the read could be judged: a gap, an end, a death
            out.append((gatherer_id, market, t, "gap", 0, 0, base.received_us, None, None))
            continue
        applied = 0
        moving: list[tuple[bool, int, int]] = []  # the book's deltas received within the window, in seq order
        for d_seq, d_rcv, side, price, delta in deltas:
            if d_seq <= book.seq:
                continue
            if d_rcv < t - window_us:
                book.apply(side, price, delta)
                book.seq, book.received_us = d_seq, d_rcv
                applied += 1
            elif d_rcv <= t + window_us:
                moving.append((side, price, delta))
        rest = Book(0, 0, t, _levels(yp, ys), _levels(np_, ns))
        levels = len(rest.yes) + len(rest.no)
        diff = _closest(rest, book, moving)
        result = "mismatched" if diff else "matched"
        row = (gatherer_id, market, t, result, levels, applied, base.received_us, json.dumps(diff) if diff else None)
        out.append((*row, book))
    return out


def _deltas(
    source: psycopg.Connection[Any], base: Snapshot, end: int, until: int, checkpoint: Book | None
) -> list[tuple[Any, ...]]:
    """The book's deltas (its subscription's, after its snapshot, before its first gap, received before the
    book ended and before `until`), from the checkpoint on when it belongs to this book."""
    gap = gap_seq(source, base)
    start = checkpoint.seq if checkpoint is not None and checkpoint.baseline_us == base.received_us else base.seq
    return source.execute(
        "SELECT seq, received_us, side, price, delta FROM orderbook_deltas WHERE market_ticker = %s AND sid = %s "
        "AND seq > %s AND seq < %s AND received_us >= %s AND received_us <= %s AND exchange_ts_us >= %s "
        "AND exchange_ts_us <= %s ORDER BY seq",
        (base.market, base.sid, start or 0, gap if gap is not None else 2**62, base.received_us, min(end, until),
         base.received_us - SKEW_US, until + SKEW_US),
    ).fetchall()  # fmt: skip


def _closest(rest: Book, book: Book, moving: list[tuple[bool, int, int]]) -> list[dict[str, Any]]:
    """The REST book was read at one moment inside the window, which of the captured states is unknown: none
    differing if it equals the captured book before any of the window's deltas or after any of them (in seq
    order), else the differing levels of the state closest to it. A delta the capture lacks stays wrong in
    every later state, so a loss before the window still shows; `book` itself is not moved."""
    diff = differing(rest, book)
    if not diff or not moving:
        return diff
    state = Book(book.sid, book.seq, book.received_us, dict(book.yes), dict(book.no))
    for side, price, delta in moving:
        state.apply(side, price, delta)
        d = differing(rest, state)
        if not d:
            return d
        if _distance(d) < _distance(diff):
            diff = d
    return diff


def _distance(diff: list[dict[str, Any]]) -> tuple[int, int]:
    """Fewer differing levels first, then the smaller total size apart."""
    return len(diff), sum(abs(d["rest"] - d["captured"]) for d in diff)
