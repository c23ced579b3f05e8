"""Numbering of identical messages per subscription, so that distinct events with the same content are kept
apart and every copy of one event (other connections, other gatherers) gets the same number.

Deltas and tickers: by market within one exchange millisecond (`occurrence`). Messages with no time and no id
(lifecycle, event lifecycle, fee updates): within REPEAT_WINDOW_US of receipt (`repeat`). A resubscribe carries
the counts of the old subscription to the handover (`counters`), which numbers the new one's deltas in the
cut's millisecond after them (gatherer._handover).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from core.records import REPEAT_WINDOW_US


class Occurrences:
    def __init__(self) -> None:
        # (sid, market) -> (exchange ts of the counters, {identical-message key: count}); the key is a delta's
        # (side, price, delta) or a ticker's values
        self._occ: dict[tuple[int, str], tuple[int, dict[tuple[Any, ...], int]]] = {}
        # (sid, identical-message key) -> receive times of that message on the subscription within the window
        self._repeats: dict[tuple[Any, ...], deque[int]] = {}

    def counters(self, sid: int) -> dict[str, tuple[int, dict[tuple[Any, ...], int]]]:
        """The subscription's identical-delta counters now, per market: (exchange ts, {ident: count}), copied."""
        return {key[1]: (ts, dict(counts)) for key, (ts, counts) in self._occ.items() if key[0] == sid}

    def forget_sid(self, sid: int) -> None:
        for key in [k for k in self._occ if k[0] == sid]:
            del self._occ[key]
        for key in [k for k in self._repeats if k[0] == sid]:
            del self._repeats[key]

    def occurrence(self, sid: int, market: str, ts: int, ident: tuple[Any, ...]) -> int:
        """How many identical messages (same market, exchange time and `ident`) the subscription delivered
        before this one. Every connection sees the same sequence, so every copy gets the same number."""
        key = (sid, market)
        slot = self._occ.get(key)
        if slot is None or slot[0] != ts:
            slot = (ts, {})
            self._occ[key] = slot
        counts = slot[1]
        occ = counts.get(ident, 0)
        counts[ident] = occ + 1
        return occ

    def repeat(self, sid: int | None, ident: tuple[Any, ...], received_us: int) -> int:
        """How many identical messages (no time, no id on the wire) this subscription delivered within
        REPEAT_WINDOW_US before this one. Every connection sees the same messages, so copies get the same
        number; a repeat of the event (a market paused, resumed, paused) gets the next one."""
        key = (sid, *ident)
        times = self._repeats.get(key)
        if times is None:
            if len(self._repeats) >= 100_000:  # forget messages whose window has passed
                cut = received_us - REPEAT_WINDOW_US
                self._repeats = {k: t for k, t in self._repeats.items() if t[-1] > cut}
            times = self._repeats[key] = deque()
        while times and times[0] <= received_us - REPEAT_WINDOW_US:
            times.popleft()
        n = len(times)
        times.append(received_us)
        return n
