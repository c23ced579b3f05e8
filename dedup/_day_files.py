"""One table-day of the lake being written: rows in, Parquet parts out (a new part past `max_file_bytes`), the
manifest last. Every dataset writes through it, so every file has the same encodings, statistics, page index and
sort metadata, and memory holds one row group whatever the day's size."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from core import metrics
from core.config import ExportConfig
from dedup._lake import Target
from dedup._lake_encoding import choose as choose_encodings
from dedup._lake_encoding import writer_options
from dedup._lake_schema import LAKE_FORMAT, arrow_schema


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def arrow_batch(rows: Sequence[tuple[Any, ...]], schema: pa.Schema) -> pa.Table:
    columns = list(zip(*rows, strict=True))
    return pa.Table.from_arrays([pa.array(c, type=schema.field(i).type) for i, c in enumerate(columns)], schema=schema)


class DayFiles:
    """The parts of one table-day in a staging folder (Target.staging); `add` takes rows in the lake's column order
    and sort order, `manifest` closes the last part and describes them all."""

    def __init__(self, table: str, day: date, stage: Path, cfg: ExportConfig, order: list[str]) -> None:
        self.table, self.day, self.stage, self.cfg, self.order = table, day, stage, cfg, order
        self.schema = arrow_schema(table)
        self.files: dict[str, Path] = {}
        self.entries: list[dict[str, Any]] = []
        self.rows = 0
        self._pending: list[tuple[Any, ...]] = []
        self._writer: pq.ParquetWriter | None = None
        self._path: Path | None = None

    def add(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self._pending.extend(rows)
        while len(self._pending) >= self.cfg.row_group_size:
            group, self._pending = self._pending[: self.cfg.row_group_size], self._pending[self.cfg.row_group_size :]
            self._write(group)

    def _write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        batch = arrow_batch(rows, self.schema)
        if self._writer is None or self._path is None or self._path.stat().st_size >= self.cfg.max_file_bytes:
            self._close()
            name = f"part-{len(self.files):04d}.parquet"
            self._path = self.files[name] = self.stage / name
            self._writer = self._open(self._path, batch)
            self.entries.append({"path": name, "rows": 0})
        self._writer.write_table(batch, row_group_size=self.cfg.row_group_size)
        self.entries[-1]["rows"] += len(rows)
        self.rows += len(rows)

    def _open(self, path: Path, first: pa.Table) -> pq.ParquetWriter:
        """A part's writer, its encodings chosen on its first row group."""
        schema, cfg = first.schema, self.cfg
        names = schema.names
        return pq.ParquetWriter(
            path,
            schema,
            compression="zstd",
            compression_level=cfg.zstd_level,
            write_statistics=True,
            write_page_index=True,  # per-page min/max: a reader skips pages inside a row group too
            sorting_columns=[pq.SortingColumn(names.index(c)) for c in self.order if c in names],
            bloom_filter_options={self.order[0]: True} if cfg.bloom_filter else None,
            **writer_options(choose_encodings(first, cfg.zstd_level), schema),
        )

    def _close(self) -> None:
        if self._writer is not None and self._path is not None:
            self._writer.close()
            self.entries[-1].update(bytes=self._path.stat().st_size, sha256=_sha256(self._path))
            self._writer = None

    def finish(self, target: Target, complete: bool, token: str, extra: dict[str, Any] | None = None) -> int:
        """Write what is left, put the day in place with its manifest; the bytes written."""
        if self._pending:
            self._write(self._pending)
            self._pending = []
        self._close()
        manifest = {
            "table": self.table,
            "day": self.day.isoformat(),
            "complete": complete,  # false: the day in progress, exported again as it grows
            "rows": self.rows,
            "token": token,
            "sorted_by": self.order,
            "lake_format": LAKE_FORMAT,
            "files": self.entries,
            "exported_at": datetime.now(UTC).isoformat(),
        } | (extra or {})
        target.put_day(self.table, self.day, self.files, manifest)
        size = sum(int(e["bytes"]) for e in self.entries)
        metrics.EXPORT_FILES.labels(self.table).inc(len(self.entries))
        metrics.EXPORT_BYTES.labels(self.table).inc(size)
        return size
