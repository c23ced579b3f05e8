"""The lake's books: `bbo`, `book_1s` and `bars_1m` equal their slow, obvious reading of production's raw rows
(tests/bookkit.py), across midnight, through an unverified coverage gap, for a complete day and the day in
progress; the same production exports to the same bytes; and the lake answers `book` and `replay` as production
does (kalshi_data.Lake against kalshi_data.Production, and `kalshi-data book --lake` against `--dsn`)."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.conversions import us_to_iso
from core.migrations import migrate
from dedup import export_all
from kalshi_data import Lake, Production
from tests.bookkit import DAY_US, Raw, Scenario, fill_books, slow_tables
from tests.dedupkit import dedup_config
from tests.services import TempDatabases

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BOOK_TABLES = ("bbo", "book_1s", "bars_1m")


@dataclass
class Captured:
    prod: str
    lake: Path
    sc: Scenario
    raw: Raw


@pytest.fixture(scope="module", params=[3, 8])
def captured(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Captured]:
    dbs = TempDatabases()
    prod = dbs.create("kdbooks")
    migrate(prod, "production")
    sc = fill_books(prod, request.param)
    lake = tmp_path_factory.mktemp("lake") / "lake"
    export_all(dedup_config(prod, {"g1": prod}, lake=f"file://{lake}"), now_us=sc.midnight + 2 * DAY_US)
    yield Captured(prod, lake, sc, Raw(prod))
    dbs.drop_all()


def export_afresh(c: Captured, lake: Path, now_us: int) -> None:
    """Export everything to a new lake (production's manifest records what the first lake holds: forget it)."""
    with psycopg.connect(c.prod) as conn:
        conn.execute("DELETE FROM export_manifest")
    export_all(dedup_config(c.prod, {"g1": c.prod}, lake=f"file://{lake}"), now_us=now_us)


def _plain(v: Any) -> Any:
    if isinstance(v, datetime):
        return (v - EPOCH) // timedelta(microseconds=1)
    return v


def lake_rows(lake: Path, table: str) -> list[tuple[Any, ...]]:
    files = sorted((lake / table).glob("date=*/*.parquet"))
    rows: list[tuple[Any, ...]] = []
    for f in files:  # in the files' order: the lake's sort order is part of what is checked
        rows += [tuple(_plain(v) for v in r.values()) for r in pq.read_table(f).to_pylist()]
    return rows


def test_book_tables_equal_their_slow_reading_across_midnight_and_a_gap(captured: Captured) -> None:
    c = captured
    want: dict[str, list[tuple[Any, ...]]] = {t: [] for t in BOOK_TABLES}
    for lo in (c.sc.midnight - DAY_US, c.sc.midnight):
        for table, rows in slow_tables(c.raw, lo, lo + DAY_US).items():
            want[table] += rows
    for table in BOOK_TABLES:
        got = lake_rows(c.lake, table)
        assert got == want[table], table
        days = {p.parent.name for p in (c.lake / table).glob("date=*/*.parquet")}
        assert len(days) == 2, (table, days)  # rows on both sides of midnight
    # not vacuous: the unverified gaps flag rows, the verified one none
    assert any(r[-1] for r in want["book_1s"])
    assert any(r[-2] for r in want["bars_1m"]) and any(r[-1] for r in want["bars_1m"])
    assert not any(r[-2] for r in want["bars_1m"] if r[0] == c.sc.markets[0] and r[1] < c.sc.end - 60_000_000)
    assert any(r[10] is not None and r[2] is None for r in want["bars_1m"])  # a market that only trades


def test_the_day_in_progress_has_book_tables_up_to_the_watermark(captured: Captured, tmp_path: Path) -> None:
    c = captured
    wm = c.sc.midnight + 100_500_000  # what every source synced, inside a minute: its bar closes there
    with psycopg.connect(c.prod) as conn:
        conn.execute("UPDATE sync_cursors SET caught_up_us = %s", (wm,))
    try:
        lake = tmp_path / "partial"
        export_afresh(c, lake, now_us=wm + 60_000_000)
    finally:
        with psycopg.connect(c.prod) as conn:
            conn.execute("UPDATE sync_cursors SET caught_up_us = %s", (c.sc.midnight + 2 * DAY_US,))
    day = datetime.fromtimestamp(c.sc.midnight / 1e6, UTC).date().isoformat()
    for table, rows in slow_tables(c.raw, c.sc.midnight, wm).items():
        today = [r for r in lake_rows(lake, table) if r[1] >= c.sc.midnight]
        assert today == rows, table
        manifest = json.loads((lake / table / f"date={day}" / "_manifest.json").read_text())
        assert manifest["complete"] is False and manifest["up_to_us"] == wm


def test_the_same_production_exports_the_same_bytes(captured: Captured, tmp_path: Path) -> None:
    c = captured
    again = tmp_path / "again"
    export_afresh(c, again, now_us=c.sc.midnight + 2 * DAY_US)
    for table in (*BOOK_TABLES, "orderbook_deltas", "trades"):
        for f in sorted((c.lake / table).glob("date=*/*.parquet")):
            assert (again / table / f.parent.name / f.name).read_bytes() == f.read_bytes(), f


# ---- the lake answers as production does --------------------------------------------------------------------


def _times(c: Captured) -> st.SearchStrategy[int]:
    """Around the window, and on the times the books change (where an off-by-one would show)."""
    changes = sorted({d[1] for d in c.raw.deltas} | {s[1] for s in c.raw.snaps})
    return st.one_of(
        st.integers(c.sc.start - 5_000_000, c.sc.end + 5_000_000),
        st.sampled_from(changes).flatmap(lambda t: st.sampled_from((t - 1, t, t + 1))),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_lake_gives_productions_book_and_replay(captured: Captured, data: st.DataObject) -> None:
    c = captured
    lake = Lake(c.lake)
    market = data.draw(st.sampled_from(c.raw.markets), label="market")
    a = data.draw(_times(c), label="a")
    b = data.draw(_times(c), label="b")
    lo, hi = min(a, b), max(a, b)
    start = data.draw(st.sampled_from(("latest", "first")), label="start")
    with Production(c.prod) as prod:
        try:
            want = prod.book(market, hi, start)
        except LookupError as e:
            with pytest.raises(LookupError, match="no snapshot"):
                lake.book(market, hi, start)
            assert str(e)
        else:
            assert lake.book(market, hi, start) == want
            slow = c.raw.book_at(market, hi)
            if start == "latest":  # and both equal the book by its definition
                assert slow is not None and (dict(want.yes), dict(want.no)) == slow
        several = data.draw(st.lists(st.sampled_from(c.raw.markets), min_size=1, max_size=3), label="markets")
        assert list(lake.replay(several, lo, hi)) == list(prod.replay(several, lo, hi))
    # the replay's last state of a market is its book at the end
    states = list(lake.replay(market, lo, hi))
    if states:
        assert (states[-1].yes, states[-1].no) == c.raw.book_at(market, hi)
        assert [s.at_us for s in states] == sorted(s.at_us for s in states)


def test_book_command_prints_the_same_from_the_lake_and_from_production(captured: Captured) -> None:
    """The command itself (argument parsing, output, errors), in this process: a fresh interpreter for each of the
    dozens of calls cost the suite half a minute; test_cli runs it as a process."""
    c = captured
    for market in c.raw.markets[:3]:
        inside_gap = [f + 1 for f, _ in c.sc.lost.values()]
        for at in (c.sc.midnight - 1, c.sc.midnight + 61_000_000, *inside_gap):
            args = ["book", market, "--at", us_to_iso(at), "--depth", "20"]
            dsn = _cli([*args, "--dsn", c.prod])
            lake = _cli([*args, "--lake", str(c.lake)])
            assert lake == dsn
            assert market in dsn[1] or "no snapshot" in dsn[2]


def _cli(argv: list[str]) -> tuple[int, str, str]:
    from cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_lake_table_reads_a_window_of_some_markets(captured: Captured) -> None:
    c = captured
    lake = Lake(c.lake)
    lo, hi = c.sc.midnight - 30_000_000, c.sc.midnight + 30_000_000  # across midnight: two date folders
    some = c.raw.markets[:2]
    trades = lake.table("trades", lo, hi, markets=some).to_pylist()
    want = sorted((r[0], r[1], r[2]) for r in c.raw.trades if r[0] in some and lo <= r[1] < hi)
    got = sorted((r["market_ticker"], (r["exchange_ts_us"] - EPOCH) // timedelta(microseconds=1), r["trade_id"])
                 for r in trades)  # fmt: skip
    assert got == want and got
    bars = lake.table("bars_1m", lo, hi, markets=some).to_pylist()
    assert {r["market_ticker"] for r in bars} <= set(some) and bars
    assert all(isinstance(r["bid_open"], Decimal) for r in bars if r["bid_open"] is not None)  # dollars, exact
    with pytest.raises(KeyError, match="no table 'book'"):
        lake.table("book", lo, hi)
