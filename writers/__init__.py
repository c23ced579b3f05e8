"""The writers: Redis consumer groups into the gatherer's database, acknowledged only after COMMIT.

Owns batch reads, COPY-based idempotent inserts, claiming a dead consumer's entries, stream trimming.
Must not touch the exchange, the production database or the lake.
"""
