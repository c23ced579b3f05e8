-- The lake's reference tables as each day ended (dedup/_datasets.py): for each series, event and market, its
-- newest state of each UTC day it changed on (the day of updated_us), kept by a trigger on every insert or update
-- of production's row. The lake's `markets` of a day is each market's newest state up to that day's end.
-- A daily table is its table's columns in its order and `day`: a migration that changes one changes the other.
CREATE TABLE markets_daily (LIKE markets INCLUDING DEFAULTS);
ALTER TABLE markets_daily ADD COLUMN day date NOT NULL;
ALTER TABLE markets_daily ADD PRIMARY KEY (ticker, day);
CREATE INDEX markets_daily_day_idx ON markets_daily (day);
CREATE TABLE events_daily (LIKE events INCLUDING DEFAULTS);
ALTER TABLE events_daily ADD COLUMN day date NOT NULL;
ALTER TABLE events_daily ADD PRIMARY KEY (event_ticker, day);
CREATE INDEX events_daily_day_idx ON events_daily (day);
CREATE TABLE series_daily (LIKE series INCLUDING DEFAULTS);
ALTER TABLE series_daily ADD COLUMN day date NOT NULL;
ALTER TABLE series_daily ADD PRIMARY KEY (ticker, day);
CREATE INDEX series_daily_day_idx ON series_daily (day);

-- TG_ARGV[0]: the table's key column. The row's ingest_id moved with the change (the upsert), so the daily row
-- carries it: the export sees which days changed.
CREATE FUNCTION kd_keep_daily() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    daily text := TG_TABLE_NAME || '_daily';
    d date := (timestamp '1970-01-01' + NEW.updated_us * interval '1 microsecond')::date;
BEGIN
    EXECUTE format('DELETE FROM %I WHERE %I = $1 AND day = $2', daily, TG_ARGV[0])
        USING to_jsonb(NEW) ->> TG_ARGV[0], d;
    EXECUTE format('INSERT INTO %I SELECT ($1).*, $2', daily) USING NEW, d;
    RETURN NULL;
END $$;

CREATE TRIGGER markets_daily_keep AFTER INSERT OR UPDATE ON markets
    FOR EACH ROW EXECUTE FUNCTION kd_keep_daily('ticker');
CREATE TRIGGER events_daily_keep AFTER INSERT OR UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION kd_keep_daily('event_ticker');
CREATE TRIGGER series_daily_keep AFTER INSERT OR UPDATE ON series
    FOR EACH ROW EXECUTE FUNCTION kd_keep_daily('ticker');

-- What production held so far: each object's current state, on the day of its updated_us.
INSERT INTO markets_daily SELECT m.*, (timestamp '1970-01-01' + m.updated_us * interval '1 microsecond')::date FROM markets m;
INSERT INTO events_daily SELECT e.*, (timestamp '1970-01-01' + e.updated_us * interval '1 microsecond')::date FROM events e;
INSERT INTO series_daily SELECT s.*, (timestamp '1970-01-01' + s.updated_us * interval '1 microsecond')::date FROM series s;

-- A dataset-day's change token (what it was computed from; the export runs it again when the token moves) and
-- whether the day was complete when exported (a partial day, today's, is exported again as it grows).
ALTER TABLE export_manifest ADD COLUMN token text;
ALTER TABLE export_manifest ADD COLUMN complete boolean NOT NULL DEFAULT true;
