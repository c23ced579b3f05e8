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
    """A gap's wait for its frames: each gap waits `grace_s` for them to come late. If they all came, it is
    healed (`healed`); if not, or if its tracker was replaced meanwhile (a reconnect, a resubscribe: they
    can no longer come), the gap's own `lost` runs (resubscribe, refill, store its rows)."""

    def __init__(self, grace_s: float, current: Callable[[], SeqTracker], healed: Callable[[], None]) -> None:
        self.grace_s, self.current, self.healed = grace_s, current, healed
        self._pending: dict[int, tuple[asyncio.TimerHandle, Callable[[], None]]] = {}
        self._next = 0

    def watch(self, tracker: SeqTracker, expected: int, got: int, lost: Callable[[], None]) -> None:
        """The gap: seqs expected .. got - 1 were skipped on `tracker`."""
        if self.grace_s <= 0:
            lost()
            return
        key, self._next = self._next, self._next + 1
        handle = asyncio.get_running_loop().call_later(self.grace_s, self._due, key, tracker, expected, got)
        self._pending[key] = (handle, lost)

    def _due(self, key: int, tracker: SeqTracker, expected: int, got: int) -> None:
        _, lost = self._pending.pop(key)
        came = not tracker.overflow and not any(s in tracker.missing for s in range(expected, got))
        if came and tracker is self.current():
            self.healed()
        else:
            lost()

    def flush(self) -> None:
        """The connection ended: no late frame can come now, every pending gap is lost."""
        pending, self._pending = list(self._pending.values()), {}
        for handle, lost in pending:
            handle.cancel()
            lost()
