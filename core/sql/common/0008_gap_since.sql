-- Where a gap's blind stretch starts: the subscription's last frame in sequence before it, at its exchange
-- time (its receive time if earlier or if it has none; core.records.SequenceGap.since_us). The lost message
-- came after that frame, so the book may be wrong from there, not only from the moment the next frame
-- revealed the gap. NULL on rows from before: their
-- stretch starts at detected_us, as it did.
ALTER TABLE sequence_gaps ADD COLUMN since_us bigint;
