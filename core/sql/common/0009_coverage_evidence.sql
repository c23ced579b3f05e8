-- Coverage evidence (docs/architecture.md, "Coverage"): where a gatherer's book of a market begins (its
-- WebSocket snapshot) and where it ends: a sequence gap, a subscription end (below), a capture outage, or its
-- beats stopping. Production builds the coverage record from these.

-- A subscription stopped carrying a market: the connection was lost, the gatherer stopped, or the market was
-- released (unsubscribed). sid is the gatherer's own subscription number (unique within a process run).
CREATE TABLE subscription_ends (
    gatherer_id   text NOT NULL,
    connection_id text NOT NULL,
    channel       text NOT NULL,
    sid           integer NOT NULL,
    market_ticker text NOT NULL,
    reason        text NOT NULL,
    ended_us      bigint NOT NULL,
    since_us      bigint NOT NULL,
    ingest_xid    xid8 NOT NULL DEFAULT pg_current_xact_id(),
    ingest_id     bigint NOT NULL DEFAULT nextval('kd_ingest_seq'),
    CONSTRAINT subscription_ends_natural_key UNIQUE (gatherer_id, connection_id, sid, market_ticker, ended_us)
);
CREATE INDEX subscription_ends_ingest_idx ON subscription_ends (ingest_xid, ingest_id);
CREATE INDEX subscription_ends_market_idx ON subscription_ends (market_ticker, since_us);
CREATE INDEX subscription_ends_since_idx ON subscription_ends (since_us);

-- The gatherer's liveness, every few seconds: its books end at its last beat when the beats stop.
CREATE TABLE capture_beats (
    gatherer_id        text PRIMARY KEY,
    beat_us            bigint NOT NULL,
    process_started_us bigint NOT NULL,
    ingest_xid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    ingest_id          bigint NOT NULL DEFAULT nextval('kd_ingest_seq')
);
CREATE INDEX capture_beats_ingest_idx ON capture_beats (ingest_xid, ingest_id);

-- A restart's outage says when the reporting process started: books begun before it ended with the old one.
ALTER TABLE capture_outages ADD COLUMN process_started_us bigint;

-- The coverage record reads a market's gaps by market and time.
CREATE INDEX sequence_gaps_market_idx ON sequence_gaps (market_ticker, since_us);
CREATE INDEX sequence_gaps_since_idx ON sequence_gaps (since_us);
