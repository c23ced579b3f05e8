"""Trade coverage gaps: stretches where every gatherer's trade capture was out at once (capture outages, channel
`*` or `trade`), recorded with market '' (every market) and marked healed once a gatherer has refilled them
from REST. Book coverage is per market, from evidence (dedup._coverage)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import psycopg

Interval = tuple[int, int]


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


def outage_intervals(prod: psycopg.Connection[Any], since_us: int) -> dict[str, list[Interval]]:
    """gatherer -> [from, to) stretches it captured no trades (capture_outages, channel '*' or 'trade')."""
    out: dict[str, list[Interval]] = defaultdict(list)
    for gid, start, end in prod.execute(
        "SELECT gatherer_id, from_us, to_us FROM capture_outages WHERE channel IN ('*', 'trade') AND to_us >= %s",
        (since_us,),
    ):
        out[gid].append((start, end))
    return out


def derive_trade_gaps(prod: psycopg.Connection[Any], sources: list[str], since_us: int = 0) -> int:
    """Where every source's trade capture was out at once: a trade coverage gap (market '': every market); then
    trade gaps a gatherer has refilled from REST are marked healed. Returns rows added."""
    added = 0
    for s, e in blind_everywhere(outage_intervals(prod, since_us), sources):
        cur = prod.execute(
            "INSERT INTO coverage_gaps (market_ticker, channel, from_us, to_us, sources) "
            "VALUES ('', 'trade', %s, %s, %s) ON CONFLICT (market_ticker, channel, from_us) DO NOTHING",
            (s, e, sorted(sources)),
        )
        added += cur.rowcount
    # a gap is healed once one gatherer refilled an outage of its own that covers the whole gap from REST
    prod.execute(
        """UPDATE coverage_gaps g SET trades_healed_us = o.healed_us, trades_backfilled = o.trades_backfilled,
                  ingest_id = nextval('kd_ingest_seq')
             FROM capture_outages o
            WHERE g.channel = 'trade' AND g.trades_healed_us IS NULL AND o.healed_us IS NOT NULL
              AND o.channel IN ('*', 'trade') AND o.from_us <= g.from_us AND o.to_us >= g.to_us"""
    )
    prod.commit()
    return added
