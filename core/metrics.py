"""Every Prometheus metric of kalshi-data, in one place (names say what is counted, units in the name)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily

# gatherer: WebSocket connections
WS_FRAMES = Counter("kd_ws_frames_total", "WebSocket frames received", ["connection", "type"])
WS_COPIES = Counter(
    "kd_ws_copies_dropped_total",
    "Trades and tickers the twin connection delivered first (not routed again)",
    ["connection"],
)
WS_RECONNECTS = Counter("kd_ws_reconnects_total", "WebSocket reconnects", ["connection"])
WS_CONNECTED = Gauge("kd_ws_connected", "1 while the connection is up and subscribed", ["connection"])
WS_DESIRED = Gauge("kd_ws_connections_desired", "Connections the pool wants up (orderbook + global)")
WS_UP = Gauge("kd_ws_connections_up", "Connections up and subscribed")
WS_COMMAND_FAILURES = Counter(
    "kd_ws_command_failures_total", "Commands answered with an error or not at all", ["connection", "reason"]
)
SEQUENCE_GAPS = Counter("kd_sequence_gaps_total", "Sequence anomalies per channel", ["channel", "kind"])
WS_MARKETS_REFUSED = Counter(
    "kd_ws_markets_refused_total", "Markets the exchange did not know at subscribe (code 16)", ["channel"]
)
CAPTURE_OUTAGES = Counter("kd_capture_outages_total", "Stretches this gatherer captured no trades", ["reason"])
TRADES_BACKFILLED = Counter("kd_trades_backfilled_total", "Trades of capture outages fetched from REST")
TRADES_SWEPT = Counter("kd_trades_swept_total", "Trades fetched by the periodic REST sweep (most already captured)")
RESYNCS = Counter("kd_resyncs_total", "Subscriptions resubscribed after a gap", ["channel"])
MARKETS_SUBSCRIBED = Gauge("kd_markets_subscribed", "Markets with an orderbook subscription")
REGISTRY_MARKETS = Gauge("kd_registry_markets", "Markets the registry knows as capturable")

# router
RECORDS_ROUTED = Counter("kd_records_routed_total", "Records normalised and handed to the sink", ["kind"])
DEAD_LETTERS = Counter("kd_dead_letters_total", "Frames quarantined in the dead-letter stream", ["reason"])
TASK_RESTARTS = Counter("kd_task_restarts_total", "Long-running tasks that failed unexpectedly and went on", ["task"])
TIME_FALLBACKS = Counter("kd_router_time_fallbacks_total", "Messages without ts_ms or ts: receive time used", ["type"])
BAD_SENDING_TS = Counter(
    "kd_router_bad_sending_ts_total", "Messages whose sending_ts_ms is not a time: kept, with no send time", ["type"]
)
SINK_BUFFERED = Gauge("kd_sink_buffered_records", "Records waiting in memory for Redis")
SINK_SPILLED = Counter("kd_sink_spilled_entries_total", "Stream entries written to the disk spill")
SINK_SPILLED_BYTES = Counter("kd_sink_spilled_bytes_total", "Bytes written to the disk spill")
SPILL_DISK_FREE = Gauge("kd_spill_disk_free_bytes", "Free bytes on the spill directory's filesystem")
SINK_REPLAYED = Counter("kd_sink_replayed_entries_total", "Spilled stream entries replayed into Redis")
REDIS_UP = Gauge("kd_redis_up", "1 when the last Redis write succeeded")
XADD_SECONDS = Histogram("kd_xadd_batch_seconds", "Time of one pipelined XADD batch")

# REST
REST_REQUESTS = Counter("kd_rest_requests_total", "REST requests by status", ["status"])
REST_RETRIES = Counter("kd_rest_retries_total", "REST requests retried (transport errors, 5xx, 429)")
REST_THROTTLED = Counter("kd_rest_throttled_total", "REST 429 answers")

# writers
WRITER_ROWS = Counter("kd_writer_rows_total", "Rows inserted (new) and ignored (already there)", ["table", "result"])
WRITER_LAG = Gauge("kd_stream_lag_seconds", "Age of the oldest unacknowledged entry", ["stream"])
STREAM_BACKLOG = Gauge("kd_stream_backlog_entries", "Entries not yet acknowledged by the writers", ["stream"])
STREAM_LENGTH = Gauge("kd_stream_length_entries", "XLEN of the stream", ["stream"])
WRITER_BATCHES = Counter("kd_writer_batches_total", "Batches committed", ["stream"])
WRITER_BATCH_SECONDS = Histogram("kd_writer_batch_seconds", "Read-to-ack time of one batch", ["stream"])
WRITER_ERRORS = Counter("kd_writer_errors_total", "Batches that failed (database down or bad rows)", ["stream"])
DB_CONNECTIONS = Gauge("kd_db_connections", "Open database connections of this process")
WRITER_DEAD = Counter("kd_writer_dead_letters_total", "Entries moved to the writer dead-letter stream", ["stream"])

# dedup
DEDUP_ROWS = Counter("kd_dedup_rows_total", "Rows merged into production", ["source", "table", "result"])
COVERAGE_GAPS = Gauge("kd_coverage_gaps", "Coverage gaps in production", ["channel", "state"])
BOOK_AUDITS = Counter("kd_book_audit_total", "REST snapshots checked against the captured book", ["result"])
DEDUP_LAG = Gauge("kd_dedup_lag_seconds", "Seconds since the cursor last caught up", ["source", "table"])
EXPORT_FILES = Counter("kd_export_files_total", "Parquet files written", ["table"])
EXPORT_BYTES = Counter("kd_export_bytes_total", "Parquet bytes written", ["table"])
EXPORT_LAST_COMPLETE = Gauge(
    "kd_export_last_complete_day_seconds", "Start (unix s) of the newest complete day exported"
)


class _ReceiveDelay:
    """`kd_ws_receive_delay_seconds{channel}`: our receive time minus Kalshi's sending_ts_ms, the network's and
    our own latency (the exchange's own is sending_ts_ms minus the exchange time). A histogram each connection
    counts in plain integers per frame and pushes now and then (from its worker process too): a Prometheus
    observe per frame would cost more than routing the frame."""

    BOUNDS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
    BOUNDS_US = tuple(int(b * 1_000_000) for b in BOUNDS_S)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, tuple[list[int], int]] = {}  # channel -> (count per bucket, sum of microseconds)

    def add(self, channel: str, counts: list[int], sum_us: int) -> None:
        with self._lock:
            have, total = self._data.get(channel, ([0] * (len(self.BOUNDS_US) + 1), 0))
            self._data[channel] = ([a + b for a, b in zip(have, counts, strict=True)], total + sum_us)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            "kd_ws_receive_delay_seconds", "Receive time minus Kalshi's sending_ts_ms", labels=["channel"]
        )
        with self._lock:
            data = dict(self._data)
        for channel, (counts, sum_us) in sorted(data.items()):
            running, buckets = 0, []
            for bound, n in zip((*(str(b) for b in self.BOUNDS_S), "+Inf"), counts, strict=True):
                running += n
                buckets.append((bound, running))
            family.add_metric([channel], buckets, sum_us / 1e6)
        yield family


RECEIVE_DELAY = _ReceiveDelay()
REGISTRY.register(RECEIVE_DELAY)
