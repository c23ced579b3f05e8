"""Ordered, versioned SQL migrations for the gatherer and production databases.

Files live in core/sql/{common,gatherer,production}/NNNN_name.sql. Each is applied in its own
transaction and recorded in kd_schema_migrations with its checksum; a session advisory lock makes two
processes starting together apply each file once; an already-applied file that changed is an error.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import psycopg

log = logging.getLogger(__name__)

Role = Literal["gatherer", "production"]
ROLES: tuple[Role, ...] = ("gatherer", "production")
# Gatherer databases: "auto" creates the TimescaleDB extension where the server has it installed and
# preloaded (hypertables, compression, retention policies), else plain daily partitions; "require" refuses
# to migrate without it; "off" never uses it. Production (RDS) is always plain PostgreSQL.
Timescale = Literal["auto", "require", "off"]
_LOCK_KEY = 0x6B645F6D6967  # "kd_mig": one advisory lock id for all kalshi-data migrations


class MigrationError(Exception):
    """A migration set that cannot be applied as it is (bad file name, duplicate version, edited file)."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(role: Role) -> list[Migration]:
    if role not in ROLES:
        raise MigrationError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    found: dict[int, Migration] = {}
    root = resources.files("core") / "sql"
    for folder in ("common", role):
        for entry in (root / folder).iterdir():
            if not entry.name.endswith(".sql"):
                continue
            head = entry.name.split("_", 1)[0]
            if not head.isdigit():
                raise MigrationError(f"migration file {entry.name} does not start with a version number")
            version = int(head)
            if version in found:
                raise MigrationError(f"two migrations with version {version}: {entry.name}")
            found[version] = Migration(version, entry.name, entry.read_text())
    return [found[v] for v in sorted(found)]


def _ensure_table(conn: psycopg.Connection) -> None:
    conn.execute(
        """CREATE TABLE IF NOT EXISTS kd_schema_migrations (
               version    integer PRIMARY KEY,
               name       text NOT NULL,
               checksum   text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )


def applied_versions(conn: psycopg.Connection) -> dict[int, str]:
    row = conn.execute("SELECT to_regclass('kd_schema_migrations')").fetchone()
    if row is None or row[0] is None:
        return {}
    return {v: c for v, c in conn.execute("SELECT version, checksum FROM kd_schema_migrations")}


def timescale_available(conn: psycopg.Connection) -> bool:
    """The extension is installed on the server and preloaded (CREATE EXTENSION would succeed)."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') "
        "AND current_setting('shared_preload_libraries') LIKE '%timescaledb%'"
    ).fetchone()
    return bool(row and row[0])


def _ensure_timescale(conn: psycopg.Connection, mode: Timescale, fresh: bool) -> None:
    if mode == "off":
        return
    if not timescale_available(conn):
        if mode == "require":
            raise MigrationError(
                "timescaledb: required, but the server does not have the extension installed and preloaded "
                "(shared_preload_libraries = 'timescaledb'); see README, TimescaleDB"
            )
        return
    # only before the first migration: tables made as plain partitions stay so (no silent conversion)
    if fresh:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    elif mode == "require" and not _has_extension(conn):
        raise MigrationError("timescaledb: required, but this database was created without it (plain partitions)")


def _has_extension(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')").fetchone()
    return bool(row and row[0])


def migrate(dsn: str, role: Role, timescaledb: Timescale = "auto") -> list[str]:
    """Apply every pending migration for the role. Returns the names applied (empty when up to date)."""
    migrations = load_migrations(role)
    applied_now: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            _ensure_table(conn)
            done = applied_versions(conn)
            if role == "gatherer":
                _ensure_timescale(conn, timescaledb, fresh=not done)
            for m in migrations:
                if m.version in done:
                    if done[m.version] != m.checksum:
                        raise MigrationError(
                            f"migration {m.name} was changed after it was applied; add a new migration instead"
                        )
                    continue
                with conn.transaction():
                    conn.execute(m.sql.encode())
                    conn.execute(
                        "INSERT INTO kd_schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (m.version, m.name, m.checksum),
                    )
                log.info("applied migration %s", m.name)
                applied_now.append(m.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def pending(dsn: str, role: Role) -> list[str]:
    """Names of migrations not yet applied (the gatherer refuses to start while any are pending)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        done = applied_versions(conn)
    return [m.name for m in load_migrations(role) if m.version not in done]


PARTITIONED_TABLES: tuple[str, ...] = ("trades", "orderbook_deltas", "orderbook_snapshots", "tickers")
DAY_US = 86_400_000_000


def maintain_partitions(
    dsn: str, now_us: int, ahead_days: int, retain_days: int | None, behind_days: int = 1
) -> dict[str, int]:
    """Plain PostgreSQL: create daily partitions around now; drop those older than retain_days.
    TimescaleDB: the functions are no-ops (hypertables chunk themselves; policies do retention)."""
    created = dropped = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        for tbl in PARTITIONED_TABLES:
            row = conn.execute(
                "SELECT kd_ensure_partitions(%s, %s, %s)",
                (tbl, now_us - behind_days * DAY_US, now_us + ahead_days * DAY_US + 1),
            ).fetchone()
            created += row[0] if row else 0
            if retain_days is not None:
                row = conn.execute(
                    "SELECT kd_drop_partitions_before(%s, %s)", (tbl, now_us - retain_days * DAY_US)
                ).fetchone()
                dropped += row[0] if row else 0
    return {"created": created, "dropped": dropped}


def timescale_policy_statements(compress_after_days: int, retain_days: int | None) -> list[str]:
    """The TimescaleDB policies `db maintain` applies to each hypertable (idempotent)."""
    out = []
    for tbl in PARTITIONED_TABLES:
        out.append(
            f"SELECT add_compression_policy('{tbl}', compress_after => {compress_after_days * DAY_US}::bigint,"
            " if_not_exists => true)"
        )
        if retain_days is not None:
            out.append(
                f"SELECT add_retention_policy('{tbl}', drop_after => {retain_days * DAY_US}::bigint,"
                " if_not_exists => true)"
            )
    return out


def apply_timescale_policies(dsn: str, compress_after_days: int, retain_days: int | None) -> int:
    """Apply the policies when the extension is installed; returns the number of statements run."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT kd_has_timescale()").fetchone()
        if not (row and row[0]):
            return 0
        stmts = timescale_policy_statements(compress_after_days, retain_days)
        for s in stmts:
            conn.execute(s.encode())
        return len(stmts)
