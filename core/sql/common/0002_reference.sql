-- Reference data: the newest known state of each series, event and market. Upserts keep the row with
-- the greatest updated_us (the exchange's updated_time when it sends one, else the receive time).
-- ingest_xid/ingest_id move on every change, so the deduplicator's cursor sees updates too.

CREATE TABLE series (
    ticker        text PRIMARY KEY,
    title         text,
    category      text,
    frequency     text,
    raw           jsonb NOT NULL DEFAULT '{}',
    updated_us    bigint NOT NULL,
    received_us   bigint NOT NULL,
    gatherer_id   text NOT NULL,
    ingest_xid    xid8 NOT NULL DEFAULT pg_current_xact_id(),
    ingest_id     bigint NOT NULL DEFAULT nextval('kd_ingest_seq')
);

CREATE TABLE events (
    event_ticker       text PRIMARY KEY,
    series_ticker      text,
    title              text,
    sub_title          text,
    category           text,
    mutually_exclusive boolean,
    strike_date_us     bigint,
    raw                jsonb NOT NULL DEFAULT '{}',
    updated_us         bigint NOT NULL,
    received_us        bigint NOT NULL,
    gatherer_id        text NOT NULL,
    ingest_xid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    ingest_id          bigint NOT NULL DEFAULT nextval('kd_ingest_seq')
);

CREATE TABLE markets (
    ticker             text PRIMARY KEY,
    event_ticker       text NOT NULL,
    series_ticker      text,
    market_type        text,
    status             text,
    title              text,
    open_time_us       bigint,
    close_time_us      bigint,
    expiration_time_us bigint,
    tick_size          integer,
    yes_bid            integer,
    yes_ask            integer,
    last_price         integer,
    volume             bigint,
    open_interest      bigint,
    result             text,
    raw                jsonb NOT NULL DEFAULT '{}',
    updated_us         bigint NOT NULL,
    received_us        bigint NOT NULL,
    gatherer_id        text NOT NULL,
    ingest_xid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    ingest_id          bigint NOT NULL DEFAULT nextval('kd_ingest_seq')
);
CREATE INDEX markets_status_idx ON markets (status);
CREATE INDEX markets_event_idx ON markets (event_ticker);

CREATE INDEX series_ingest_idx ON series (ingest_xid, ingest_id);
CREATE INDEX events_ingest_idx ON events (ingest_xid, ingest_id);
CREATE INDEX markets_ingest_idx ON markets (ingest_xid, ingest_id);
