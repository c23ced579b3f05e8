"""Per-subscription sequence checking: the next expected seq, and the numbers skipped so far, so a frame
that arrives late is told from a repeat; and the wait for a gap's frames before it counts as a loss."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_MISSING = 10_000  # skipped numbers remembered per subscription


@dataclass
class SeqTracker:
    """Expected next seq of one subscription; remembers skipped numbers so a late frame is told from a repeat."""

    next: int = 1
    missing: set[int] = field(default_factory=set)
    overflow: bool = False  # more skipped numbers than MAX_MISSING: some late frames cannot be recognised

    def check(self, seq: int) -> str:
        if seq == self.next:
            self.next += 1
            return "ok"
        if seq > self.next:
            room = MAX_MISSING - len(self.missing)
            if seq - self.next > room:
                self.overflow = True
            self.missing.update(range(self.next, self.next + min(seq - self.next, max(room, 0))))
            self.next = seq + 1
            return "gap"
        if seq in self.missing:
            self.missing.discard(seq)
            return "late"
        return "repeat"


class LossWatch:
    """Gaps on a subscription that is not resubscribed (trades): each waits `grace_s` for its frames to come
    late, then its stretch (from_us, to_us) is reported as lost unless they all came (`healed`). A gap whose
    tracker was replaced meanwhile (a reconnect) can no longer heal: it is reported."""

    def __init__(
        self,
        grace_s: float,
        current: Callable[[], SeqTracker],
        report: Callable[[int, int], None],
        healed: Callable[[], None],
    ) -> None:
        self.grace_s, self.current, self.report, self.healed = grace_s, current, report, healed
        self._pending: dict[int, tuple[asyncio.TimerHandle, int, int]] = {}
        self._next = 0

    def watch(self, tracker: SeqTracker, expected: int, got: int, from_us: int, to_us: int) -> None:
        if self.grace_s <= 0:
            self.report(from_us, to_us)
            return
        key, self._next = self._next, self._next + 1
        handle = asyncio.get_running_loop().call_later(self.grace_s, self._due, key, tracker, expected, got)
        self._pending[key] = (handle, from_us, to_us)

    def _due(self, key: int, tracker: SeqTracker, expected: int, got: int) -> None:
        _, from_us, to_us = self._pending.pop(key)
        if (
            tracker is self.current()
            and not tracker.overflow
            and not any(s in tracker.missing for s in range(expected, got))
        ):
            self.healed()
        else:
            self.report(from_us, to_us)

    def flush(self) -> None:
        """The connection ended: no late frame can come now, every pending gap is reported."""
        for handle, from_us, to_us in self._pending.values():
            handle.cancel()
            self.report(from_us, to_us)
        self._pending.clear()
