-- The lake's file format a day was exported in (dedup/_lake_schema.py LAKE_FORMAT): 1 the first layout (a
-- folder per market), 2 one file per table-day, 3 receive delays and no derived columns. A day exported in
-- an older format is exported again by the next run: that is how a lake migrates.
ALTER TABLE export_manifest ADD COLUMN lake_format integer NOT NULL DEFAULT 1;
