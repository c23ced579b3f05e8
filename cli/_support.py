"""Helpers of the demo pipeline: throw-away databases, free ports, the printed summary."""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from core.config import DatabaseConfig
from core.migrations import maintain_partitions, migrate


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dsn(admin: str, dbname: str) -> str:
    parts = conninfo_to_dict(admin)
    parts["dbname"] = dbname
    return make_conninfo("", **parts)


def db_config(dsn: str) -> DatabaseConfig:
    d = conninfo_to_dict(dsn)
    return DatabaseConfig(host=str(d.get("host", "127.0.0.1")), port=int(str(d.get("port", 5432))),
                          dbname=str(d["dbname"]), user=str(d.get("user", "postgres")), pool_max=4)  # fmt: skip


def fresh_database(admin: str, dbname: str, role: str) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{dbname}"')
    dsn = _dsn(admin, dbname)
    migrate(dsn, role)  # type: ignore[arg-type]
    maintain_partitions(dsn, time.time_ns() // 1000, ahead_days=2, retain_days=None)
    return dsn


def print_summary(report: dict[str, Any]) -> None:
    print("\nsummary")
    print(f"  markets in production: {report['markets_in_production']}   coverage gaps: {report['coverage_gaps']}")
    print(f"  lake: {report['lake']['parquet_files']} Parquet files, {report['lake']['bytes'] / 1e6:.1f} MB in "
          f"{report['lake']['path']}")  # fmt: skip
    w = max(18, *(len(t) + 2 for t in report["completeness"]))
    print(f"  {'table':<{w}}{'ledger':>10}{'production':>12}{'missing':>9}{'extra':>7}{'differing':>10}")
    for table, c in report["completeness"].items():
        print(f"  {table:<{w}}{c['expected']:>10}{c['stored']:>12}{c['missing']:>9}{c['extra']:>7}{c['differing']:>10}")
    print(json.dumps({"summary": report}, default=str))
