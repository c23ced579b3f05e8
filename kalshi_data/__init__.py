"""kalshi-data for research: the Parquet lake (or production) as books, replays and tables.

    import kalshi_data as kd

    lake = kd.Lake("lake/")                      # a folder, or "s3://bucket/prefix"
    book = lake.book("KXHIGHLAX-26MAR01-T40", "2026-03-01T15:30:00Z")
    for state in lake.replay(["KXHIGHLAX-26MAR01-T40"], "2026-03-01", "2026-03-02"):
        print(state.at, state.best_yes_bid(), state.in_gap)
    trades = lake.table("trades", "2026-03-01", "2026-03-02", markets=["KXHIGHLAX-26MAR01-T40"])

Prices are integers of hundred-thousandths of a dollar and sizes hundredths of a contract wherever the API hands
out levels (exact and fast); `dollars` and `contracts` turn them into Decimals. `table` and `sql` give the lake's
views: decimals of dollars and contracts, UTC timestamps. A time is a datetime, an ISO text, unix seconds,
milliseconds or microseconds, or "now". `Production` answers the same questions from the database, and the two
agree (tests/test_replay.py).
"""

from dedup import BookState
from kalshi_data._books import Book, contracts, dollars
from kalshi_data._lake import Lake
from kalshi_data._production import Production

__all__ = ["Book", "BookState", "Lake", "Production", "contracts", "dollars"]
