-- When each (source, table) last finished a sync round with nothing left to read: everything that source
-- had committed before then is in production. The export watermark is the oldest of these over live sources.
ALTER TABLE sync_cursors ADD COLUMN caught_up_us bigint;

-- Stretches where every gatherer had a gap for a market: the stored book is not exact there.
CREATE TABLE coverage_gaps (
    market_ticker text NOT NULL,
    from_us       bigint NOT NULL,
    to_us         bigint NOT NULL,
    sources       text[] NOT NULL,
    detected_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (market_ticker, from_us)
);

-- What the Parquet export wrote, per table and day: re-exported when newer rows arrive for that day.
CREATE TABLE export_manifest (
    table_name    text NOT NULL,
    day           date NOT NULL,
    rows          bigint NOT NULL,
    max_ingest_id bigint NOT NULL,
    files         jsonb NOT NULL,
    exported_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, day)
);
