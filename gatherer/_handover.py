"""Make before break: a resync replaces an orderbook subscription (old, A) by a new one (B) on a second socket,
with no blind window and no delta stored twice or lost by this gatherer.

Kalshi has no atomic resubscribe, and what a second subscription to the same markets on one connection does
is undocumented (kalshi-api.md), so B lives on a new socket. From the moment B's subscribe is sent, A's frames
are held here rather than stored; B's snapshots are stored as they come (each starts B's book of its
market) and B's deltas held too. Once every snapshot came, A is unsubscribed: its answer comes after every
frame A had to send, so A's stream then reaches past every snapshot's cut. When B's stream has passed A's last
frame as well, each market is resolved, and A's socket closed:

- A's held deltas of the market are its exchange sequence up to A's end; those after the snapshot's cut are
  the first deltas B sent after its snapshot, in the same order. So A's held list ends with a prefix of B's
  list: that overlap is dropped from A (B has it), the rest of A (before the cut) is stored as A's.
- Identical deltas in one exchange millisecond are numbered (`occurrence`) from the subscription's start: A
  numbers the cut's millisecond fully, B only from its cut. B's deltas in that millisecond are renumbered
  after the ones before the cut (A's counts when holding began, and A's held deltas before the cut).

So the gatherer stores every delta once: A's before each market's cut, B's after it, each under its own
subscription, and B's book (its snapshot plus its deltas) is complete. The one ambiguity: identical deltas in
one millisecond on both sides of the cut, where the overlap is taken as large as the sequences allow.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.records import OrderbookDelta, OrderbookSnapshot, Record

Ident = tuple[int, bool, int, int]  # (exchange ts, side, price, delta): a delta's content


def _ident(d: OrderbookDelta) -> Ident:
    return (d.exchange_ts_us, d.side, d.price, d.delta)


@dataclass
class HandoverStats:
    markets: int = 0
    old_kept: int = 0  # A's held deltas stored (before their market's cut)
    old_dropped: int = 0  # A's held deltas B also sent (after the cut): stored once, as B's
    new_renumbered: int = 0  # B's deltas in the cut's millisecond numbered after the ones before the cut


@dataclass
class Handover:
    """The held frames of one resync and their resolution. `emit` stores records (the connection's sink)."""

    old_sid: int
    new_sid: int
    markets: frozenset[str]
    emit: Callable[[list[Record]], None]
    # A's identical-delta counters when holding began: market -> (exchange ts, {(side, price, delta): count})
    old_counts: dict[str, tuple[int, dict[tuple[Any, ...], int]]] = field(default_factory=dict)
    old_held: dict[str, list[OrderbookDelta]] = field(default_factory=lambda: defaultdict(list))
    new_held: dict[str, list[OrderbookDelta]] = field(default_factory=lambda: defaultdict(list))
    snapshots: set[str] = field(default_factory=set)  # markets whose B snapshot came
    old_position: int = -1  # exchange time of A's newest frame
    new_position: int = -1  # exchange time of B's newest frame
    stats: HandoverStats = field(default_factory=HandoverStats)

    # ---- frames as they come ---------------------------------------------------------------------------
    def from_old(self, rec: Record) -> None:
        """A record of A's: a delta is held until its market is resolved; anything else is stored now."""
        if type(rec) is OrderbookDelta:
            self.old_held[rec.market_ticker].append(rec)
            self.old_position = max(self.old_position, rec.exchange_ts_us)
        else:
            self.emit([rec])

    def from_new(self, rec: Record) -> None:
        """A record of B's: its snapshot of a market is stored now (B's book starts there), deltas held."""
        if type(rec) is OrderbookDelta:
            self.new_held[rec.market_ticker].append(rec)
            self.new_position = max(self.new_position, rec.exchange_ts_us)
        else:
            if type(rec) is OrderbookSnapshot:
                self.snapshots.add(rec.market_ticker)
            self.emit([rec])

    @property
    def snapshots_missing(self) -> frozenset[str]:
        return self.markets - self.snapshots

    def new_has_passed_old(self) -> bool:
        """B's stream has gone past A's last frame: every delta A sent after a cut, B has sent too."""
        return self.new_position > self.old_position

    # ---- the end ---------------------------------------------------------------------------------------
    def resolve(self) -> HandoverStats:
        """A has ended (unsubscribed: its stream is complete) and B has passed it (or went quiet): store A's
        deltas before each market's cut and B's held deltas, renumbered where the cut's millisecond needs it."""
        out: list[Record] = []
        for market in sorted(self.old_held.keys() | self.new_held.keys()):
            old, new = self.old_held.get(market, []), self.new_held.get(market, [])
            if market not in self.snapshots:  # B never carried it: A's deltas are the only record
                out += old
                self.stats.old_kept += len(old)
                continue
            keep = len(old) - _overlap(old, new)
            self.stats.old_kept += keep
            self.stats.old_dropped += len(old) - keep
            out += old[:keep]
            out += self._renumbered(market, old[:keep], new)
        self.stats.markets = len(self.snapshots)
        self.old_held.clear()
        self.new_held.clear()
        if out:
            self.emit(out)
        return self.stats

    def abort(self) -> None:
        """B failed before the end: A goes on as it was; its held deltas are stored as they came."""
        held = sorted((d for ds in self.old_held.values() for d in ds), key=lambda d: d.seq)
        self.old_held.clear()
        self.new_held.clear()
        if held:
            self.emit(list[Record](held))

    def _renumbered(self, market: str, before: list[OrderbookDelta], new: list[OrderbookDelta]) -> list[Record]:
        """B's deltas; in the millisecond of B's first one (the cut's), each identical delta numbered after the
        ones of that millisecond before the cut (A's counts when holding began plus A's held ones kept)."""
        if not new:
            return []
        cut_ms = new[0].exchange_ts_us
        ts0, counts0 = self.old_counts.get(market, (None, {}))
        prior: dict[tuple[Any, ...], int] = defaultdict(int)
        if ts0 == cut_ms:
            for key, n in counts0.items():
                prior[key] += n
        for d in before:
            if d.exchange_ts_us == cut_ms:
                prior[(d.side, d.price, d.delta)] += 1
        if not prior:
            return list(new)
        out: list[Record] = []
        for d in new:
            shift = prior.get((d.side, d.price, d.delta), 0) if d.exchange_ts_us == cut_ms else 0
            if shift:
                d = d._replace(occurrence=d.occurrence + shift)
                self.stats.new_renumbered += 1
            out.append(d)
        return out


def _overlap(old: list[OrderbookDelta], new: list[OrderbookDelta]) -> int:
    """How many of A's last held deltas are B's first ones: the largest j with old[-j:] == new[:j] by content
    (B's numbering may be lower than A's in the cut's millisecond, never higher)."""
    if not old or not new:
        return 0
    first = new[0].exchange_ts_us
    # only A's deltas at or after B's first one can be B's: A before that time is before the cut
    start = next((k for k, d in enumerate(old) if d.exchange_ts_us >= first), len(old))
    for k in range(start, len(old)):
        j = len(old) - k
        if j <= len(new) and all(
            _ident(a) == _ident(b) and a.occurrence >= b.occurrence for a, b in zip(old[k:], new[:j], strict=True)
        ):
            return j
    return 0
