"""The router: parses every WebSocket frame once, normalises it into core records and XADDs them.

Owns frame parsing, the dead-letter stream, the Redis sink with its disk spill, and stream stats.
Must not touch the database or WebSocket connections (gatherer/) and must not drop a record.
"""

from router._sink import MemorySink, RecordSink

__all__ = ["MemorySink", "RecordSink"]
