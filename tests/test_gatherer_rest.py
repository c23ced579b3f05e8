"""Gatherer I against the simulator: signing, retries, rate limits, registry sync and reconciliation,
snapshot poller."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from core.config import KalshiConfig, PollerConfig, RateLimitConfig, RegistryConfig
from core.records import Event, Market, OrderbookSnapshot, Series
from gatherer import KalshiApiError, KalshiRestClient, KeyFileError, MarketRegistry, SnapshotPoller, signer_from_config
from gatherer._models import market_record
from router import MemorySink
from simulator import FaultSchedule, RestFault, Simulator
from simulator._universe import FINALIZED, STATUS_FILTERS
from tests.simkit import running_sim


def client_for(sim: Simulator, rate: float = 1000, burst: int = 100, **kw: object) -> KalshiRestClient:
    cfg = KalshiConfig(
        rest_url=sim.rest_url, ws_url=sim.ws_url, rate_limit=RateLimitConfig(read_per_second=rate, burst=burst), **kw
    )
    return KalshiRestClient(cfg, backoff_base_s=0.01, backoff_max_s=0.05)


def write_key(path: Path, mode: int = 0o600, kind: str = "rsa", fmt: str = "pkcs8") -> Any:
    key: Any = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa"
        else ed25519.Ed25519PrivateKey.generate()
    )  # fmt: skip
    form = serialization.PrivateFormat.TraditionalOpenSSL if fmt == "pkcs1" else serialization.PrivateFormat.PKCS8
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption()))
    os.chmod(path, mode)
    return key


def write_public(key: Any, path: Path) -> None:
    path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


@pytest.mark.parametrize(("kind", "fmt"), [("rsa", "pkcs8"), ("rsa", "pkcs1"), ("ed25519", "pkcs8")])
async def test_signed_requests_accepted_and_wrong_key_rejected(tmp_path: Path, kind: str, fmt: str) -> None:
    """A key made at Kalshi today (Ed25519) or before (RSA, PKCS#1 or PKCS#8): the file's key type decides the
    signature. Another key of the same type, or a key of the other type under the registered id, is refused."""
    good = write_key(tmp_path / "good.pem", kind=kind, fmt=fmt)
    write_key(tmp_path / "other.pem", kind=kind)
    write_key(tmp_path / "cross.pem", kind="ed25519" if kind == "rsa" else "rsa")
    write_public(good, tmp_path / "good.pub")
    async with running_sim(markets=30, active=2, public_keys=[f"k1={tmp_path / 'good.pub'}"]) as sim:
        c = client_for(sim)
        c.signer = signer_from_config("k1", str(tmp_path / "good.pem"))
        assert c.signer is not None and c.signer.key_type.startswith(kind)
        assert (await c.get("/portfolio/balance"))["balance"] == 0
        for wrong in ("other.pem", "cross.pem"):
            c.signer = signer_from_config("k1", str(tmp_path / wrong))
            with pytest.raises(KalshiApiError) as err:
                await c.get("/portfolio/balance")
            assert err.value.status == 401 and err.value.code == "invalid_signature", wrong
        c.signer = None
        assert (await c.exchange_status())["exchange_active"] is True  # market data is public
        with pytest.raises(KalshiApiError) as err:
            await c.get("/portfolio/balance")
        assert err.value.status == 401
        await c.aclose()


def test_key_file_permissions_checked_and_key_never_shown(tmp_path: Path) -> None:
    write_key(tmp_path / "open.pem", 0o644)
    with pytest.raises(KeyFileError, match=r"accessible by group or others \(mode 644\); run: chmod 600"):
        signer_from_config("k1", str(tmp_path / "open.pem"))
    with pytest.raises(KeyFileError, match="No such file"):
        signer_from_config("k1", str(tmp_path / "missing.pem"))
    with pytest.raises(KeyFileError, match="must be set together"):
        signer_from_config("k1", None)
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ec.pem").write_bytes(ec_key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
    os.chmod(tmp_path / "ec.pem", 0o600)
    with pytest.raises(
        KeyFileError, match="holds an elliptic-curve \\(ECDSA\\) key; Kalshi takes an RSA or an Ed25519 private key"
    ):
        signer_from_config("k1", str(tmp_path / "ec.pem"))
    (tmp_path / "junk.pem").write_text("not a key")
    os.chmod(tmp_path / "junk.pem", 0o600)
    with pytest.raises(KeyFileError, match="not an unencrypted PEM"):
        signer_from_config("k1", str(tmp_path / "junk.pem"))
    write_key(tmp_path / "ok.pem")
    s = signer_from_config("k1", str(tmp_path / "ok.pem"))
    assert repr(s) == "Signer(key_id='k1', type='rsa-2048')"
    pem = (tmp_path / "ok.pem").read_text()
    assert pem.splitlines()[1] not in repr(vars(s))


async def test_retries_through_429_and_5xx_bursts() -> None:
    faults = FaultSchedule(
        rest=[
            RestFault(kind="429", path="/markets", after_requests=1, count=3),
            RestFault(kind="503", path="/events", after_requests=1, count=2),
            RestFault(kind="500", path="/series", after_requests=1, count=1),
        ]
    )
    async with running_sim(markets=120, active=2, faults=faults) as sim:
        c = client_for(sim)
        pages = [p async for p in c.iter_markets(limit=50)]
        assert sum(len(p) for p in pages) == 120
        events = [e for p in [p async for p in c.iter_events(limit=200)] for e in p]
        assert len(events) == 30
        assert len(await c.series_list()) == 2
        assert c.stats.retries == 6 and c.stats.throttled == 3 and c.stats.server_errors == 3
        await c.aclose()


async def test_no_retry_on_other_4xx_and_retries_exhausted() -> None:
    faults = FaultSchedule(rest=[RestFault(kind="500", path="/exchange", count=100)])
    async with running_sim(markets=30, active=2, faults=faults) as sim:
        c = client_for(sim)
        with pytest.raises(KalshiApiError) as err:
            await c.market("NOPE-1")
        assert err.value.status == 404 and c.stats.retries == 0
        with pytest.raises(KalshiApiError) as err:
            await c.exchange_status()
        assert err.value.code == "retries_exhausted" and c.stats.retries == c.cfg.max_retries
        await c.aclose()


async def test_expired_cursor_restarts_listing() -> None:
    faults = FaultSchedule(rest=[RestFault(kind="expire_cursor", path="/markets", after_requests=2)])
    async with running_sim(markets=250, active=2, faults=faults) as sim:
        c = client_for(sim)
        tickers = [m["ticker"] for p in [p async for p in c.iter_markets(limit=100)] for m in p]
        assert set(tickers) == {sim.exchange.universe.market_ticker(i) for i in range(250)}
        await c.aclose()


async def test_shared_limiter_causes_no_429_in_steady_state() -> None:
    import asyncio

    async with running_sim(markets=30, active=2, rest_rate_limit=20, rest_burst=5) as sim:
        c = client_for(sim, rate=18, burst=4)  # configured just under the account's tier
        await asyncio.gather(*(c.exchange_status() for _ in range(50)))
        assert c.stats.throttled == 0 and c.stats.requests == 50
        await c.aclose()


@pytest.mark.slow
async def test_full_sync_of_100k_markets() -> None:
    async with running_sim(markets=100_000, active=10) as sim:
        c = client_for(sim)
        sink = MemorySink()
        lines: list[str] = []
        reg = MarketRegistry(c, sink, "g1", RegistryConfig(progress_every_pages=20), progress=lines.append)
        change = await reg.sync()
        u = sim.exchange.universe
        capture = STATUS_FILTERS["open"] | STATUS_FILTERS["unopened"] | STATUS_FILTERS["paused"]
        expected = {u.market_ticker(i) for i in range(u.n_markets) if u.status[i] in capture}
        assert reg.active_markets() == expected and change.added == expected
        markets = sink.of(Market)
        assert {m.ticker for m in markets} == expected and len(markets) == len(expected)  # type: ignore[union-attr]
        assert len(sink.of(Series)) == u.n_series
        assert len(sink.of(Event)) > 0
        assert any(line.startswith("registry: 20 pages") for line in lines)
        assert lines[-1].startswith(f"registry: {len(expected)} markets in ")
        await c.aclose()


async def test_reconcile_catches_created_settled_removed() -> None:
    async with running_sim(markets=400, active=10) as sim:
        c = client_for(sim)
        sink = MemorySink()
        reg = MarketRegistry(c, sink, "g1")
        changes = reg.subscribe()
        first = await reg.sync()
        # the initial sync hands subscribers each page's markets as the page arrives, nothing twice
        pages = [changes.get_nowait() for _ in range(changes.qsize())]
        assert len(pages) >= 2 and frozenset().union(*(p.added for p in pages)) == first.added
        assert sum(len(p.added) for p in pages) == len(first.added)
        u = sim.exchange.universe
        n_before = len(sink.of(Market))
        opened = [i for i in range(10, 400) if u.status[i] == 1]
        new = u.add_market(u.start_s)  # created (unopened)
        u.status[opened[0]] = FINALIZED  # settled
        u.status[opened[1]] = 3  # closed: gone from the capture listing
        change = await reg.sync()
        t = u.market_ticker
        assert change.added == {t(new)}
        assert change.removed == {t(opened[0]), t(opened[1])}
        assert (await changes.get()) == change
        # only markets whose payload changed are re-sent
        assert len(sink.of(Market)) - n_before < 50
        await c.aclose()


async def test_lifecycle_applied_immediately() -> None:
    async with running_sim(markets=200, active=5) as sim:
        c = client_for(sim)
        reg = MarketRegistry(c, MemorySink(), "g1")
        await reg.sync()
        ex = sim.exchange
        from core.records import LifecycleEvent

        def ev(ticker: str, kind: str) -> LifecycleEvent:
            return LifecycleEvent("g1", 0, ticker, kind, None, None, None, None, None, None, None)

        i = ex.universe.add_market(ex.universe.start_s)
        change = await reg.apply_lifecycle(ev(ex.universe.market_ticker(i), "created"))
        assert change.added == {ex.universe.market_ticker(i)}
        hot = ex.universe.market_ticker(0)
        ex.universe.status[0] = 4  # determined
        change = await reg.apply_lifecycle(ev(hot, "determined"))
        assert change.removed == {hot} and hot not in reg.active_markets()
        await c.aclose()


async def test_poller_snapshots_equal_simulator_books() -> None:
    async with running_sim(markets=100, active=10) as sim:
        for _ in range(500):
            sim.exchange.step(sim.exchange.now_us())
        c = client_for(sim)
        sink = MemorySink()
        reg = MarketRegistry(c, sink, "g1")
        await reg.sync()
        poller = SnapshotPoller(c, reg, sink, "g1", PollerConfig(concurrency=4))
        for i in sim.exchange.hot:
            t = sim.exchange.universe.market_ticker(i)
            snap = await poller.snapshot(t)
            assert snap is not None
            book = sim.exchange.states[i].book
            assert snap.yes_bids == book.levels(True) and snap.no_bids == book.levels(False)
            assert snap.source == "rest" and snap.exchange_ts_us is None
        assert len(sink.of(OrderbookSnapshot)) == len(sim.exchange.hot)
        await c.aclose()


async def test_poller_loop_serves_resync_requests_between_passes() -> None:
    import asyncio

    async with running_sim(markets=60, active=4) as sim:
        c = client_for(sim)
        sink = MemorySink()
        reg = MarketRegistry(c, sink, "g1")
        await reg.sync()
        poller = SnapshotPoller(c, reg, sink, "g1", PollerConfig(interval_s=30, concurrency=2))
        task = asyncio.create_task(poller.run())
        while poller.passes == 0:
            await asyncio.sleep(0.05)
        first_pass = poller.snapshots
        assert first_pass == len(reg.open_markets())
        target = sim.exchange.universe.market_ticker(2)
        poller.request_resync(target)
        for _ in range(100):
            if poller.snapshots > first_pass:
                break
            await asyncio.sleep(0.02)
        task.cancel()
        snaps = sink.of(OrderbookSnapshot)
        assert len(snaps) == first_pass + 1 and snaps[-1].market_ticker == target  # type: ignore[union-attr]
        await c.aclose()


async def test_trade_backfill_quarantines_a_bad_trade_and_goes_on() -> None:
    """A trade REST cannot give as a record (here: no price) is a dead letter with its raw payload; the trades
    around it are backfilled, and the outage is healed instead of retried for ever."""
    import asyncio

    import orjson
    from aiohttp import web

    from core.records import CaptureOutage, Trade
    from gatherer import CaptureWatch
    from router import MemorySink

    def trade(tid: str, price: str | None) -> dict[str, object]:
        t: dict[str, object] = {"trade_id": tid, "ticker": "KX-A", "count_fp": "3.00", "taker_outcome_side": "yes",
                                "created_time": "2026-11-26T04:00:00.123456Z"}  # fmt: skip
        if price is not None:
            t["yes_price_dollars"] = price
        return t

    async def trades(request: web.Request) -> web.Response:
        return web.json_response({"trades": [trade("t1", "0.4100"), trade("bad", None), trade("t3", "0.4200")]})

    app = web.Application()
    app.router.add_get("/trade-api/v2/markets/trades", trades)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    client = KalshiRestClient(KalshiConfig(rest_url=f"http://127.0.0.1:{port}/trade-api/v2"))
    sink = MemorySink()
    watch = CaptureWatch(client, None, sink, "g1", "kd", lambda: True)  # type: ignore[arg-type]
    at = 1_795_665_600_123_000  # 2026-11-26T04:00:00.123Z: created_time cut to the millisecond
    try:
        n = await asyncio.wait_for(watch.fetch_trades(CaptureOutage("g1", at, "*", at - 5_000_000, at, "restart")), 10)
    finally:
        await client.aclose()
        await runner.cleanup()
    assert n == 2
    got: list[Any] = sink.of(Trade)
    assert [(t.trade_id, t.yes_price, t.no_price, t.exchange_ts_us, t.source) for t in got] == [
        ("t1", 41_000, 59_000, at, "rest"),
        ("t3", 42_000, 58_000, at, "rest"),
    ]
    ((raw, reason, detail, where, _),) = sink.dead
    assert orjson.loads(raw)["trade_id"] == "bad" and reason == "bad_value" and "no price" in detail
    assert where == "rest:/markets/trades"


async def test_trade_sweep_fetches_each_stretch_and_resumes_where_it_stopped(private_redis: Any) -> None:
    """Two sweeps cover every trade of the run between them; a restarted sweep goes on from the mark it
    left in Redis (not from now, which would leave the stretch before the restart unswept)."""
    import asyncio

    from core import keys
    from core.config import CaptureConfig, RedisConfig
    from core.records import Trade
    from core.redisconn import async_redis_from_config
    from gatherer._sweep import TradeSweep
    from tests.gatherkit import rest_client

    async with running_sim(rate=800, markets=40, active=40, lifecycle_interval_s=0) as sim:
        await sim.pause()
        sim._engine = asyncio.create_task(sim.engine())
        await asyncio.sleep(2.0)
        await sim.pause()
        ledger = {r[0]: r[2] for r in sim.ledger.rows("trade")}  # trade id -> exchange time
        times = sorted(ledger.values())
        assert len(times) > 50
        mid = times[len(times) // 2]
        client = rest_client(sim)
        r = async_redis_from_config(RedisConfig(url=private_redis.url))
        cfg = CaptureConfig(trade_sweep_s=0.05, trade_sweep_lag_s=0)
        try:
            sink = MemorySink()
            sweep = TradeSweep(client, r, sink, "g1", "kdt", cfg, swept_until_us=times[0])
            first = await sweep.sweep(mid)
            second = await sweep.sweep(times[-1])
            swept: list[Any] = sink.of(Trade)
            got = {t.trade_id for t in swept}
            assert got == set(ledger)  # every trade, each stretch's bounds included
            assert first + second == len(ledger) + sum(1 for t in times if t == mid)  # the shared bound twice
            assert sweep.swept_until_us == times[-1]
            await r.set(keys.trades_swept_until("kdt", "g1"), mid)  # as a sweep that stopped half-way left it
            again = MemorySink()
            restarted = TradeSweep(client, r, again, "g1", "kdt", cfg)
            task = asyncio.create_task(restarted.run())
            await asyncio.sleep(0.5)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            resumed: list[Any] = again.of(Trade)
            assert {t.trade_id for t in resumed} == {k for k, ts in ledger.items() if ts >= mid}
            assert int(await r.get(keys.trades_swept_until("kdt", "g1")) or 0) > times[-1]
        finally:
            await client.aclose()
            await r.aclose()


async def test_todays_market_object_becomes_its_columns() -> None:
    """Kalshi's market object since 2026-10-01 (kalshi-api.md): the settlement bounds (a floor market's floor),
    the tick scheme and its ranges, the exchange index, a scalar market settled by value. tick_size is gone from
    the object and from the record. A settled scalar market's result is 'scalar' and its value settlement_value."""
    async with running_sim(markets=200, active=10) as sim:
        c = client_for(sim)
        u = sim.exchange.universe
        recs = {}
        for status in ("open", "settled"):
            async for page in c.iter_markets(status=status, limit=1000):
                for raw in page:
                    recs[raw["ticker"]] = market_record(raw, "g1", 1)
        await c.aclose()
    floor = [m for m in recs.values() if m.settlement_bounds_type == "floor"]
    assert floor and all(m.settlement_floor == 10_000 for m in floor)
    assert all(m.settlement_floor is None for m in recs.values() if m.settlement_bounds_type == "default")
    assert {m.market_type for m in recs.values()} == {"binary", "scalar"}
    assert all(m.tick_size is None and m.exchange_index is not None for m in recs.values())
    ranges = {m.price_level_structure: json.loads(m.price_ranges_json or "[]") for m in recs.values()}
    assert ranges["linear_cent"] == [{"start": "0.0000", "end": "1.0000", "step": "0.0100"}], ranges
    settled_scalar = [m for m in recs.values() if m.result == "scalar"]
    assert settled_scalar, "a settled scalar market among them"
    for m in settled_scalar:
        i = u.parse_market_ticker(m.ticker)
        assert i is not None and m.settlement_value == u.settlement_value(i)
    assert {m.settlement_value for m in recs.values() if m.result in ("yes", "no")} <= {0, 100_000}


async def test_a_market_object_that_does_not_convert_is_quarantined_and_the_market_still_captured() -> None:
    async with running_sim(markets=40, active=5) as sim:
        c = client_for(sim)
        bad = sim.exchange.universe.market_ticker(3)
        real = sim.rest._market

        def broken(i: int) -> dict[str, Any]:
            m = real(i)
            if m["ticker"] == bad:
                m["settlement_floor_dollars"] = "1.5"  # above $1: no market's price
            return m

        sim.rest._market = broken  # type: ignore[method-assign]
        sink = MemorySink()
        reg = MarketRegistry(c, sink, "g1")
        await reg.sync()
        await c.aclose()
    assert bad in reg.active_markets()  # still captured
    assert bad not in {m.ticker for m in sink.of(Market)}  # type: ignore[union-attr]
    ((raw, reason, detail, where, _),) = sink.dead
    assert json.loads(raw)["ticker"] == bad and reason == "bad_value" and where == "rest:/markets"
    assert "1.5" in detail
