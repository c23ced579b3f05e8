-- Stretches a gatherer captured nothing (core.records.CaptureOutage): the process was down, or every trade
-- connection was. Where all gatherers were out at once, production records a coverage gap and the trades
-- of the window come from REST (source 'rest'), which the gatherer marks here once done (healed_us).
CREATE TABLE capture_outages (
    gatherer_id       text NOT NULL,
    channel           text NOT NULL,
    from_us           bigint NOT NULL,
    to_us             bigint NOT NULL,
    reason            text NOT NULL,
    trades_backfilled bigint,
    healed_us         bigint,
    updated_us        bigint NOT NULL,
    ingest_xid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
    ingest_id         bigint NOT NULL DEFAULT nextval('kd_ingest_seq'),
    PRIMARY KEY (gatherer_id, channel, from_us)
);
CREATE INDEX capture_outages_ingest_idx ON capture_outages (ingest_xid, ingest_id);
