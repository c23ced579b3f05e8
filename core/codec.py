"""msgpack codec for the Redis hop: one stream entry carries a batch of records of one kind.

Entry payload: msgpack [CODEC_VERSION, kind, [record-as-list, ...]]. Records only ever gain trailing
fields with defaults, so a record from an older writer decodes here with the defaults filled in; a
record with more fields than this version knows (a newer writer) is rejected, never truncated.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import msgpack

from core.records import KIND_OF, RECORD_TYPES, Kind, Record

CODEC_VERSION = 1
PAYLOAD_FIELD = b"p"  # the stream entry's single field


class DecodeError(ValueError):
    """A stream entry that is not a valid record batch."""


def encode_batch(records: Sequence[Record]) -> bytes:
    """Encode records of a single kind into one payload."""
    if not records:
        raise ValueError("empty batch")
    t = type(records[0])
    kind = KIND_OF[t]
    if any(type(r) is not t for r in records):
        raise ValueError("a batch holds one record kind")
    # NamedTuples are tuples: msgpack packs them as arrays without a copy.
    packed: bytes = msgpack.packb([CODEC_VERSION, int(kind), records], use_bin_type=True)
    return packed


def decode_batch(payload: bytes, plain: Collection[Kind] = ()) -> tuple[Kind, list[Any]]:
    """Decode a payload into (kind, records). Raises DecodeError with the reason.

    Rows of a kind in `plain` may come back as lists in the record's field order instead of records (when
    they are of the current version): a caller that only reads them by position (the writer's COPY) skips
    building a record per row."""
    try:
        obj = msgpack.unpackb(payload, raw=False, use_list=True, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise DecodeError(f"not msgpack: {exc}") from None
    if not (isinstance(obj, list) and len(obj) == 3 and isinstance(obj[2], list)):
        raise DecodeError("not a [version, kind, records] triple")
    version, kind_code, rows = obj
    if not isinstance(version, int) or version < 1 or version > CODEC_VERSION:
        raise DecodeError(f"unsupported codec version {version!r}")
    try:
        kind = Kind(kind_code)
    except ValueError:
        raise DecodeError(f"unknown record kind {kind_code!r}") from None
    cls = RECORD_TYPES[kind]
    nfields = len(cls._fields)
    defaults = cls._field_defaults
    if kind is not Kind.ORDERBOOK_SNAPSHOT and all(type(r) is list and len(r) == nfields for r in rows):
        if kind in plain:
            return kind, rows
        new = tuple.__new__  # the common case, current version: no padding, no per-row checks left
        return kind, [new(cls, r) for r in rows]
    out = []
    for row in rows:
        if not isinstance(row, list) or len(row) > nfields:
            raise DecodeError(f"{kind.name} record has the wrong shape")
        if len(row) < nfields:
            missing = cls._fields[len(row) :]
            if any(f not in defaults for f in missing):
                raise DecodeError(f"{kind.name} record lacks required fields {missing}")
            row = row + [defaults[f] for f in missing]
        if kind is Kind.ORDERBOOK_SNAPSHOT:
            row[8] = [tuple(lv) for lv in row[8]]
            row[9] = [tuple(lv) for lv in row[9]]
        out.append(cls(*row))
    return kind, out
