-- The coverage record (dedup/_coverage.py): a coverage gap is a stretch where no gatherer held a market's book
-- (from its snapshot to its next gap, end, outage or last beat) though one had lost it. Each gap that a fresh
-- snapshot ended is checked: production's book before the gap plus every delta any gatherer received up to the
-- snapshot, against the snapshot. Equal: nothing of that market was lost there (verified_complete). Different:
-- the gap stands, with the differing levels.
ALTER TABLE coverage_gaps ADD COLUMN verified_complete boolean NOT NULL DEFAULT false;
ALTER TABLE coverage_gaps ADD COLUMN differing jsonb;
-- The book the gap began from (the last holder's snapshot) and the snapshot that ended it.
ALTER TABLE coverage_gaps ADD COLUMN base_by text;
ALTER TABLE coverage_gaps ADD COLUMN base_snapshot_us bigint;
ALTER TABLE coverage_gaps ADD COLUMN ended_by text;
ALTER TABLE coverage_gaps ADD COLUMN end_snapshot_us bigint;
-- NULL once the check is final; else why not yet ('provisional': deltas may still be merging; 'unreachable': a
-- source was down). Checked again every round until final.
ALTER TABLE coverage_gaps ADD COLUMN check_note text;
ALTER TABLE coverage_gaps ADD COLUMN ingest_id bigint NOT NULL DEFAULT nextval('kd_ingest_seq');
CREATE INDEX coverage_gaps_time_idx ON coverage_gaps (from_us);

-- How far the coverage record is built: the evidence cursors (production's own ingest order) and the horizon
-- up to which every live gatherer's evidence is in.
CREATE TABLE coverage_progress (
    name      text PRIMARY KEY,
    last_xid  xid8 NOT NULL DEFAULT '0',
    last_id   bigint NOT NULL DEFAULT 0,
    value_us  bigint
);

-- The audit's checkpoint belongs to one book (the WebSocket snapshot it started from), not to a sid: sids
-- repeat across sockets and restarts.
ALTER TABLE audit_checkpoints ADD COLUMN baseline_us bigint;
