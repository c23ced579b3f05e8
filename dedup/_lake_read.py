"""The lake as a source of books (dedup._replay.BookSource): the same answers production gives, from the Parquet
files. DuckDB reads the stored columns (integers, times, the receive delay), so no value passes through a
decimal or a float; the market prunes row groups and a date range prunes day folders."""

from __future__ import annotations

from bisect import bisect_right
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dedup._lake_sql import connect
from dedup._replay import SKEW_US, Delta, Snap

DAY = timedelta(days=1)
_MIN_DAY = "1970-01-01"


def _day(us: int, shift: int = 0) -> str:
    """The date folder of an exchange time, moved by `shift` days (a bound that keeps clock skew inside)."""
    us = max(0, min(us, 253_402_300_799_000_000))  # the years 1970-9999: the dates a folder can have
    return (datetime.fromtimestamp(us / 1e6, UTC).date() + shift * DAY).isoformat()


class LakeSource:
    """Books from the lake at `root` (a folder or s3://bucket/prefix)."""

    def __init__(self, root: str | Path, s3_endpoint_url: str | None = None) -> None:
        self.con = connect(root, s3_endpoint_url, decimals=False)

    def _rows(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self.con.execute(sql, params).fetchall()
        return rows

    def snapshot(self, market: str, at_us: int, first: bool) -> Snap | None:
        order = "ASC" if first else "DESC"
        sql = (
            "SELECT epoch_us(received_us), yes_bid_prices, yes_bid_sizes, no_bid_prices, no_bid_sizes, gatherer_id, "
            "source FROM orderbook_snapshots WHERE market_ticker = ? AND epoch_us(received_us) <= ? "
            "AND date BETWEEN ?::DATE AND ?::DATE "
            f"ORDER BY received_us {order}, gatherer_id {order}, source {order} LIMIT 1"
        )
        # the latest is nearly always in the day or the one before: read those first, every day before only if not
        windows = [(_MIN_DAY, _day(at_us))] if first else [(_day(at_us, -1), _day(at_us)), (_MIN_DAY, _day(at_us, -2))]
        for lo, hi in windows:
            rows = self._rows(sql, [market, at_us, lo, hi])
            if rows:
                return _snap(rows[0])
        return None

    def snapshots_between(self, market: str, lo_us: int, hi_us: int) -> list[Snap]:
        rows = self._rows(
            "SELECT epoch_us(received_us), yes_bid_prices, yes_bid_sizes, no_bid_prices, no_bid_sizes, gatherer_id, "
            "source FROM orderbook_snapshots WHERE market_ticker = ? AND epoch_us(received_us) > ? "
            "AND epoch_us(received_us) <= ? AND date BETWEEN ?::DATE AND ?::DATE "
            "ORDER BY received_us, gatherer_id, source",
            [market, lo_us, hi_us, _day(lo_us), _day(hi_us)],
        )
        return [_snap(r) for r in rows]

    def boundary(self, market: str, received_us: int) -> int:
        sql = (
            "SELECT max(epoch_us(exchange_ts_us)) FROM orderbook_deltas WHERE market_ticker = ? "
            "AND epoch_us(exchange_ts_us) <= ? AND epoch_us(exchange_ts_us) + receive_delay_us <= ? "
            "AND date BETWEEN ?::DATE AND ?::DATE"
        )
        upto = received_us + SKEW_US
        for lo, hi in ((_day(received_us, -1), _day(upto)), (_MIN_DAY, _day(received_us, -2))):
            rows = self._rows(sql, [market, upto, received_us, lo, hi])
            if rows and rows[0][0] is not None:
                return int(rows[0][0])
        return -1

    def boundaries(self, market: str, received: list[int]) -> list[int]:
        """The deltas around the snapshots read once, each boundary found in them as production's index walk
        finds it (back from the skew bound to the first delta received in time); one not found among them (its
        market quiet for over a day) is read on its own."""
        if not received:
            return []
        lo, hi = min(received), max(received) + SKEW_US
        rows = self._rows(
            "SELECT epoch_us(exchange_ts_us) AS ts, epoch_us(exchange_ts_us) + receive_delay_us FROM orderbook_deltas "
            "WHERE market_ticker = ? AND epoch_us(exchange_ts_us) <= ? AND date BETWEEN ?::DATE AND ?::DATE "
            "ORDER BY ts",
            [market, hi, _day(lo, -1), _day(hi)],
        )
        times = [int(r[0]) for r in rows]
        older: bool | None = None  # whether the market has deltas before the window (asked once, if needed)
        out = []
        for r in received:
            k = bisect_right(times, r + SKEW_US) - 1
            while k >= 0 and rows[k][1] > r:
                k -= 1
            if k >= 0:
                out.append(times[k])
                continue
            if older is None:
                found = self._rows(
                    "SELECT count(*) FROM orderbook_deltas WHERE market_ticker = ? AND date < ?::DATE",
                    [market, _day(lo, -1)],
                )
                older = bool(found and found[0][0])
            out.append(self.boundary(market, r) if older else -1)  # nothing in the window: look further back
        return out

    def deltas(self, market: str, after_us: int, upto_us: int) -> list[Delta]:
        rows = self._rows(
            "SELECT epoch_us(exchange_ts_us), side, price, delta FROM orderbook_deltas WHERE market_ticker = ? "
            "AND epoch_us(exchange_ts_us) > ? AND epoch_us(exchange_ts_us) <= ? AND date BETWEEN ?::DATE AND ?::DATE "
            "ORDER BY exchange_ts_us, occurrence",
            [market, after_us, upto_us, _day(after_us), _day(upto_us)],
        )
        return [(int(ts), side, price, delta) for ts, side, price, delta in rows]

    def gaps(self, market: str, lo_us: int, hi_us: int) -> list[tuple[int, int]]:
        rows = self._rows(
            "SELECT epoch_us(from_us), epoch_us(to_us) FROM coverage_gaps WHERE market_ticker IN (?, '') "
            "AND channel = 'orderbook_delta' AND NOT verified_complete AND epoch_us(from_us) <= ? "
            "AND epoch_us(to_us) >= ? AND date <= ?::DATE ORDER BY from_us",
            [market, hi_us, lo_us, _day(hi_us)],
        )
        return [(int(f), int(t)) for f, t in rows]

    def newest(self, market: str) -> int | None:
        sql = "SELECT max(epoch_us(exchange_ts_us)) FROM orderbook_deltas WHERE market_ticker = ?"
        rows = self._rows(sql, [market])
        return None if not rows or rows[0][0] is None else int(rows[0][0])


def _snap(row: tuple[Any, ...]) -> Snap:
    received, yp, ys, np_, ns, gid, source = row
    return Snap(int(received), tuple(zip(yp, ys, strict=True)), tuple(zip(np_, ns, strict=True)), gid, source)
