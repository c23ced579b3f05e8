"""A connection's counters, and their push to Prometheus."""

from __future__ import annotations

from dataclasses import dataclass, field

from core import metrics


@dataclass
class ConnStats:
    frames: int = 0
    records: int = 0
    dead_letters: int = 0
    repeats: int = 0
    gaps: int = 0
    late: int = 0
    resyncs: int = 0
    healed: int = 0  # gaps whose missing frames all came late within gap_grace_s: no resubscribe needed
    reconnects: int = 0
    stale: int = 0  # frames of a subscription already replaced
    copies: int = 0  # records the twin connection of this channel delivered first (router.CopyFilter)
    command_failures: int = 0
    by_type: dict[str, int] = field(default_factory=dict)  # frames per message type


class ConnMetrics:
    """Pushes a connection's counters to Prometheus now and then, not per frame (that would cost more
    than routing the frame)."""

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id
        self._sent: dict[str, int] = {}
        self._copies_sent = 0

    def push(self, stats: ConnStats) -> None:
        for mtype, n in list(stats.by_type.items()):
            delta = n - self._sent.get(mtype, 0)
            if delta:
                metrics.WS_FRAMES.labels(self.conn_id, mtype).inc(delta)
                self._sent[mtype] = n
        if stats.copies > self._copies_sent:
            metrics.WS_COPIES.labels(self.conn_id).inc(stats.copies - self._copies_sent)
            self._copies_sent = stats.copies
