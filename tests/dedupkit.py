"""Helpers for dedup tests: fill gatherer databases with records the way writers do."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from core.config import DatabaseConfig, DeduplicatorConfig, ExportConfig, SourceConfig
from core.records import KIND_OF
from core.tables import SPECS
from writers import copy_insert

DAY0 = 1_764_028_800_000_000  # 2025-11-25T00:00:00Z


def db_config(dsn: str) -> DatabaseConfig:
    d = conninfo_to_dict(dsn)
    return DatabaseConfig(host=str(d["host"]), port=int(str(d["port"])), dbname=str(d["dbname"]), user=str(d["user"]))


# Never ./lake: a test that exports by accident must not leave a lake in the checkout (make demo refuses it).
DEFAULT_TEST_LAKE = f"file://{tempfile.gettempdir()}/kd-test-lake"


def dedup_config(
    prod: str, sources: dict[str, str], batch_size: int = 1000, lake: str = DEFAULT_TEST_LAKE, **export: Any
) -> DeduplicatorConfig:
    return DeduplicatorConfig(
        production=db_config(prod),
        sources=[SourceConfig(gatherer_id=g, database=db_config(dsn)) for g, dsn in sources.items()],
        batch_size=batch_size,
        export=ExportConfig(target=lake, **export),
    )


def store(dsn: str, records: Sequence[Any]) -> None:
    """Insert records into a gatherer database, one transaction per kind (as a writer batch)."""
    by_kind: dict[Any, list[Any]] = {}
    for r in records:
        by_kind.setdefault(KIND_OF[type(r)], []).append(r)
    with psycopg.connect(dsn) as conn:
        for kind, recs in by_kind.items():
            spec = SPECS[kind]
            with conn.transaction():
                copy_insert(conn, spec, [spec.row(r) for r in recs])


def keys(dsn: str, table: str, cols: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT {cols} FROM {table} ORDER BY {cols}").fetchall()
