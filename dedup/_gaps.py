"""Coverage gaps: stretches where every gatherer had a gap for a market (the book is not exact there).

A gatherer's gap for a market starts at the last frame it received in sequence before the gap
(sequence_gaps.since_us; detected_us on rows from before that column) and ends at its next WebSocket snapshot
of that market after detecting it (the resubscribe). A stretch covered by any live gatherer is no gap.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import psycopg

Interval = tuple[int, int]
OPEN_END = 2**62  # a gap not yet healed


def gatherer_gap_intervals(prod: psycopg.Connection[Any], since_us: int) -> dict[str, dict[str, list[Interval]]]:
    """market -> gatherer -> [from, to) intervals of missing coverage, from production's rows."""
    rows = prod.execute(
        """SELECT g.market_ticker, g.gatherer_id, COALESCE(g.since_us, g.detected_us),
                  (SELECT min(s.received_us) FROM orderbook_snapshots s
                    WHERE s.market_ticker = g.market_ticker AND s.gatherer_id = g.gatherer_id
                      AND s.source = 'ws' AND s.received_us >= g.detected_us)
             FROM sequence_gaps g
            WHERE g.channel = 'orderbook_delta' AND g.kind = 'skip' AND g.market_ticker <> ''
              AND g.detected_us >= %s""",
        (since_us,),
    ).fetchall()
    out: dict[str, dict[str, list[Interval]]] = defaultdict(lambda: defaultdict(list))
    for market, gid, start, end in rows:
        out[market][gid].append((start, end if end is not None else OPEN_END))
    return out


def intersect(a: list[Interval], b: list[Interval]) -> list[Interval]:
    out = []
    for s1, e1 in a:
        for s2, e2 in b:
            s, e = max(s1, s2), min(e1, e2)
            if s < e:
                out.append((s, e))
    return sorted(out)


def blind_everywhere(by_gatherer: Mapping[str, list[Interval]], sources: list[str]) -> list[Interval]:
    """The stretches inside an interval of every source; none where some source has none (it covered)."""
    if not sources or set(by_gatherer) != set(sources):
        return []
    common = sorted(by_gatherer[sources[0]])
    for gid in sources[1:]:
        common = intersect(common, sorted(by_gatherer[gid]))
    return common


def derive_coverage_gaps(prod: psycopg.Connection[Any], sources: list[str], since_us: int = 0) -> int:
    """Record stretches where every source had a gap for a market. Returns rows added."""
    added = 0
    for market, by_gatherer in gatherer_gap_intervals(prod, since_us).items():
        for s, e in blind_everywhere(by_gatherer, sources):
            cur = prod.execute(
                "INSERT INTO coverage_gaps (market_ticker, from_us, to_us, sources) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (market_ticker, channel, from_us) "
                "DO UPDATE SET to_us = LEAST(coverage_gaps.to_us, EXCLUDED.to_us)",
                (market, s, e, sorted(sources)),
            )
            added += cur.rowcount
    added += derive_outage_gaps(prod, sources, since_us)
    prod.commit()
    return added


def outage_intervals(
    prod: psycopg.Connection[Any], since_us: int, channels: tuple[str, ...]
) -> dict[str, list[Interval]]:
    """gatherer -> [from, to) stretches it captured nothing on any of `channels` (capture_outages)."""
    out: dict[str, list[Interval]] = defaultdict(list)
    for gid, start, end in prod.execute(
        "SELECT gatherer_id, from_us, to_us FROM capture_outages WHERE channel = ANY(%s) AND to_us >= %s",
        (list(channels), since_us),
    ):
        out[gid].append((start, end))
    return out


def derive_outage_gaps(prod: psycopg.Connection[Any], sources: list[str], since_us: int = 0) -> int:
    """Where every source was out at once: a trade coverage gap (market '': every market), and a book gap of
    every market where every process was down; then trade gaps a gatherer has refilled from REST are marked
    healed. Returns rows added."""
    added = 0
    for channel, kinds in (("trade", ("*", "trade")), ("orderbook_delta", ("*",))):
        for s, e in blind_everywhere(outage_intervals(prod, since_us, kinds), sources):
            cur = prod.execute(
                "INSERT INTO coverage_gaps (market_ticker, channel, from_us, to_us, sources) "
                "VALUES ('', %s, %s, %s, %s) ON CONFLICT (market_ticker, channel, from_us) DO NOTHING",
                (channel, s, e, sorted(sources)),
            )
            added += cur.rowcount
    # a gap is healed once one gatherer refilled an outage of its own that covers the whole gap from REST
    prod.execute(
        """UPDATE coverage_gaps g SET trades_healed_us = o.healed_us, trades_backfilled = o.trades_backfilled
             FROM capture_outages o
            WHERE g.channel = 'trade' AND g.trades_healed_us IS NULL AND o.healed_us IS NOT NULL
              AND o.channel IN ('*', 'trade') AND o.from_us <= g.from_us AND o.to_us >= g.to_us"""
    )
    return added
