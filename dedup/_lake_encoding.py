"""How each lake column is encoded: per file, the smallest of the encodings DuckDB, Polars and pyarrow all read,
measured on the file's first row group under the file's own codec and level.

Which one wins depends on the data, not on the column's type, so no fixed rule holds: on the demo's day a
receive time under zstd is 25 % smaller PLAIN than delta-encoded (zstd finds the repeated high bytes itself),
a delta's exchange time is 28 % smaller as a dictionary (many deltas share a millisecond), and a trade id 7 %
smaller with its lengths apart (DELTA_LENGTH_BYTE_ARRAY). BYTE_STREAM_SPLIT is not a candidate: DuckDB 1.5
reads it for floating point only. The choice is a function of the rows, so a day still exports to the same
bytes.
"""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

DICTIONARY = "dictionary"
# what every reader the lake promises (DuckDB, Polars, pyarrow) decodes, besides the dictionary
_INTEGER_ENCODINGS = ("PLAIN", "DELTA_BINARY_PACKED")
_STRING_ENCODINGS = ("PLAIN", "DELTA_LENGTH_BYTE_ARRAY", "DELTA_BYTE_ARRAY")


def candidates(field: pa.Field) -> tuple[str, ...]:
    """The encodings tried for a column; one where there is nothing to choose."""
    t = field.type
    if pa.types.is_integer(t) or pa.types.is_timestamp(t):
        return (DICTIONARY, *_INTEGER_ENCODINGS)
    if pa.types.is_string(t):
        return (DICTIONARY, *_STRING_ENCODINGS)
    # booleans are bit-packed, never given a dictionary; a list's levels measured smallest PLAIN on every
    # snapshot day tried (a dictionary of sizes costs 2.6x, a delta-encoding 4x)
    return ("PLAIN",)


def column_bytes(column: pa.ChunkedArray | pa.Array, field: pa.Field, encoding: str, level: int) -> int:
    """Compressed bytes of one column written alone with `encoding` under zstd at `level`."""
    buf = io.BytesIO()
    kwargs: dict[str, Any] = {"use_dictionary": encoding == DICTIONARY}
    if encoding != DICTIONARY:
        kwargs["column_encoding"] = {field.name: encoding}
    table = pa.Table.from_arrays([column], schema=pa.schema([field]))
    pq.write_table(table, buf, compression="zstd", compression_level=level, write_statistics=False, **kwargs)
    meta = pq.ParquetFile(io.BytesIO(buf.getvalue())).metadata
    return sum(meta.row_group(g).column(0).total_compressed_size for g in range(meta.num_row_groups))


def choose(sample: pa.Table, level: int) -> dict[str, str]:
    """Column -> its smallest candidate encoding on `sample` (ties go to the earlier candidate)."""
    chosen = {}
    for i, field in enumerate(sample.schema):
        options = candidates(field)
        if len(options) == 1:
            chosen[field.name] = options[0]
            continue
        sizes = {enc: column_bytes(sample.column(i), field, enc, level) for enc in options}
        chosen[field.name] = min(options, key=lambda enc: sizes[enc])
    return chosen


def writer_options(chosen: dict[str, str], schema: pa.Schema) -> dict[str, Any]:
    """`choose`'s result as ParquetWriter keyword arguments."""
    return {
        "use_dictionary": [f.name for f in schema if chosen.get(f.name, DICTIONARY) == DICTIONARY],
        "column_encoding": {name: enc for name, enc in chosen.items() if enc != DICTIONARY},
    }
