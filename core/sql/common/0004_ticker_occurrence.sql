-- Tickers are states, and a state can repeat inside one exchange millisecond (ask emptied, refilled,
-- emptied again: the first and third tickers are identical). Each is an event the exchange sent, so
-- the natural key numbers identical tickers like identical deltas: occurrence = how many identical
-- (market, time, values) tickers the subscription delivered before this one. Redundant connections and
-- gatherers count the same way, so their copies still collapse into one row.
-- TimescaleDB: a unique constraint cannot be created over compressed chunks; decompress the tickers
-- chunks first (docs/operations.md, "Upgrading").
ALTER TABLE tickers ADD COLUMN occurrence integer NOT NULL DEFAULT 0;
ALTER TABLE tickers DROP CONSTRAINT tickers_natural_key;
ALTER TABLE tickers ADD CONSTRAINT tickers_natural_key UNIQUE (market_ticker, exchange_ts_us, digest, occurrence);
