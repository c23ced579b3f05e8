"""The command line as a newcomer meets it: times typed every way, every error one line that says what to do
(no traceback unless --debug), output to a closed pipe ending quietly, status readable and as JSON on a
production database with sums (it crashed on a Decimal), a book asked for past what production holds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from core.conversions import ConversionError, user_time_to_us
from core.migrations import migrate
from devstack import fill_production_day
from tests.dedupkit import DAY0
from tests.services import TempDatabases

REPO = Path(__file__).resolve().parents[1]


def kd(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, cwd=REPO, timeout=120, input=stdin
    )


def test_times_typed_every_way() -> None:
    at = 1_796_569_540_000_000  # 2026-12-06T15:05:40Z
    for text in ("1796569540", "1796569540000", "1796569540000000", "2026-12-06T15:05:40Z", "2026-12-06 15:05:40",
                 "2026-12-06T16:05:40+01:00"):  # fmt: skip
        assert user_time_to_us(text) == at, text
    assert user_time_to_us("2026-12-06") == 1_796_515_200_000_000  # a date: its midnight, UTC
    assert user_time_to_us("now", now_us=5) == 5
    for bad in ("17965695400", "179656954", "yesterday", "2026-13-40", "-5"):
        with pytest.raises(ConversionError):
            user_time_to_us(bad)


@pytest.fixture(scope="module")
def prod() -> object:
    dbs = TempDatabases()
    dsn = dbs.create("kdcli")
    migrate(dsn, "production")
    fill_production_day(dsn, DAY0, events=3_000)
    with psycopg.connect(dsn) as conn:  # a trade gap healed from REST: its sums are Decimals
        conn.execute(
            "INSERT INTO coverage_gaps (market_ticker, channel, from_us, to_us, sources, trades_backfilled, "
            "trades_healed_us) VALUES ('', 'trade', %s, %s, %s, 7, %s)",
            (DAY0, DAY0 + 10, ["g1"], DAY0 + 20),
        )
    yield dsn
    dbs.drop_all()


def test_status_readable_and_as_json(prod: str) -> None:
    out = kd("status", "--dsn", prod)
    assert out.returncode == 0, out.stderr
    for topic in ("rows", "sync", "coverage", "audit", "latency", "lake"):
        assert any(line.startswith(topic) for line in out.stdout.splitlines()), (topic, out.stdout)
    assert "trade gaps 0 open, 1 healed from REST" in out.stdout
    out = kd("status", "--json", "--dsn", prod)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["rows"]["orderbook_deltas"] > 0 and doc["coverage"]["trade_gaps_healed"] == 1
    assert set(doc["receive_delay_ms_last_hour"]) == {"orderbook_deltas", "trades", "tickers"}


def test_a_book_past_what_production_holds_says_so(prod: str) -> None:
    with psycopg.connect(prod) as conn:
        (market,) = conn.execute("SELECT market_ticker FROM orderbook_deltas LIMIT 1").fetchone()  # type: ignore[misc]
    out = kd("book", market, "--at", "2026-01-01", "--dsn", prod)
    assert out.returncode == 0, out.stderr
    assert "note: the newest data held of this market is 2025-11-25" in out.stdout


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["book", "X", "--at", "2026-13-40", "--dsn", "host=127.0.0.1 dbname=nope"], 2, "give an ISO date or time"),
        (["book", "X", "--at", "17965695400", "--dsn", "x"], 2, "milliseconds (13) or microseconds (16)"),
        (
            ["trades", "X", "--dsn", "host=127.0.0.1 port=1 user=postgres dbname=nope"],
            1,
            "cannot use the database",
        ),
        (["lake", "sql", "SELEC 1", "--lake", "."], 2, "lake sql: Parser Error"),
        (["lake", "sql", "SELECT 1", "--lake", "/no/such/lake"], 2, "no lake at /no/such/lake"),
        (["status"], 2, "give --config deduplicator.yaml or --dsn"),
    ],
)
def test_every_error_is_one_line_that_says_what_to_do(args: list[str], code: int, says: str) -> None:
    out = kd(*args)
    assert out.returncode == code, (out.returncode, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in out.stderr, out.stderr
    debug = kd("--debug", *args)
    assert "Traceback" in debug.stderr or (code == 2 and "config" in debug.stderr)  # --debug shows where


def test_output_to_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    (tmp_path / "lake").mkdir()
    cmd = (
        f"{sys.executable} -m cli.main lake sql 'SELECT range FROM range(200000)' --lake {tmp_path / 'lake'} | head -2"
    )
    out = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.stdout.splitlines() == ["range", "0"]
    assert out.returncode == 0 and out.stderr == "", out.stderr


def test_lake_sql_prints_csv_and_json(tmp_path: Path) -> None:
    (tmp_path / "lake").mkdir()
    q = "SELECT 0.52::DECIMAL(6,5) AS yes_price, TIMESTAMPTZ '2026-12-06 17:00:00+00' AS at"
    out = kd("lake", "sql", q, "--lake", str(tmp_path / "lake"), "--format", "csv")
    assert out.stdout.splitlines() == ["yes_price,at", "0.52000,2026-12-06T17:00:00+00:00"], out.stderr
    out = kd("lake", "sql", q, "--lake", str(tmp_path / "lake"), "--format", "json")
    assert json.loads(out.stdout) == {"yes_price": "0.52000", "at": "2026-12-06T17:00:00+00:00"}
