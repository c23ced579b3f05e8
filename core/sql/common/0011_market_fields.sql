-- Today's market object as columns (kalshi-api.md, "Markets since 2026-07"): the settlement bounds (a 'floor'
-- market's YES settles at no less than settlement_floor), the tick scheme and its ranges, the exchange's shard,
-- what YES settled at (a scalar market's value). tick_size left the object on 2026-05-07. Prices in
-- hundred-thousandths of a dollar, as everywhere.
ALTER TABLE markets DROP COLUMN tick_size;
ALTER TABLE markets ADD COLUMN settlement_bounds_type text;
ALTER TABLE markets ADD COLUMN settlement_floor integer;
ALTER TABLE markets ADD COLUMN price_level_structure text;
ALTER TABLE markets ADD COLUMN price_ranges jsonb;
ALTER TABLE markets ADD COLUMN exchange_index bigint;
ALTER TABLE markets ADD COLUMN settlement_value integer;
