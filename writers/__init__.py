"""The writers: Redis stream consumers that store records in the gatherer database, exactly once.

Owns the consumer groups, the batch insert path (binary COPY + INSERT ... ON CONFLICT), trimming.
Must not talk to Kalshi or parse frames, and never acknowledges an entry before its rows are committed.
"""

from writers._insert import BatchInserter, copy_insert, copy_out_sql, copy_rows
from writers._process import make_writers, run_write_process, run_writers
from writers._writer import StreamWriter

__all__ = [
    "BatchInserter",
    "StreamWriter",
    "copy_insert",
    "copy_out_sql",
    "copy_rows",
    "make_writers",
    "run_write_process",
    "run_writers",
]
