"""The ledger on disk equals the ledger in memory; a seed fixes the whole market; the book's cached best
bid follows every change."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from simulator import Exchange, ExchangeOptions, Ledger, load_jsonl
from simulator._book import Book


def run(seed: int, path: Path | None = None) -> Ledger:
    ledger = Ledger(path)
    ex = Exchange(ExchangeOptions(seed=seed, markets=200, active=20, lifecycle_interval_s=0), ledger)
    base = ex.now_us() + 1000  # after every book_init
    for k in range(3000):
        ex.step(base + k * 1000)
        if k % 100 == 0:
            ex.lifecycle_step(base + k * 1000)
    ledger.close()
    return ledger


def test_jsonl_round_trip(tmp_path: Path) -> None:
    ledger = run(5, tmp_path / "ledger.jsonl")
    on_disk = load_jsonl(tmp_path / "ledger.jsonl")
    for kind in ("delta", "trade", "ticker", "lifecycle", "book_init"):
        assert on_disk[kind] == ledger.rows(kind), kind
    assert len(on_disk["delta"]) > 2000


def test_same_seed_same_market_other_seed_other_market() -> None:
    a, b, c = run(7), run(7), run(8)
    for kind in ("delta", "trade", "book_init"):
        t = 2 if kind == "trade" else 1  # exchange times come from the wall clock: compare the rest
        rows_a = [r[:t] + r[t + 1 :] for r in a.rows(kind)]
        rows_b = [r[:t] + r[t + 1 :] for r in b.rows(kind)]
        assert rows_a == rows_b, kind
    assert a.rows("delta") != c.rows("delta")


def test_book_at_replays_deltas() -> None:
    ledger = run(9)
    ticker = ledger.rows("delta")[0][0]
    t_first = ledger.rows("delta")[0][1]
    before = ledger.book_at(ticker, t_first - 1)
    after = ledger.book_at(ticker, t_first)
    assert before is not None and after is not None
    first = ledger.rows("delta")[0]
    side = after.yes if first[2] else after.no
    side_before = before.yes if first[2] else before.no
    moved = sum(
        r[4]
        for r in ledger.rows("delta")
        if r[0] == ticker and r[1] == t_first and r[2] == first[2] and r[3] == first[3]
    )
    assert side.get(first[3], 0) - side_before.get(first[3], 0) == moved


@given(st.lists(st.tuples(st.booleans(), st.integers(1, 12), st.integers(-4, 4)), max_size=300))
def test_cached_best_bid_follows_every_change(ops: list[tuple[bool, int, int]]) -> None:
    book = Book({5: 100, 3: 7}, {2: 1})
    for yes, price, delta in ops:
        if book.side(yes).get(price, 0) + delta < 0:
            continue
        book.apply(yes, price, delta)
        assert book.best(True) == (max(book.yes) if book.yes else None)
        assert book.best(False) == (max(book.no) if book.no else None)
    book.clear()
    assert (book.best(True), book.best(False)) == (None, None)


def test_legacy_ws_mode_sends_only_whole_contracts_so_a_legacy_book_matches() -> None:
    """--ws-fields legacy promises whole contracts: partial cancels used to round toward zero on the wire
    (a quarter of deltas), so a legacy client's book drifted from the ledger."""
    import time

    from simulator._exchange import Exchange, ExchangeOptions
    from simulator._ledger import Ledger

    ex = Exchange(ExchangeOptions(seed=3, markets=200, active=50, ws_fields="legacy"), Ledger())
    t = time.time_ns() // 1000
    for k in range(5000):
        ex.step(t + k * 100)
    deltas, trades = ex.ledger.rows("delta"), ex.ledger.rows("trade")
    assert len(deltas) > 1000 and any(r[4] < 0 for r in deltas)
    assert all(r[4] % 100 == 0 for r in deltas) and all(r[5] % 100 == 0 for r in trades)


def test_every_ledger_kind_names_columns_of_its_table_in_the_catalog() -> None:
    """The ledger and the database must speak of the same columns: the comparison reads one, selects the other."""
    from core.tables import LAKE_TABLES
    from simulator import COLUMNS, EXCHANGE_KINDS, LEDGER_TABLES

    # what the exchange emits live, and the past's candles (the history backfill's table)
    assert set(LEDGER_TABLES) == {*EXCHANGE_KINDS, "candle"}
    for kind, table in LEDGER_TABLES.items():
        spec = LAKE_TABLES[table]
        assert set(COLUMNS[kind]) <= set(spec.columns), (kind, set(COLUMNS[kind]) - set(spec.columns))
        assert spec.time_column is not None
