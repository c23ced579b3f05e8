-- Lifecycle messages carry no time and no id, so a market deactivated, activated and deactivated again
-- sends the same "deactivated" message twice: two events that UNIQUE (market, event_type, digest) made one.
-- Copies of one message (redundant connections, three gatherers) arrive within moments of each other;
-- a repeat of the event comes later. The insert rule (writers._tables, `copies_within_us`) keeps a row
-- unless an identical one was received within that window; this index serves its lookup.
ALTER TABLE lifecycle_events DROP CONSTRAINT lifecycle_events_natural_key;
CREATE INDEX lifecycle_events_natural_key_idx ON lifecycle_events (market_ticker, event_type, digest, received_us);
