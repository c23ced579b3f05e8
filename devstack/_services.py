"""The local stack's services: throw-away databases (migrated, partitions made), free ports, DSN to config, and
killing a process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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
    return DatabaseConfig(
        host=str(d.get("host", "127.0.0.1")),
        port=int(str(d.get("port", 5432))),
        dbname=str(d["dbname"]),
        user=str(d.get("user", "postgres")),
        pool_max=4,
    )


def fresh_database(admin: str, dbname: str, role: str) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{dbname}"')
    dsn = _dsn(admin, dbname)
    migrate(dsn, role)  # type: ignore[arg-type]
    maintain_partitions(dsn, time.time_ns() // 1000, ahead_days=2, retain_days=None)
    return dsn


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """kill -9 a process started in a session of its own, with every process of its group, and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def simulator_process(log: Path, *options: str, timeout_s: float = 120) -> tuple[subprocess.Popen[bytes], str]:
    """`kalshi-data sim OPTIONS` in a process of its own on a free port, its output to `log`, once it serves:
    the process and its base URL (http://127.0.0.1:PORT; REST under /trade-api/v2)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "sim", "--port", str(port), *options],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + timeout_s
    while "simulator:" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait(10)
            raise RuntimeError(f"the simulator did not start: {log.read_text()[-500:]}")
        time.sleep(0.1)
    return proc, f"http://127.0.0.1:{port}"
