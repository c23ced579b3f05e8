"""The history backfill's parts against an in-process simulator with a past and a real production database: the
cutoff moving in the middle of a window's live part, an archived market's candles, a run that fails halfway and
resumes, the shared token bucket, the candle conversions, and the simulator's past itself."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from cli.query import status
from core.config import BackfillConfig, KalshiConfig, RateLimitConfig, RedisConfig, load_config
from core.conversions import ConversionError, dollars_to_candle
from devstack import db_config, simulator_process
from gatherer import KalshiRestClient, SharedTokenBucket
from history import Backfill, BackfillRequest, Progress, Store, candle_row
from simulator import (
    ExchangeOptions,
    FaultSchedule,
    RestFault,
    SimOptions,
    Simulator,
    compare_history,
    compare_with_ledger,
)
from simulator._wire_history import candle_json
from tests.services import PrivateRedis

DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    s = Simulator(SimOptions(port=0, rate=0, history_days=2, exchange=ExchangeOptions(markets=120, active=10, seed=5)))
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def _cfg(sim: Simulator, dsn: str, **kw: Any) -> BackfillConfig:
    db = db_config(dsn)
    fast = KalshiConfig(rest_url=sim.rest_url, rate_limit=RateLimitConfig(read_per_second=1000, burst=50))
    return BackfillConfig(production=db, kalshi=fast, settle_lag_s=0, **kw)


def _past(sim: Simulator) -> BackfillRequest:
    today = time.time_ns() // 1000 // DAY_US * DAY_US
    return BackfillRequest(today - 2 * DAY_US, today)


async def _run(sim: Simulator, dsn: str, client: KalshiRestClient | None = None, **kw: Any) -> dict[str, Any]:
    cfg = _cfg(sim, dsn, **kw)
    store = Store(dsn, 2)
    try:
        async with client or KalshiRestClient(cfg.kalshi) as c:
            report = await Backfill(cfg, c, store, Progress(bar=False)).run(_past(sim))
    finally:
        store.close()
    return report.as_dict()


def _exact(sim: Simulator, dsn: str) -> None:
    report = compare_with_ledger(sim.ledger, dsn, examples=3)
    for table in ("trades", "candlesticks"):
        r = report[table]
        assert r["missing"] == r["extra"] == r["differing"] == 0 and r["expected"] > 0, (table, r)
    past = compare_history(sim.history, dsn)  # type: ignore[arg-type]
    assert past["stored"] == past["past_markets"] and past["differing"] == 0, past


class _MovingClient(KalshiRestClient):
    """Moves the simulator's trades cutoff past every trade of the window while the live part is being read:
    the trades the live listing had not yet served are then only in the archive."""

    def __init__(self, cfg: KalshiConfig, sim: Simulator) -> None:
        super().__init__(cfg)
        self.sim = sim
        self.moved = 0

    async def iter_trades(self, *, limit: int = 1000, **filters: Any) -> AsyncIterator[list[dict[str, Any]]]:
        async for page in super().iter_trades(limit=2, **filters):
            yield page
            if self.moved == 0 and page:
                hi = (int(filters["max_ts"]) + 1) * 1_000_000
                self.sim.move_cutoff(trades_created_us=hi)
                self.moved += 1


async def test_the_cutoff_moving_during_a_window_skips_nothing(sim: Simulator, production_db: str) -> None:
    h = sim.history
    assert h is not None
    # the trades cutoff at the start of the past's second day: the first day's windows read the archive only
    sim.move_cutoff(trades_created_us=min(m.open_s for m in h.markets) * 1_000_000 + 30 * HOUR_US)
    client = _MovingClient(_cfg(sim, production_db).kalshi, sim)
    report = await _run(sim, production_db, client, concurrency=1)
    assert client.moved == 1 and report["windows_failed"] == 0, report
    _exact(sim, production_db)


async def test_a_wrong_guess_of_where_a_market_is_served_is_corrected(sim: Simulator, production_db: str) -> None:
    """The backfill guesses a market archived when it closed before the market cutoff; between its close and its
    settlement the guess is wrong: /historical/* answers 404, then the live endpoint serves its candles."""
    h = sim.history
    assert h is not None
    last_close = max(m.close_s for m in h.markets)
    sim.move_cutoff(market_settled_us=(last_close + 600) * 1_000_000)  # after the last day's close, before settling
    report = await _run(sim, production_db)
    assert report["windows_failed"] == 0, report
    last_day = {m.ticker for m in h.markets if m.close_s == last_close}
    assert _candle_sources(production_db) == {"live": len(last_day), "historical": len(h.markets) - len(last_day)}
    _exact(sim, production_db)


async def test_a_market_archived_while_its_batch_is_asked_for_comes_from_the_archive(
    sim: Simulator, production_db: str
) -> None:
    h = sim.history
    assert h is not None
    client = _ArchivingClient(_cfg(sim, production_db).kalshi, sim)
    report = await _run(sim, production_db, client)
    assert report["windows_failed"] == 0 and client.archived, report
    assert _candle_sources(production_db) == {"historical": len(h.markets)}
    _exact(sim, production_db)


def _candle_sources(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return dict(
            conn.execute("SELECT source, count(DISTINCT market_ticker) FROM candlesticks GROUP BY 1").fetchall()
        )


class _ArchivingClient(KalshiRestClient):
    """Archives every past market just before the first batch of live candles that names one is asked for: the
    batch's answer leaves them out."""

    def __init__(self, cfg: KalshiConfig, sim: Simulator) -> None:
        super().__init__(cfg)
        self.sim = sim
        self.archived = False

    async def batch_candlesticks(self, tickers: list[str], *args: Any, **kw: Any) -> dict[str, list[dict[str, Any]]]:
        past = self.sim.history
        if not self.archived and past is not None and any(t in past.by_ticker for t in tickers):
            self.sim.move_cutoff(market_settled_us=max(m.settled_us for m in past.markets) + 1)
            self.archived = True
        return await super().batch_candlesticks(tickers, *args, **kw)


class _FailingClient(KalshiRestClient):
    def __init__(self, cfg: KalshiConfig, fail_after: int) -> None:
        super().__init__(cfg)
        self.left = fail_after

    async def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.left -= 1
        if self.left < 0 and "trades" in path:
            from gatherer import KalshiApiError

            raise KalshiApiError(0, "retries_exhausted", "503 after 7 attempts", path)
        return await super().get(path, params)


@pytest.mark.parametrize("fail_after", [3, 40])
async def test_a_run_that_fails_halfway_resumes_and_a_second_adds_nothing(
    sim: Simulator, production_db: str, fail_after: int
) -> None:
    cfg = _cfg(sim, production_db)
    first = await _run(sim, production_db, _FailingClient(cfg.kalshi, fail_after))
    assert first["windows_failed"] > 0, first
    with psycopg.connect(production_db) as conn:
        row = conn.execute("SELECT count(*) FROM backfill_checkpoints WHERE endpoint = 'trades'").fetchone()
    done_before = row[0] if row else 0
    second = await _run(sim, production_db)
    assert second["windows_failed"] == 0 and second["windows_skipped"] >= done_before, second
    _exact(sim, production_db)
    third = await _run(sim, production_db)
    assert third["windows_done"] == 0 and third["trades"] == third["candles"] == 0, third
    assert third["requests"] == 1, third  # the cutoff


async def test_two_processes_share_one_bucket(private_redis: PrivateRedis) -> None:
    shared = RedisConfig(url=private_redis.url, key_prefix=f"kdt{time.time_ns()}")
    k = KalshiConfig(api_key_id="key-1", rate_limit=RateLimitConfig(read_per_second=1, burst=3, shared=shared))
    a, b = SharedTokenBucket(k), SharedTokenBucket(k)
    try:
        for bucket in (a, b, a):  # the burst, taken by two processes
            await asyncio.wait_for(bucket.acquire(), 1)
        assert a.waited_s == b.waited_s == 0
        waited = asyncio.create_task(b.acquire())  # the fourth waits for the bucket, whoever asks
        await asyncio.sleep(0.05)
        assert not waited.done()
        waited.cancel()
        other = SharedTokenBucket(k.model_copy(update={"api_key_id": "key-2"}))  # another key: its own budget
        await asyncio.wait_for(other.acquire(), 1)
        assert other.waited_s == 0
        await other.aclose()
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_shared_bucket_falls_back_to_its_share_when_redis_is_down() -> None:
    down = RedisConfig(url="redis://127.0.0.1:1/0")
    k = KalshiConfig(rate_limit=RateLimitConfig(read_per_second=30, burst=1, shared=down, shared_fallback_share=0.1))
    bucket = SharedTokenBucket(k)
    try:
        await asyncio.wait_for(bucket.acquire(), 5)  # answered by its own bucket
        assert bucket._fallback.rate == pytest.approx(3.0)
    finally:
        await bucket.aclose()


def test_candles_of_both_shapes_are_the_same_row() -> None:
    row = ("KXA-P261201-T40", 1, 1_796_000_040_000_000, 280_000, 290_000, 270_000, 285_000, 300_000, 310_000,
           290_000, 305_000, 290_000, 300_000, 280_000, 295_000, 291_234, None, 2_400, 9_900)  # fmt: skip
    live = candle_row(candle_json(row, historical=False), row[0], 1, "live", 7)
    archived = candle_row(candle_json(row, historical=True), row[0], 1, "historical", 7)
    assert live[:-2] == archived[:-2] == row
    assert dollars_to_candle("0.523456") == 523_456
    assert dollars_to_candle(None) is None
    with pytest.raises(ConversionError):
        dollars_to_candle("0.5234561")
    with pytest.raises(ConversionError):
        dollars_to_candle("1.000001")


async def test_the_simulator_s_past_splits_at_the_cutoff_and_its_candles_sum_its_trades(sim: Simulator) -> None:
    h = sim.history
    assert h is not None
    async with KalshiRestClient(KalshiConfig(rest_url=sim.rest_url)) as c:
        for moved in (False, True):
            if moved:
                sim.move_cutoff(trades_created_us=h.cutoff.trades_created_us + 7 * HOUR_US + 12_345)
            cut = h.cutoff.trades_created_us
            live = [t async for page in c.iter_trades(limit=7, max_ts=2**40) for t in page]
            old = [t async for page in c.iter_historical_trades(limit=7) for t in page]
            past_ids = {r[0] for rows in h.trades.values() for r in rows}
            live_past = [t for t in live if t["trade_id"] in past_ids]
            assert {t["trade_id"] for t in old} | {t["trade_id"] for t in live_past} == past_ids
            assert not {t["trade_id"] for t in old} & {t["trade_id"] for t in live_past}
            by_id = {r[0]: r for rows in h.trades.values() for r in rows}
            assert all(by_id[t["trade_id"]][2] < cut for t in old)
            assert all(by_id[t["trade_id"]][2] >= cut for t in live_past)
    for ticker, trades in h.trades.items():
        candles = h.candles[ticker]
        assert sum(c[-2] for c in candles) == sum(t[5] for t in trades)
        assert len(candles) == len({t[2] // 60_000_000 for t in trades})


@pytest.fixture
def sim_process(tmp_path: Path) -> Iterator[str]:
    """`kalshi-data sim` with a day of past, in a process of its own (the RQ job runs its own event loop)."""
    proc, base = simulator_process(
        tmp_path / "sim.log", "--rate", "1", "--start-delay", "86400", "--markets", "200", "--active", "5",
        "--history-days", "1", timeout_s=60,
    )  # fmt: skip
    try:
        yield f"{base}/trade-api/v2"
    finally:
        proc.terminate()
        proc.wait(30)


def test_the_backfill_as_a_job_of_the_dedup_workers(
    sim_process: str, production_db: str, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    from rq import Queue, SimpleWorker
    from rq.job import Job

    cfg = BackfillConfig(
        production=db_config(production_db), kalshi=KalshiConfig(rest_url=sim_process),
        redis=RedisConfig(url=private_redis.url), settle_lag_s=0,
    )  # fmt: skip
    path = tmp_path / "backfill.yaml"
    path.write_text(cfg.model_dump_json())
    day = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    cli = [sys.executable, "-m", "cli.main", "backfill", "--config", str(path), "--since", day, "--until", day]
    out = subprocess.run([*cli, "--enqueue"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "enqueued backfill job" in out.stdout, out.stderr
    conn = redis.Redis.from_url(private_redis.url)
    queue = Queue("dedup", connection=conn)
    (job,) = queue.jobs
    SimpleWorker([queue], connection=conn).work(burst=True)
    result = Job.fetch(job.id, connection=conn).return_value()
    assert result is not None and result["windows_failed"] == 0 and result["trades"] > 0, result
    with psycopg.connect(production_db) as db:
        row = db.execute("SELECT count(*), min(source), max(source) FROM trades").fetchone()
    assert row == (result["trades"], "history", "history")
    # the same days from the command line: nothing new, the report on stdout
    again = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and json.loads(again.stdout)["trades"] == 0, again.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--since", "2026-13-01"], "expected a day as YYYY-MM-DD"),
        (["--since", "2026-12-02", "--until", "2026-12-01"], "is before --since"),
    ],
)
def test_a_bad_day_is_one_line(tmp_path: Path, args: list[str], says: str) -> None:
    path = tmp_path / "backfill.yaml"
    path.write_text("production: {dbname: nowhere}\n")
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "backfill", "--config", str(path), *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode != 0 and says in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) <= 3  # argparse's usage line, then the error


async def test_a_run_up_to_now_lists_markets_again_and_adds_nothing_twice(sim: Simulator, production_db: str) -> None:
    """Markets are listed every day, so a listing up to now is not final: the next run lists again (a handful of
    requests) and fetches no window twice."""
    cfg = _cfg(sim, production_db)
    store = Store(production_db, 2)
    req = BackfillRequest(_past(sim).since_us, 2**62)
    try:
        async with KalshiRestClient(cfg.kalshi) as c:
            first = (await Backfill(cfg, c, store, Progress(bar=False)).run(req)).as_dict()
        async with KalshiRestClient(cfg.kalshi) as c:
            second = (await Backfill(cfg, c, store, Progress(bar=False)).run(req)).as_dict()
    finally:
        store.close()
    assert first["trades"] > 0 and first["windows_failed"] == 0, first
    assert second["trades"] == second["candles"] == second["trades_inserted"] == 0, second
    assert 1 < second["requests"] < first["requests"] / 10, second
    with psycopg.connect(production_db) as conn:
        assert status(conn, time.time_ns() // 1000)["history"]["trades"] == first["trades"]


async def test_429s_and_server_errors_are_waited_out(production_db: str) -> None:
    faults = FaultSchedule(
        rest=[
            RestFault(kind="429", path="/historical/trades", after_requests=2, count=3),
            RestFault(kind="503", path="/markets/candlesticks", after_requests=1, count=2),
            RestFault(kind="500", path="/historical/markets", after_requests=1, count=1),
        ]
    )
    s = Simulator(
        SimOptions(
            port=0, rate=0, history_days=2, faults=faults, exchange=ExchangeOptions(markets=120, active=10, seed=5)
        )
    )
    await s.start()
    try:
        cfg = _cfg(s, production_db)
        async with KalshiRestClient(cfg.kalshi, backoff_base_s=0.05, backoff_max_s=0.2) as client:
            report = await _run(s, production_db, client)
            throttled, server_errors = client.stats.throttled, client.stats.server_errors
        assert report["windows_failed"] == 0, report
        assert (throttled, server_errors) == (3, 3)
        _exact(s, production_db)
    finally:
        await s.stop()


def test_progress_without_a_terminal_is_a_log_line_now_and_then(caplog: pytest.LogCaptureFixture) -> None:
    from history import BackfillReport

    p = Progress(bar=False, every_s=3600)
    caplog.set_level("INFO", logger="history.progress")
    p.start(3)
    report = BackfillReport(trades=1_000, candles=20)
    for _ in range(3):
        p.step(report)
    p.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "3/3 windows" in lines[0] and "1,000 trades" in lines[0] and "ETA" in lines[0], lines


async def test_named_series_only_each_market_a_day_at_a_time(sim: Simulator, production_db: str) -> None:
    h = sim.history
    assert h is not None
    chosen = sim.exchange.universe.series_ticker(h.markets[0].series)
    mine = {m.ticker for m in h.markets if sim.exchange.universe.series_ticker(m.series) == chosen}
    cfg = _cfg(sim, production_db)
    store = Store(production_db, 2)
    try:
        async with KalshiRestClient(cfg.kalshi) as c:
            report = await Backfill(cfg, c, store, Progress(bar=False)).run(
                BackfillRequest(_past(sim).since_us, _past(sim).until_us, (chosen,))
            )
    finally:
        store.close()
    assert report.windows_failed == 0 and report.trades == sum(len(h.trades[t]) for t in mine) > 0
    with psycopg.connect(production_db) as conn:
        tickers = {r[0] for r in conn.execute("SELECT DISTINCT market_ticker FROM trades")}
        subjects = {
            r[0] for r in conn.execute("SELECT DISTINCT subject FROM backfill_checkpoints WHERE endpoint = 'trades'")
        }
        stored = conn.execute(
            "SELECT count(*) FROM candlesticks WHERE market_ticker = ANY(%s)", (list(mine),)
        ).fetchone()
    assert tickers == mine  # that series' trades, and nothing else
    assert "*" not in subjects and mine <= subjects  # a market at a time
    assert stored is not None and stored[0] == sum(len(h.candles[t]) for t in mine)


def test_the_local_stack_s_backfill_config_names_this_run_s_simulator(tmp_path: Path, production_db: str) -> None:
    """`make demo` twice: the second run's backfill must not read the first's config (another port)."""
    from devstack import BackfillProcess

    BackfillProcess(tmp_path, production_db, "http://127.0.0.1:1111/trade-api/v2", "redis://127.0.0.1:6379/2", 3)
    BackfillProcess(tmp_path, production_db, "http://127.0.0.1:2222/trade-api/v2", "redis://127.0.0.1:6379/2", 3)
    cfg = load_config(tmp_path / "backfill.yaml", BackfillConfig)
    assert cfg.kalshi.rest_url == "http://127.0.0.1:2222/trade-api/v2"
