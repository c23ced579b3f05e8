"""Where the lake lives: a local folder or an S3 prefix. A table-day is written to local staging files first,
then put in place with its manifest, the manifest last: it is the commit point a reader can trust.

Local: the day's directory is renamed into place, so a reader sees the old day or the new one, never half.
S3: each object PUT is atomic; the parts go first, the manifest next, then parts of an earlier export that
the new manifest does not list are deleted. A reader that lists the prefix instead of reading the manifest
can see both exports' parts for those seconds; at demo scale a day is one part, replaced in one PUT.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from core.config import ExportConfig

MANIFEST = "_manifest.json"


class Target(ABC):
    """put_day replaces one table-day with the staged files (name -> local path) and the manifest."""

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A local folder for the day's files while they are written (removed after)."""
        d = Path(tempfile.mkdtemp(prefix="kd-export-"))
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)

    @abstractmethod
    def put_day(self, table: str, day: date, files: dict[str, Path], manifest: dict[str, Any]) -> None: ...


class FileTarget(Target):
    def __init__(self, root: Path) -> None:
        self.root = root

    @contextmanager
    def staging(self) -> Iterator[Path]:
        # on the lake's own file system, so the rename into place is atomic and nothing is copied
        self.root.mkdir(parents=True, exist_ok=True)
        d = self.root / f".stage-{uuid.uuid4().hex[:12]}"  # a dot: dataset discovery ignores it
        d.mkdir()
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def put_day(self, table: str, day: date, files: dict[str, Path], manifest: dict[str, Any]) -> None:
        tdir = self.root / table
        tdir.mkdir(parents=True, exist_ok=True)
        final = tdir / f"date={day.isoformat()}"
        tmp = tdir / f".tmp-{day.isoformat()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        for name, path in files.items():
            os.replace(path, tmp / name)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        old = tdir / f".old-{day.isoformat()}-{uuid.uuid4().hex[:8]}"
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)  # readers see the old day or the new day, never a half-written one
        shutil.rmtree(old, ignore_errors=True)


class S3Target(Target):
    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None) -> None:
        import boto3

        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.s3 = boto3.client("s3", endpoint_url=endpoint_url)

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def put_day(self, table: str, day: date, files: dict[str, Path], manifest: dict[str, Any]) -> None:
        base = self._key(table, f"date={day.isoformat()}")
        before = {
            o["Key"]
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base + "/")
            for o in page.get("Contents", [])
        }
        for name, path in files.items():
            self.s3.upload_file(str(path), self.bucket, f"{base}/{name}")  # multipart past 8 MB, streamed
        self.s3.put_object(Bucket=self.bucket, Key=f"{base}/{MANIFEST}", Body=json.dumps(manifest, indent=1).encode())
        stale = sorted(before - {f"{base}/{name}" for name in files} - {f"{base}/{MANIFEST}"})
        for i in range(0, len(stale), 1000):
            self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in stale[i : i + 1000]]})


def make_target(cfg: ExportConfig) -> Target:
    u = urlsplit(cfg.target)
    if u.scheme == "file":
        return FileTarget(Path((u.netloc + u.path) or "."))
    return S3Target(u.netloc, u.path, cfg.s3_endpoint_url)


def _csv_ready(table: Any) -> Any:
    """CSV has no lists: a snapshot's level arrays become JSON text, as a CSV dump of them would hold."""
    import pyarrow as pa

    for i, field in enumerate(table.schema):
        if pa.types.is_list(field.type):
            text = pa.array([None if v is None else json.dumps(v) for v in table.column(i).to_pylist()], pa.string())
            table = table.set_column(i, field.name, text)
    return table


def lake_stats(root: Path) -> dict[str, dict[str, Any]]:
    """Per table of a local lake: files, Parquet bytes, rows, and the bytes of the same rows as gzip CSV
    (level 6, the common baseline for market data dumps) with the ratio of the two. The CSV holds the rows as
    a reader gets them back (`restore`: receive times and snapshot asks included), production's columns but
    the digest, times as ISO text."""
    import gzip

    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from dedup._lake_schema import restore

    out: dict[str, dict[str, Any]] = {}
    for tdir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.exists() else []:
        files = sorted(tdir.glob("date=*/*.parquet"))
        if not files:
            continue
        size = sum(f.stat().st_size for f in files)
        rows = csv_gz = 0
        for f in files:  # one file at a time: a day's file is bounded by max_file_bytes
            table = _csv_ready(restore(tdir.name, pq.read_table(f)))
            rows += table.num_rows
            with tempfile.TemporaryFile() as raw:
                pcsv.write_csv(table, raw)
                raw.seek(0)
                with tempfile.TemporaryFile() as gz:
                    with gzip.GzipFile(fileobj=gz, mode="wb", compresslevel=6) as z:
                        shutil.copyfileobj(raw, z)
                    csv_gz += gz.tell()
        out[tdir.name] = {
            "files": len(files),
            "bytes": size,
            "rows": rows,
            "gzip_csv_bytes": csv_gz,
            "ratio_to_gzip_csv": round(size / csv_gz, 3) if csv_gz else None,
        }
    return out


def column_floor(root: Path, stats: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Per table with 1,000 rows or more, a floor under any coding that stores columns apart, as Parquet does:
    each column as the lake stores it, on its own, as CSV text under xz -9e (a stronger compressor than any
    Parquet codec), over gzip CSV of the restored rows; and the largest single column's share. `stats`:
    lake_stats(root), when the caller has it already."""
    import io
    import lzma

    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    stats = stats if stats is not None else lake_stats(root)
    out = {}
    for table, s in stats.items():
        if s["rows"] < 1_000:
            continue
        lake = pq.read_table(sorted((root / table).glob("date=*/*.parquet")))
        sizes = {}
        for name in lake.column_names:
            buf = io.BytesIO()
            pcsv.write_csv(_csv_ready(lake.select([name])), buf, pcsv.WriteOptions(include_header=False))
            sizes[name] = len(lzma.compress(buf.getvalue(), preset=9 | lzma.PRESET_EXTREME))
        top = max(sizes, key=lambda n: sizes[n])
        out[table] = {
            "xz_columns_to_gzip_csv": round(sum(sizes.values()) / s["gzip_csv_bytes"], 3),
            "largest_column": top,
            "largest_column_to_gzip_csv": round(sizes[top] / s["gzip_csv_bytes"], 3),
            "parquet_to_gzip_csv": s["ratio_to_gzip_csv"],
        }
    return out
