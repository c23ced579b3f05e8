"""Per-subscription sequence checking: the next expected seq, and the numbers skipped so far, so a frame
that arrives late is told from a repeat."""

from __future__ import annotations

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
