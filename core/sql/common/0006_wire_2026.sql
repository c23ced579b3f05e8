-- What the live feed sends besides the 2025 shapes (kalshi-api.md, "Easy to miss").
-- Lifecycle: `created` carries price_level_structure and exchange_index, `determined`/`settled` may carry
-- settlement_value; multivariate markets' lifecycle (its own channel since 2026-03-19) lands here too.
ALTER TABLE lifecycle_events ADD COLUMN exchange_index text;
ALTER TABLE lifecycle_events ADD COLUMN price_level_structure text;
ALTER TABLE lifecycle_events ADD COLUMN settlement_value integer;
-- A market paused, resumed and paused again sends the same message twice within moments: the router numbers
-- identical messages per subscription within 60 s (occurrence), and copies collapse only with the same number.
ALTER TABLE lifecycle_events ADD COLUMN occurrence integer NOT NULL DEFAULT 0;
DROP INDEX lifecycle_events_natural_key_idx;
CREATE INDEX lifecycle_events_natural_key_idx
    ON lifecycle_events (market_ticker, event_type, digest, occurrence, received_us);

-- event_lifecycle and event_fee_update arrive on the lifecycle subscriptions. Neither carries a time or an
-- id: like market lifecycle messages, a row goes in unless an identical one (same event, same content
-- digest, same occurrence) was received within 60 s (core.tables, copies_within_us); this index serves that lookup.
CREATE TABLE event_lifecycle_events (
    event_ticker           text NOT NULL,
    digest                 bigint NOT NULL,
    series_ticker          text,
    title                  text,
    subtitle               text,
    collateral_return_type text,
    strike_date_us         bigint,
    strike_period          text,
    raw                    jsonb NOT NULL,
    received_us            bigint NOT NULL,
    gatherer_id            text NOT NULL,
    occurrence             integer NOT NULL DEFAULT 0,
    ingest_xid             xid8 NOT NULL DEFAULT pg_current_xact_id(),
    ingest_id              bigint NOT NULL DEFAULT nextval('kd_ingest_seq')
);
CREATE INDEX event_lifecycle_events_key_idx ON event_lifecycle_events (event_ticker, digest, occurrence, received_us);
CREATE INDEX event_lifecycle_events_ingest_idx ON event_lifecycle_events (ingest_xid, ingest_id);

CREATE TABLE event_fee_updates (
    event_ticker            text NOT NULL,
    digest                  bigint NOT NULL,
    fee_type_override       text,
    fee_multiplier_override text,
    raw                     jsonb NOT NULL,
    received_us             bigint NOT NULL,
    gatherer_id             text NOT NULL,
    occurrence              integer NOT NULL DEFAULT 0,
    ingest_xid              xid8 NOT NULL DEFAULT pg_current_xact_id(),
    ingest_id               bigint NOT NULL DEFAULT nextval('kd_ingest_seq')
);
CREATE INDEX event_fee_updates_key_idx ON event_fee_updates (event_ticker, digest, occurrence, received_us);
CREATE INDEX event_fee_updates_ingest_idx ON event_fee_updates (ingest_xid, ingest_id);
