"""Fixtures only: the servers and databases behind them are in tests/services.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import _stall
from tests.services import (
    ADMIN_DSN,
    GATHERER_BACKENDS,
    PrivatePostgres,
    PrivateRedis,
    TempDatabases,
    new_gatherer_db,
    running_postgres,
)


def pytest_configure(config: pytest.Config) -> None:
    _stall.install(float(config.getini("timeout") or 300))


@pytest.fixture(autouse=True)
def stall_dump() -> Iterator[None]:
    """Set up first, torn down last: covers the test and its other fixtures' teardown."""
    timer = _stall.arm()
    try:
        yield
    finally:
        timer.cancel()


@pytest.fixture
def databases() -> Iterator[TempDatabases]:
    dbs = TempDatabases()
    try:
        yield dbs
    finally:
        dbs.drop_all()


@pytest.fixture
def empty_db(databases: TempDatabases) -> str:
    return databases.create()


@pytest.fixture(scope="session")
def timescale_server() -> Iterator[PrivatePostgres]:
    """One TimescaleDB cluster for the session (young transaction ids). Fails, never skips, when TimescaleDB
    is not installed: `make setup` installs it (scripts/ensure-timescaledb.sh)."""
    with running_postgres(timescale=True) as server:
        yield server


@pytest.fixture(params=GATHERER_BACKENDS)
def gatherer_server(request: pytest.FixtureRequest) -> Iterator[TempDatabases]:
    """Throw-away gatherer databases on plain PostgreSQL, then on TimescaleDB (each test runs on both)."""
    admin = ADMIN_DSN if request.param == "postgres" else request.getfixturevalue("timescale_server").dsn
    dbs = TempDatabases(admin)
    try:
        yield dbs
    finally:
        dbs.drop_all()


@pytest.fixture
def gatherer_db(gatherer_server: TempDatabases) -> str:
    return new_gatherer_db(gatherer_server)


@pytest.fixture
def plain_gatherer_db(databases: TempDatabases) -> str:
    """A gatherer database on plain PostgreSQL only: for what concerns Redis or plain partitions alone."""
    return new_gatherer_db(databases)


@pytest.fixture
def production_db(databases: TempDatabases) -> str:
    from core.migrations import migrate

    dsn = databases.create("kdp")
    migrate(dsn, "production")
    return dsn


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    r = PrivateRedis(str(tmp_path))
    r.start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    with running_postgres() as pg:
        yield pg
