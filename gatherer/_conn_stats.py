"""A connection's counters, and their push to Prometheus."""

from __future__ import annotations

from bisect import bisect_left
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
    # receive time minus Kalshi's sending_ts_ms: count per bucket of metrics.RECEIVE_DELAY, and the sum
    receive_delay: list[int] = field(default_factory=lambda: [0] * (len(metrics.RECEIVE_DELAY.BOUNDS_US) + 1))
    receive_delay_sum_us: int = 0

    def delayed(self, delay_us: int) -> None:
        self.receive_delay[bisect_left(metrics.RECEIVE_DELAY.BOUNDS_US, delay_us)] += 1
        self.receive_delay_sum_us += delay_us


class ConnMetrics:
    """Pushes a connection's counters to Prometheus now and then, not per frame (that would cost more
    than routing the frame)."""

    def __init__(self, conn_id: str, channel: str) -> None:
        self.conn_id, self.channel = conn_id, channel
        self._sent: dict[str, int] = {}
        self._copies_sent = 0
        self._delays_sent: list[int] = []
        self._delay_sum_sent = 0

    def push(self, stats: ConnStats) -> None:
        for mtype, n in list(stats.by_type.items()):
            delta = n - self._sent.get(mtype, 0)
            if delta:
                metrics.WS_FRAMES.labels(self.conn_id, mtype).inc(delta)
                self._sent[mtype] = n
        if stats.copies > self._copies_sent:
            metrics.WS_COPIES.labels(self.conn_id).inc(stats.copies - self._copies_sent)
            self._copies_sent = stats.copies
        delays = list(stats.receive_delay)
        if delays != self._delays_sent:
            before = self._delays_sent or [0] * len(delays)
            metrics.RECEIVE_DELAY.add(
                self.channel, [a - b for a, b in zip(delays, before, strict=True)],
                stats.receive_delay_sum_us - self._delay_sum_sent,
            )  # fmt: skip
            self._delays_sent, self._delay_sum_sent = delays, stats.receive_delay_sum_us
