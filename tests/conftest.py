"""Shared fixtures: throw-away databases on the local PostgreSQL, a clean Redis keyspace."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cli._support import free_port

# The admin connection tests use to create and drop their own databases.
ADMIN_DSN = os.environ.get("KD_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
REDIS_URL = os.environ.get("KD_TEST_REDIS", "redis://127.0.0.1:6379/15")


def _dsn_for(dbname: str) -> str:
    parts = conninfo_to_dict(ADMIN_DSN)
    parts["dbname"] = dbname
    return make_conninfo("", **parts)


class TempDatabases:
    def __init__(self) -> None:
        self.names: list[str] = []

    def create(self, prefix: str = "kdtest") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        return _dsn_for(name)

    def drop_all(self) -> None:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            for name in self.names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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


@pytest.fixture
def gatherer_db(databases: TempDatabases) -> str:
    from core.migrations import migrate

    dsn = databases.create("kdg")
    migrate(dsn, "gatherer")
    return dsn


@pytest.fixture
def production_db(databases: TempDatabases) -> str:
    from core.migrations import migrate

    dsn = databases.create("kdp")
    migrate(dsn, "production")
    return dsn


class PrivateRedis:
    """A redis-server of our own on a free port (AOF on), which a test may stop and start again."""

    def __init__(self, directory: str) -> None:
        self.port = free_port()
        self.dir = directory
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import time

        import redis

        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port)
        for _ in range(200):
            try:
                client.ping()
                client.close()
                return
            except redis.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    r = PrivateRedis(str(tmp_path))
    r.start()
    try:
        yield r
    finally:
        r.stop()


class PrivatePostgres:
    """A PostgreSQL server of our own (initdb in a temp dir, run as the postgres user), stoppable."""

    BIN = "/usr/lib/postgresql/15/bin"

    def __init__(self, directory: Path) -> None:
        import shutil

        self.port = free_port()
        self.dir = directory
        self.data = directory / "data"
        directory.mkdir(parents=True, exist_ok=True)
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(directory, "postgres", "postgres")
        self._run([f"{self.BIN}/initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"])

    def _run(self, cmd: list[str]) -> None:
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True)

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def start(self) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off"
        self._run([f"{self.BIN}/pg_ctl", "-D", str(self.data), "-o", opts, "-w", "-l", str(self.dir / "log"), "start"])

    def stop(self) -> None:
        self._run([f"{self.BIN}/pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"])


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    import shutil
    import tempfile

    # pytest's tmp_path is private to root; the postgres user needs a folder it can reach
    base = Path(tempfile.mkdtemp(prefix="kd-pg-"))
    base.chmod(0o755)
    pg = PrivatePostgres(base / "pg")
    pg.start()
    try:
        yield pg
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            pg.stop()
        shutil.rmtree(base, ignore_errors=True)
