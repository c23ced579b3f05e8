"""The router: parses every WebSocket frame once, normalises it into core records, XADDs to Redis.

Owns frame parsing, sequence bookkeeping per subscription, the dead-letter stream and spill-to-disk.
Must not talk to the exchange or to PostgreSQL.
"""
