"""What README and docs/operations.md tell a newcomer to run, run: a demo (the main command, smaller), then
every `$` command of their code blocks and every SQL block of README, as written, in the folder the demo ran in.
Each must exit 0 and print something. Only the names the demo was given here differ from README's (its
database prefix and Redis: a test must not take the machine's demo databases or Redis database 2)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from dedup import lake_sql
from tests.services import ADMIN_DSN, PrivateRedis

REPO = Path(__file__).resolve().parents[1]
DOCS = (REPO / "README.md", REPO / "docs" / "operations.md")


def commands(path: Path) -> list[str]:
    """The `$ ` lines of a file's code blocks (a command may run on over lines until its quotes close)."""
    out: list[str] = []
    for block in path.read_text().split("```")[1::2]:
        if block.startswith("sql"):
            continue
        lines = block.splitlines()
        k = 0
        while k < len(lines):
            line = lines[k]
            k += 1
            if not line.startswith("$ "):
                continue
            cmd = line[2:]
            while cmd.count('"') % 2 and k < len(lines):
                cmd += " " + lines[k].strip()
                k += 1
            out.append(cmd)
    return out


def sql_blocks(path: Path, language: str = "sql") -> list[str]:
    head = f"{language}\n"
    return [b[len(head) :] for b in path.read_text().split("```")[1::2] if b.startswith(head)]


def test_readme_and_docs_show_commands_and_queries() -> None:
    assert len(commands(DOCS[0])) >= 12 and len(sql_blocks(DOCS[0])) >= 4 and sql_blocks(DOCS[0], "python")
    assert len(commands(DOCS[1])) >= 8


@pytest.mark.slow
def test_every_command_readme_and_docs_show_runs_after_the_demo(private_redis: PrivateRedis, tmp_path: Path) -> None:
    prefix = f"kd_readme_{uuid.uuid4().hex[:6]}"
    redis_db = f"redis://127.0.0.1:{private_redis.port}/0"
    demo = subprocess.run(
        [sys.executable, "-m", "cli.main", "demo", "--duration", "8", "--markets", "600", "--active", "250",
         "--rate", "500", "--gatherers", "2", "--db-prefix", prefix, "--redis", redis_db, "--pg", ADMIN_DSN],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    try:
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        assert "completeness: EXACT" in demo.stdout
        # the docs' DSNs name no port: libpq's PGPORT points them at this run's server (a private one under xdist)
        env = {**os.environ, "PGPORT": str(conninfo_to_dict(ADMIN_DSN).get("port") or 5432)}
        ran = 0
        for doc in DOCS:
            for cmd in commands(doc):
                line = (
                    cmd.replace(".venv/bin/kalshi-data", f"{sys.executable} -m cli.main")
                    .replace("kalshi_demo_", f"{prefix}_")
                    .replace("redis://127.0.0.1:6379/2", redis_db)
                    .replace("redis-cli -n 2", f"redis-cli -p {private_redis.port} -n 0")
                )
                out = subprocess.run(
                    ["bash", "-c", line], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env
                )
                assert out.returncode == 0, (doc.name, cmd, out.stdout[-2000:], out.stderr[-2000:])
                assert out.stdout.strip(), (doc.name, cmd, "printed nothing", out.stderr[-2000:])
                assert "Traceback" not in out.stderr, (cmd, out.stderr)
                ran += 1
        for query in sql_blocks(DOCS[0]):
            names, rows = lake_sql(tmp_path / "lake", query)
            assert names and rows, query
        for code in sql_blocks(DOCS[0], "python"):
            run = [sys.executable, "-c", code]
            out = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
            assert out.returncode == 0 and out.stdout.strip(), (code, out.stdout[-2000:], out.stderr[-2000:])
        assert ran >= 20
        assert re.search(r"book KXHIGHLAX-26MAR01-T40", " ".join(shlex.quote(c) for c in commands(DOCS[0])))
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            for name in ("prod", "g1", "g2"):
                conn.execute(f'DROP DATABASE IF EXISTS "{prefix}_{name}" WITH (FORCE)')


def test_readmes_table_of_datasets_names_every_lake_table_with_its_partition_and_order() -> None:
    from core.tables import LAKE_TABLES
    from dedup import sort_order

    rows = {}
    for line in DOCS[0].read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 4:
            rows[cells[0].strip("`")] = cells
    assert set(rows) == set(LAKE_TABLES)
    for table, (_, _, partition, order) in rows.items():
        spec = LAKE_TABLES[table]
        if spec.time_column is not None:
            assert partition == f"`{spec.time_column}`", table
        assert re.findall(r"`(\w+)`", order) == sort_order(spec), table
