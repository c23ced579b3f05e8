"""`kalshi-data demo`: the main job on one machine. It grows with the pipeline; today it prepares the
gatherer and production databases on the local PostgreSQL and prints what is there."""

from __future__ import annotations

import json
import os
import time

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from core.migrations import maintain_partitions, migrate

ADMIN_DSN = os.environ.get("KD_DEMO_PG", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")


def _dsn_for(dbname: str) -> str:
    parts = conninfo_to_dict(ADMIN_DSN)
    parts["dbname"] = dbname
    return make_conninfo("", **parts)


def ensure_database(dbname: str) -> str:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{dbname}"')
    return _dsn_for(dbname)


def run_demo() -> int:
    t0 = time.monotonic()
    summary: dict[str, object] = {}
    for dbname, role in (("kalshi_demo_g1", "gatherer"), ("kalshi_demo_prod", "production")):
        dsn = ensure_database(dbname)
        applied = migrate(dsn, role)  # type: ignore[arg-type]
        parts = maintain_partitions(dsn, time.time_ns() // 1000, ahead_days=2, retain_days=None)
        print(f"[demo] {dbname}: {len(applied)} migrations applied, {parts['created']} partitions created")
        summary[dbname] = {"role": role, "migrations_applied": applied, **parts}
    summary["seconds"] = round(time.monotonic() - t0, 2)
    print(json.dumps({"summary": summary}, indent=2))
    return 0
