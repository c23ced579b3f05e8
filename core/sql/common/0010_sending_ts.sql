-- Since 2026-10-01 every WebSocket message carries sending_ts_ms, when Kalshi queued it at its network layer: the
-- receive time minus it is the network's and our latency, it minus the exchange time Kalshi's own. NULL for
-- messages without it (older frames, REST).
ALTER TABLE orderbook_deltas ADD COLUMN sent_us bigint;
ALTER TABLE trades ADD COLUMN sent_us bigint;
ALTER TABLE orderbook_snapshots ADD COLUMN sent_us bigint;
ALTER TABLE tickers ADD COLUMN sent_us bigint;
ALTER TABLE lifecycle_events ADD COLUMN sent_us bigint;
ALTER TABLE event_lifecycle_events ADD COLUMN sent_us bigint;
ALTER TABLE event_fee_updates ADD COLUMN sent_us bigint;
