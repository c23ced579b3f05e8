-- Exchange events. Prices: integer hundred-thousandths of a dollar. Quantities: integer hundredths of
-- a contract. Times: unix microseconds UTC. Sides: true = yes. Every table carries the exchange time,
-- the receive time and the gatherer id; the UNIQUE constraint is the natural key that makes a row
-- unique across gatherers (docs/architecture.md explains each). ingest_xid/ingest_id order rows for the
-- deduplicator's cursor (it reads only below the oldest running transaction, so late commits are seen).

SELECT kd_create_time_table('trades', $body$
    trade_id           text NOT NULL,
    market_ticker      text NOT NULL,
    exchange_ts_us     bigint NOT NULL,
    yes_price          integer NOT NULL,
    no_price           integer NOT NULL,
    count              bigint NOT NULL,
    taker_outcome_side boolean,
    taker_book_side    text,
    taker_side         boolean,
    is_block_trade     boolean,
    source             text NOT NULL,
    received_us        bigint NOT NULL,
    gatherer_id        text NOT NULL,
    ingest_xid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    ingest_id          bigint NOT NULL DEFAULT nextval('kd_ingest_seq'),
    CONSTRAINT trades_natural_key UNIQUE (trade_id, exchange_ts_us)
$body$, 'exchange_ts_us');
CREATE INDEX trades_market_ts_idx ON trades (market_ticker, exchange_ts_us);
CREATE INDEX trades_ingest_idx ON trades (ingest_xid, ingest_id);

SELECT kd_create_time_table('orderbook_deltas', $body$
    market_ticker   text NOT NULL,
    exchange_ts_us  bigint NOT NULL,
    side            boolean NOT NULL,
    price           integer NOT NULL,
    delta           bigint NOT NULL,
    occurrence      integer NOT NULL,
    market_id       text,
    sid             integer NOT NULL,
    seq             bigint NOT NULL,
    client_order_id text,
    received_us     bigint NOT NULL,
    gatherer_id     text NOT NULL,
    ingest_xid      xid8 NOT NULL DEFAULT pg_current_xact_id(),
    ingest_id       bigint NOT NULL DEFAULT nextval('kd_ingest_seq'),
    CONSTRAINT orderbook_deltas_natural_key
        UNIQUE (market_ticker, exchange_ts_us, side, price, delta, occurrence)
$body$, 'exchange_ts_us');
CREATE INDEX orderbook_deltas_ingest_idx ON orderbook_deltas (ingest_xid, ingest_id);

-- Snapshots are observations by one gatherer (Kalshi's carry no time), keyed by who saw them when.
-- Bids as received, plus the derived asks: YES asks from NO bids at 1 - price, NO asks from YES bids.
SELECT kd_create_time_table('orderbook_snapshots', $body$
    market_ticker   text NOT NULL,
    received_us     bigint NOT NULL,
    gatherer_id     text NOT NULL,
    source          text NOT NULL,
    exchange_ts_us  bigint,
    market_id       text,
    sid             integer,
    seq             bigint,
    yes_bid_prices  integer[] NOT NULL,
    yes_bid_sizes   bigint[] NOT NULL,
    no_bid_prices   integer[] NOT NULL,
    no_bid_sizes    bigint[] NOT NULL,
    yes_ask_prices  integer[] NOT NULL,
    yes_ask_sizes   bigint[] NOT NULL,
    no_ask_prices   integer[] NOT NULL,
    no_ask_sizes    bigint[] NOT NULL,
    ingest_xid      xid8 NOT NULL DEFAULT pg_current_xact_id(),
    ingest_id       bigint NOT NULL DEFAULT nextval('kd_ingest_seq'),
    CONSTRAINT orderbook_snapshots_natural_key UNIQUE (gatherer_id, market_ticker, received_us, source)
$body$, 'received_us');
CREATE INDEX orderbook_snapshots_market_idx ON orderbook_snapshots (market_ticker, received_us);
CREATE INDEX orderbook_snapshots_ingest_idx ON orderbook_snapshots (ingest_xid, ingest_id);

-- A ticker is a state message with no id: identical content for one market at one exchange time is one
-- row (digest over every value field, core.records.ticker_digest).
SELECT kd_create_time_table('tickers', $body$
    market_ticker        text NOT NULL,
    exchange_ts_us       bigint NOT NULL,
    digest               bigint NOT NULL,
    market_id            text,
    price                integer,
    yes_bid              integer,
    yes_ask              integer,
    yes_bid_size         bigint,
    yes_ask_size         bigint,
    last_trade_size      bigint,
    volume               bigint,
    open_interest        bigint,
    dollar_volume        bigint,
    dollar_open_interest bigint,
    received_us          bigint NOT NULL,
    gatherer_id          text NOT NULL,
    ingest_xid           xid8 NOT NULL DEFAULT pg_current_xact_id(),
    ingest_id            bigint NOT NULL DEFAULT nextval('kd_ingest_seq'),
    CONSTRAINT tickers_natural_key UNIQUE (market_ticker, exchange_ts_us, digest)
$body$, 'exchange_ts_us');
CREATE INDEX tickers_ingest_idx ON tickers (ingest_xid, ingest_id);

-- Low volume: not partitioned. Lifecycle messages carry no common time field; the digest covers every
-- time and value the message gave (core.records.lifecycle_digest).
CREATE TABLE lifecycle_events (
    market_ticker       text NOT NULL,
    event_type          text NOT NULL,
    digest              bigint NOT NULL,
    open_ts_us          bigint,
    close_ts_us         bigint,
    determination_ts_us bigint,
    settled_ts_us       bigint,
    result              text,
    is_deactivated      boolean,
    metadata            jsonb,
    received_us         bigint NOT NULL,
    gatherer_id         text NOT NULL,
    ingest_xid          xid8 NOT NULL DEFAULT pg_current_xact_id(),
    ingest_id           bigint NOT NULL DEFAULT nextval('kd_ingest_seq'),
    CONSTRAINT lifecycle_events_natural_key UNIQUE (market_ticker, event_type, digest)
);
CREATE INDEX lifecycle_events_ingest_idx ON lifecycle_events (ingest_xid, ingest_id);

-- What one gatherer noticed missing. Production derives coverage gaps (every gatherer missed) from these.
CREATE TABLE sequence_gaps (
    gatherer_id   text NOT NULL,
    connection_id text NOT NULL,
    channel       text NOT NULL,
    sid           integer NOT NULL,
    market_ticker text NOT NULL,
    expected_seq  bigint NOT NULL,
    got_seq       bigint NOT NULL,
    kind          text NOT NULL,
    detected_us   bigint NOT NULL,
    ingest_xid    xid8 NOT NULL DEFAULT pg_current_xact_id(),
    ingest_id     bigint NOT NULL DEFAULT nextval('kd_ingest_seq'),
    CONSTRAINT sequence_gaps_natural_key
        UNIQUE (gatherer_id, connection_id, sid, market_ticker, detected_us, expected_seq)
);
CREATE INDEX sequence_gaps_ingest_idx ON sequence_gaps (ingest_xid, ingest_id);
