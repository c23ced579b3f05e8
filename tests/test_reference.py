"""The lake's reference tables as each day ended, and its settlements: markets changing over three days (one
created, determined and finalized, one idle, one only seen through its object), their event and series, read
back per day with every column production stores; settlements from lifecycle events and from market objects."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq

from core.records import Event, LifecycleEvent, Market, Series
from dedup import export_all, lake_sql
from dedup._lake_schema import production_columns
from tests.dedupkit import DAY0, dedup_config, store

DAY_US = 86_400_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
H = 3_600_000_000


def market(at: int, ticker: str, status: str, result: str | None = None, value: int | None = None) -> Market:
    return Market(
        "g1", at + 5, at, ticker, "EV-1", "SER", "binary", status, f"{ticker} title", DAY0, DAY0 + 3 * DAY_US,
        DAY0 + 4 * DAY_US, None, 40_000, 45_000, 42_000, 1000, 500, result,
        f'{{"ticker": "{ticker}", "status": "{status}"}}', "default", None, "linear_cent",
        '[{"start": "0.0000", "end": "1.0000", "step": "0.0100"}]', 7, value,
    )  # fmt: skip


def day(n: int) -> str:
    return (datetime.fromtimestamp(DAY0 / 1e6, UTC).date() + timedelta(days=n)).isoformat()


def rows(lake: Path, table: str, n: int) -> list[dict[str, Any]]:
    files = sorted((lake / table / f"date={day(n)}").glob("*.parquet"))
    return [r for f in files for r in pq.read_table(f).to_pylist()]


def test_reference_tables_as_each_day_ended_and_settlements(production_db: str, tmp_path: Path) -> None:
    prod = production_db
    store(prod, [Series("g1", DAY0 + H, "SER", "Series", "Weather", "daily", '{"ticker": "SER"}')])
    store(prod, [Event("g1", DAY0 + H, "EV-1", "SER", "Event", "sub", "Weather", True, None, '{"e": 1}')])
    store(prod, [market(DAY0 + H, "MKT-A", "active"), market(DAY0 + H, "MKT-B", "active")])
    # day 2: A determined at noon (its lifecycle message too), finalized in the evening; C seen with a result
    noon = DAY0 + DAY_US + 12 * H
    store(prod, [market(noon, "MKT-A", "determined", "yes", 100_000)])
    store(prod, [LifecycleEvent("g1", noon + 9, "MKT-A", "determined", None, None, noon, None, "yes", None, None,
                                None, None, 100_000)])  # fmt: skip
    store(prod, [market(noon + 8 * H, "MKT-A", "finalized", "yes", 100_000)])
    store(prod, [market(noon + 2 * H, "MKT-C", "finalized", "no", 0)])
    store(prod, [LifecycleEvent("g1", noon + 9 * H, "MKT-A", "settled", None, None, None, noon + 9 * H, "yes", None,
                                None, None, None, 100_000)])  # fmt: skip
    with psycopg.connect(prod) as conn:
        conn.execute(
            "INSERT INTO sync_cursors (source, table_name, caught_up_us) VALUES ('g1', 'markets', %s)",
            (DAY0 + 3 * DAY_US + 12 * H,),
        )
    lake = tmp_path / "lake"
    cfg = dedup_config(prod, {"g1": prod}, lake=f"file://{lake}")
    export_all(cfg, now_us=DAY0 + 3 * DAY_US + 12 * H)

    def state(n: int) -> dict[str, tuple[Any, ...]]:
        return {r["ticker"]: (r["status"], r["result"]) for r in rows(lake, "markets", n)}

    assert state(0) == {"MKT-A": ("active", None), "MKT-B": ("active", None)}
    assert state(1) == {"MKT-A": ("finalized", "yes"), "MKT-B": ("active", None), "MKT-C": ("finalized", "no")}
    assert state(2) == {"MKT-B": ("active", None)}  # A and C were final before the day: gone from it
    assert state(3) == {"MKT-B": ("active", None)}  # the day in progress
    for n in range(4):  # the event of the day's markets, the series of the day's events
        assert [r["event_ticker"] for r in rows(lake, "events", n)] == ["EV-1"]
        assert [r["ticker"] for r in rows(lake, "series", n)] == ["SER"]
    # every column production stores, the raw object included
    a = rows(lake, "markets", 1)[0]
    assert list(a) == production_columns("markets")
    assert json.loads(a["raw"]) == {"ticker": "MKT-A", "status": "finalized"} and a["settlement_value"] == 100_000
    assert a["price_ranges"] is not None and a["exchange_index"] == 7
    # settlements: on the day each was determined; from the lifecycle where it spoke, else the market object
    got = {r["market_ticker"]: r for n in range(4) for r in rows(lake, "settlements", n)}
    assert set(got) == {"MKT-A", "MKT-C"}
    assert got["MKT-A"]["determined_by"] == "lifecycle" and got["MKT-A"]["result"] == "yes"
    assert (got["MKT-A"]["determined_us"] - EPOCH) // timedelta(microseconds=1) == noon
    assert (got["MKT-A"]["settled_us"] - EPOCH) // timedelta(microseconds=1) == noon + 9 * H
    assert got["MKT-C"]["determined_by"] == "market" and got["MKT-C"]["settled_us"] is None
    assert got["MKT-C"]["settlement_value"] == 0 and got["MKT-C"]["event_ticker"] == "EV-1"
    # a trade joins its market's title and result through the lake alone (lake sql: decimals of dollars)
    _, out = lake_sql(
        lake, "SELECT s.market_ticker, m.title, s.result, s.settlement_value FROM settlements s "
        "JOIN markets m ON m.ticker = s.market_ticker AND m.date = s.date ORDER BY 1",
    )  # fmt: skip
    assert [(r[0], r[1], r[2], str(r[3])) for r in out] == [
        ("MKT-A", "MKT-A title", "yes", "1.00000"),
        ("MKT-C", "MKT-C title", "no", "0.00000"),
    ]
    assert export_all(cfg, now_us=DAY0 + 3 * DAY_US + 12 * H)["exported"] == []  # nothing changed
    # a change today re-exports today's markets, and the days before stay as they ended
    store(prod, [market(DAY0 + 3 * DAY_US + H, "MKT-B", "closed")])
    again = export_all(cfg, now_us=DAY0 + 3 * DAY_US + 12 * H)
    assert {(e["table"], e["day"]) for e in again["exported"] if e["table"] == "markets"} == {("markets", day(3))}
    assert state(3) == {"MKT-B": ("closed", None)} and state(2) == {"MKT-B": ("active", None)}
