"""Every Prometheus metric of kalshi-data, in one place (names say what is counted, units in the name)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# gatherer: WebSocket connections
WS_FRAMES = Counter("kd_ws_frames_total", "WebSocket frames received", ["connection", "type"])
WS_RECONNECTS = Counter("kd_ws_reconnects_total", "WebSocket reconnects", ["connection"])
WS_CONNECTED = Gauge("kd_ws_connected", "1 while the connection is up and subscribed", ["connection"])
WS_COMMAND_FAILURES = Counter("kd_ws_command_failures_total", "Commands answered with an error or not at all",
                              ["connection", "reason"])  # fmt: skip
SEQUENCE_GAPS = Counter("kd_sequence_gaps_total", "Sequence anomalies per channel", ["channel", "kind"])
RESYNCS = Counter("kd_resyncs_total", "Subscriptions resubscribed after a gap", ["channel"])
MARKETS_SUBSCRIBED = Gauge("kd_markets_subscribed", "Markets with an orderbook subscription")
REGISTRY_MARKETS = Gauge("kd_registry_markets", "Markets the registry knows as capturable")

# router
RECORDS_ROUTED = Counter("kd_records_routed_total", "Records normalised and handed to the sink", ["kind"])
DEAD_LETTERS = Counter("kd_dead_letters_total", "Frames quarantined in the dead-letter stream", ["reason"])
SINK_BUFFERED = Gauge("kd_sink_buffered_records", "Records waiting in memory for Redis")
SINK_SPILLED = Counter("kd_sink_spilled_entries_total", "Stream entries written to the disk spill")
SINK_REPLAYED = Counter("kd_sink_replayed_entries_total", "Spilled stream entries replayed into Redis")
REDIS_UP = Gauge("kd_redis_up", "1 when the last Redis write succeeded")
XADD_SECONDS = Histogram("kd_xadd_batch_seconds", "Time of one pipelined XADD batch")

# REST
REST_REQUESTS = Counter("kd_rest_requests_total", "REST requests by status", ["status"])

# writers
WRITER_ROWS = Counter("kd_writer_rows_total", "Rows inserted (new) and ignored (already there)", ["table", "result"])
WRITER_LAG = Gauge("kd_stream_lag_seconds", "Age of the oldest unacknowledged entry", ["stream"])
WRITER_DEAD = Counter("kd_writer_dead_letters_total", "Entries moved to the writer dead-letter stream", ["stream"])

# dedup
DEDUP_ROWS = Counter("kd_dedup_rows_total", "Rows merged into production", ["source", "table", "result"])
DEDUP_LAG = Gauge("kd_dedup_lag_seconds", "Age of the newest row merged per source", ["source"])
