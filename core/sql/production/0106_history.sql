-- The history backfill (history/): Kalshi's candlesticks and the backfill's checkpoints.
-- Candlestick prices are millionths of a dollar (Kalshi's candles carry up to 6 decimals, a mean among them);
-- price_* are NULL for a period without a trade. source: the endpoint that served the candle ('live' for
-- /series/{s}/markets/{t}/candlesticks, 'historical' for /historical/markets/{t}/candlesticks).
CREATE TABLE candlesticks (
    market_ticker     text NOT NULL,
    period_minutes    integer NOT NULL,
    end_period_us     bigint NOT NULL,
    yes_bid_open      bigint,
    yes_bid_high      bigint,
    yes_bid_low       bigint,
    yes_bid_close     bigint,
    yes_ask_open      bigint,
    yes_ask_high      bigint,
    yes_ask_low       bigint,
    yes_ask_close     bigint,
    price_open        bigint,
    price_high        bigint,
    price_low         bigint,
    price_close       bigint,
    price_mean        bigint,
    price_previous    bigint,
    volume            bigint,
    open_interest     bigint,
    source            text NOT NULL,
    received_us       bigint NOT NULL,
    ingest_xid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
    ingest_id         bigint NOT NULL DEFAULT nextval('kd_ingest_seq'),
    PRIMARY KEY (market_ticker, period_minutes, end_period_us)
);
CREATE INDEX candlesticks_time_idx ON candlesticks (end_period_us);

-- One row per piece of work the backfill finished: an endpoint ('trades', 'candles_1m', 'markets', ...), the
-- market (or series, or '' for a listing of everything) and the window [window_from_us, window_to_us) it covered,
-- written in the same transaction as the rows it fetched. A killed backfill resumes at the first window without
-- a row; a second run skips every window that has one.
CREATE TABLE backfill_checkpoints (
    endpoint        text NOT NULL,
    subject         text NOT NULL,
    window_from_us  bigint NOT NULL,
    window_to_us    bigint NOT NULL,
    rows            bigint NOT NULL,
    requests        integer NOT NULL,
    done_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (endpoint, subject, window_from_us, window_to_us)
);
