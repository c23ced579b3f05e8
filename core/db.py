"""Database connections: DSNs from config, one pool per database (psycopg 3 + psycopg_pool)."""

from __future__ import annotations

from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from core.config import DatabaseConfig


def dsn_from_config(db: DatabaseConfig, application_name: str = "kalshi-data") -> str:
    """A libpq connection string. The password comes from the config (itself from the environment)."""
    kwargs: dict[str, str | int] = {
        "host": db.host,
        "port": db.port,
        "dbname": db.dbname,
        "user": db.user,
        "sslmode": db.sslmode,
        "connect_timeout": db.connect_timeout_s,
        "application_name": application_name,
    }
    if db.password is not None:
        kwargs["password"] = db.password.get_secret_value()
    if db.sslrootcert:
        kwargs["sslrootcert"] = db.sslrootcert
    return make_conninfo("", **kwargs)


def redact_dsn(dsn: str) -> str:
    """The DSN with any password removed, for logs and error messages."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:
        return "<unparseable dsn>"
    if "password" in parts:
        parts["password"] = "********"
    return make_conninfo("", **parts)


def open_pool(db: DatabaseConfig, name: str = "kalshi-data") -> ConnectionPool:
    return ConnectionPool(dsn_from_config(db, name), min_size=db.pool_min, max_size=db.pool_max, open=True, name=name)


async def open_async_pool(db: DatabaseConfig, name: str = "kalshi-data") -> AsyncConnectionPool:
    pool = AsyncConnectionPool(
        dsn_from_config(db, name), min_size=db.pool_min, max_size=db.pool_max, open=False, name=name
    )
    await pool.open()
    return pool
