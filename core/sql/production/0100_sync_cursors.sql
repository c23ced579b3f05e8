-- Production only: how far the deduplicator has merged each (gatherer, table). Advanced in the same
-- transaction as the rows it covers, so a killed job repeats at most one batch.
CREATE TABLE sync_cursors (
    source      text NOT NULL,
    table_name  text NOT NULL,
    last_xid    xid8 NOT NULL DEFAULT '0',
    last_id     bigint NOT NULL DEFAULT 0,
    rows_synced bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, table_name)
);
