-- Coverage gaps per channel: 'orderbook_delta' (a market's book, from sequence gaps, or every market: '' when
-- every gatherer was down) and 'trade' (every gatherer's trade capture out at once; market ''). Trade gaps
-- are healed from REST: trades_backfilled rows fetched, healed_us when.
ALTER TABLE coverage_gaps ADD COLUMN channel text NOT NULL DEFAULT 'orderbook_delta';
ALTER TABLE coverage_gaps ADD COLUMN trades_backfilled bigint;
ALTER TABLE coverage_gaps ADD COLUMN trades_healed_us bigint;
ALTER TABLE coverage_gaps DROP CONSTRAINT coverage_gaps_pkey;
ALTER TABLE coverage_gaps ADD PRIMARY KEY (market_ticker, channel, from_us);

-- The book audit (dedup/_audit.py): each REST snapshot a gatherer took, against the book that gatherer's
-- WebSocket capture gives at that moment. result: matched | mismatched | busy (a delta within the window
-- around the read: no honest comparison) | no_baseline | gap. differing: [{side, price, rest, captured}].
CREATE TABLE book_audits (
    gatherer_id       text NOT NULL,
    market_ticker     text NOT NULL,
    rest_received_us  bigint NOT NULL,
    result            text NOT NULL,
    levels            integer NOT NULL,
    deltas_applied    integer NOT NULL,
    baseline_us       bigint,
    differing         jsonb,
    audited_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gatherer_id, market_ticker, rest_received_us)
);
CREATE INDEX book_audits_time_idx ON book_audits (rest_received_us);

-- How far the audit has read each source's REST snapshots (received_us).
CREATE TABLE audit_cursors (
    source        text PRIMARY KEY,
    audited_to_us bigint NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Where the audit's replay of a market's book stopped (its subscription, seq and the levels), so the next
-- audit starts there instead of at the subscription's snapshot.
CREATE TABLE audit_checkpoints (
    gatherer_id   text NOT NULL,
    market_ticker text NOT NULL,
    sid           integer NOT NULL,
    seq           bigint NOT NULL,
    received_us   bigint NOT NULL,
    yes_prices    integer[] NOT NULL,
    yes_sizes     bigint[] NOT NULL,
    no_prices     integer[] NOT NULL,
    no_sizes      bigint[] NOT NULL,
    PRIMARY KEY (gatherer_id, market_ticker)
);
