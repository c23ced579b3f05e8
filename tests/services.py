"""Servers and databases the tests run against: throw-away databases on the machine's PostgreSQL or a private
TimescaleDB cluster, private Redis and PostgreSQL servers a test may stop and start. Fixtures are in conftest."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from devstack import free_port

# Under pytest-xdist (`make test` runs two workers) each worker has its own servers: see the end of this file.
XDIST_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
# The machine's Redis, a database per worker: tests that flush it must not flush another worker's.
REDIS_URL = os.environ.get("KD_TEST_REDIS", f"redis://127.0.0.1:6379/{15 - XDIST_WORKER}")


class TempDatabases:
    """Throw-away databases on one server (the machine's PostgreSQL unless another admin DSN is given)."""

    def __init__(self, admin_dsn: str | None = None) -> None:
        self.admin = admin_dsn or ADMIN_DSN
        self.names: list[str] = []

    def dsn(self, name: str) -> str:
        parts = conninfo_to_dict(self.admin)
        parts["dbname"] = name
        return make_conninfo("", **parts)

    def create(self, prefix: str = "kdtest") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        return self.dsn(name)

    def drop_all(self) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            for name in self.names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# Gatherer databases run TimescaleDB in production: gatherer-side tests run on both servers.
GATHERER_BACKENDS = ("postgres", "timescaledb")


def new_gatherer_db(server: TempDatabases, prefix: str = "kdg") -> str:
    """A migrated gatherer database; on a TimescaleDB server its event tables are hypertables."""
    from core.migrations import migrate

    dsn = server.create(prefix)
    timescale = server.admin != ADMIN_DSN
    migrate(dsn, "gatherer", "require" if timescale else "off")
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    assert row is not None and row[0] == (1 if timescale else 0)
    return dsn


class PrivateRedis:
    """A redis-server of our own on a free port (AOF on), which a test may stop and start again."""

    def __init__(self, directory: str, password: str | None = None) -> None:
        self.port = free_port()
        self.dir = directory
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Without the password (it travels separately, as in deployed configs)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import time

        import redis

        conf = Path(self.dir) / f"redis-{self.port}.conf"
        # the password goes in a config file: on the command line every process could read it
        conf.write_text(f"requirepass {self.password}\n" if self.password else "")
        conf.chmod(0o600)
        self.proc = subprocess.Popen(
            [
                "redis-server",
                str(conf),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                self.dir,
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, password=self.password)
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


class PrivatePostgres:
    """A PostgreSQL server of our own (initdb in a temp dir, run as the postgres user), stoppable; with
    timescale=True it preloads TimescaleDB."""

    BIN = "/usr/lib/postgresql/15/bin"

    def __init__(self, directory: Path, timescale: bool = False) -> None:
        self.port = free_port()
        self.dir = directory
        self.data = directory / "data"
        self.timescale = timescale
        directory.mkdir(parents=True, exist_ok=True)
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(directory, "postgres", "postgres")
        self._run([f"{self.BIN}/initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"])

    def _run(self, cmd: list[str]) -> None:
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True)
        if proc.returncode:
            log = self.dir / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr + tail.encode())

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def start(self) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off"
        if self.timescale:
            opts += " -c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off"
        self._run([f"{self.BIN}/pg_ctl", "-D", str(self.data), "-o", opts, "-w", "-l", str(self.dir / "log"), "start"])

    def stop(self) -> None:
        self._run([f"{self.BIN}/pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"])


@contextlib.contextmanager
def running_postgres(timescale: bool = False) -> Iterator[PrivatePostgres]:
    """A private server for the block, removed with its data after."""
    # pytest's tmp_path is private to root; the postgres user needs a folder it can reach
    base = Path(tempfile.mkdtemp(prefix="kd-pg-"))
    base.chmod(0o755)
    pg = PrivatePostgres(base / "pg", timescale=timescale)
    pg.start()
    try:
        yield pg
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            pg.stop()
        shutil.rmtree(base, ignore_errors=True)


def _admin_dsn() -> str:
    """The admin connection tests use to create and drop their own databases: the machine's PostgreSQL, or for
    every pytest-xdist worker after the first a private server for the session. The sync reads only rows older
    than every transaction still running on the cluster (dedup's snapshot guard), so another worker's writes on a
    shared cluster would hold this worker's syncs back, and a test that syncs once would miss its own rows."""
    if "KD_TEST_PG" in os.environ:
        return os.environ["KD_TEST_PG"]
    if XDIST_WORKER == 0:
        return "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    import atexit

    server = running_postgres()
    pg = server.__enter__()
    atexit.register(server.__exit__, None, None, None)
    return pg.dsn


ADMIN_DSN = _admin_dsn()
