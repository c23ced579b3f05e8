"""Numbering of identical messages per subscription, so that distinct events with the same content are kept
apart and every copy of one event (other connections, other gatherers) gets the same number.

Deltas and tickers: by market within one exchange millisecond (`occurrence`). Messages with no time and no id
(lifecycle, event lifecycle, fee updates): within REPEAT_WINDOW_US of receipt (`repeat`). A resubscribe carries
the numbers over to the new sid (`carry_sid`), as the exchange's stream goes on.
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

    def carry_sid(self, old: int, new: int) -> None:
        """Subscription `old` was replaced by `new` on the same connection: its counters go on under the new
        sid (a gatherer that did not resubscribe numbers the next identical delta in that millisecond 1, not 0)."""
        for key in [k for k in self._occ if k[0] == old]:
            self._occ[(new, key[1])] = self._occ.pop(key)
        for key in [k for k in self._repeats if k[0] == old]:
            self._repeats[(new, *key[1:])] = self._repeats.pop(key)

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
