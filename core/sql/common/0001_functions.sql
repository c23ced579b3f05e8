-- Time partitioning that works on plain PostgreSQL (declarative daily range partitions) and becomes
-- TimescaleDB hypertables when the extension is installed. Same table names, same queries, both ways.

CREATE SEQUENCE IF NOT EXISTS kd_ingest_seq AS bigint;

-- The DDL for one time-partitioned table, as statements (tests assert the TimescaleDB branch without
-- the extension installed).
CREATE OR REPLACE FUNCTION kd_time_table_statements(
    tbl text, body text, time_col text, timescale boolean, chunk_us bigint DEFAULT 86400000000
) RETURNS SETOF text LANGUAGE plpgsql IMMUTABLE AS $fn$
BEGIN
    IF timescale THEN
        RETURN NEXT format('CREATE TABLE %I (%s)', tbl, body);
        RETURN NEXT format(
            'SELECT create_hypertable(%L, %L, chunk_time_interval => %s::bigint)', tbl, time_col, chunk_us);
        -- Integer time columns need a "now" for compression/retention policies.
        RETURN NEXT format(
            'SELECT set_integer_now_func(%L, %L)', tbl, 'kd_now_us');
        RETURN NEXT format(
            'ALTER TABLE %I SET (timescaledb.compress, timescaledb.compress_orderby = %L)',
            tbl, time_col || ' DESC');
    ELSE
        RETURN NEXT format('CREATE TABLE %I (%s) PARTITION BY RANGE (%I)', tbl, body, time_col);
        -- A safety net: a row for a day without a partition is kept, never refused;
        -- kd_ensure_partitions moves such rows into their day when it creates it.
        RETURN NEXT format('CREATE TABLE %I PARTITION OF %I DEFAULT', tbl || '_default', tbl);
    END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION kd_now_us() RETURNS bigint LANGUAGE sql STABLE AS
$fn$ SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint $fn$;

CREATE OR REPLACE FUNCTION kd_has_timescale() RETURNS boolean LANGUAGE sql STABLE AS
$fn$ SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') $fn$;

CREATE OR REPLACE FUNCTION kd_create_time_table(tbl text, body text, time_col text)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    stmt text;
BEGIN
    FOR stmt IN SELECT * FROM kd_time_table_statements(tbl, body, time_col, kd_has_timescale()) LOOP
        EXECUTE stmt;
    END LOOP;
END
$fn$;

-- Create the daily partitions covering [from_us, to_us) for a plain-PostgreSQL partitioned table.
-- No-op on hypertables. Rows already sitting in the default partition for a new day are moved in.
-- Returns the number of partitions created. Safe to call concurrently (advisory lock per table).
CREATE OR REPLACE FUNCTION kd_ensure_partitions(tbl text, from_us bigint, to_us bigint)
RETURNS integer LANGUAGE plpgsql AS $fn$
DECLARE
    day_us constant bigint := 86400000000;
    lo bigint;
    part text;
    created integer := 0;
    time_col text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_partitioned_table pt JOIN pg_class c ON c.oid = pt.partrelid
                   WHERE c.relname = tbl AND c.relnamespace = current_schema()::regnamespace) THEN
        RETURN 0;
    END IF;
    SELECT a.attname INTO time_col
      FROM pg_partitioned_table pt
      JOIN pg_class c ON c.oid = pt.partrelid
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = pt.partattrs[0]
     WHERE c.relname = tbl AND c.relnamespace = current_schema()::regnamespace;
    PERFORM pg_advisory_xact_lock(hashtext('kd_partitions:' || tbl));
    lo := (from_us / day_us) * day_us;
    IF from_us < 0 AND from_us % day_us <> 0 THEN
        lo := lo - day_us;
    END IF;
    WHILE lo < to_us LOOP
        part := tbl || '_p' || to_char(to_timestamp(lo / 1000000) AT TIME ZONE 'UTC', 'YYYYMMDD');
        IF to_regclass(quote_ident(part)) IS NULL THEN
            EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS)', part, tbl);
            EXECUTE format(
                'WITH moved AS (DELETE FROM %I WHERE %I >= %s AND %I < %s RETURNING *) '
                'INSERT INTO %I SELECT * FROM moved',
                tbl || '_default', time_col, lo, time_col, lo + day_us, part);
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)',
                           tbl, part, lo, lo + day_us);
            created := created + 1;
        END IF;
        lo := lo + day_us;
    END LOOP;
    RETURN created;
END
$fn$;

-- Drop whole daily partitions that end at or before before_us (plain PostgreSQL retention).
CREATE OR REPLACE FUNCTION kd_drop_partitions_before(tbl text, before_us bigint)
RETURNS integer LANGUAGE plpgsql AS $fn$
DECLARE
    r record;
    dropped integer := 0;
BEGIN
    FOR r IN
        SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = tbl::regclass AND c.relname ~ '_p[0-9]{8}$'
    LOOP
        IF (substring(r.bound FROM 'TO \(''?(-?[0-9]+)''?\)'))::bigint <= before_us THEN
            EXECUTE format('DROP TABLE %I', r.relname);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    RETURN dropped;
END
$fn$;
