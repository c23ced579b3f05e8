"""The router: parses every WebSocket frame once, normalises it into core records and XADDs them.

Owns frame parsing, the dead-letter stream, the Redis sink with its disk spill, and stream stats.
Must not touch the database or WebSocket connections (gatherer/) and must not drop a record.
"""

from router._copies import CopyFilter, copy_filters
from router._frames import CONTROL_TYPES, DATA_TYPES, Frame, FrameError, FrameNormaliser, parse
from router._redis_sink import STREAM_OF_KIND, RedisSink, read_spill
from router._sink import MemorySink, RecordSink

__all__ = [
    "CONTROL_TYPES",
    "DATA_TYPES",
    "STREAM_OF_KIND",
    "CopyFilter",
    "Frame",
    "FrameError",
    "FrameNormaliser",
    "MemorySink",
    "RecordSink",
    "RedisSink",
    "copy_filters",
    "parse",
    "read_spill",
]
