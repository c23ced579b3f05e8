"""The simulator's REST API: the official SDK reads it without a validation error; pagination, filters,
limit caps, error shapes, RSA-PSS authentication and 429s."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from simulator import Simulator
from simulator._universe import STATUS_FILTERS, Universe
from tests.simkit import raw_client, running_sim


def sdk_client(sim: Simulator, key_id: str | None = None, pem: str | None = None):  # type: ignore[no-untyped-def]
    import kalshi_python_sync as k

    cfg = k.Configuration(host=sim.rest_url)
    if key_id is not None:
        cfg.api_key_id = key_id
        cfg.private_key_pem = pem
    return k.KalshiClient(cfg)


def sdk_walk(sim: Simulator) -> dict[str, int]:
    client = sdk_client(sim)
    n, cursor, tickers = 0, None, set[str]()
    while True:
        page = client.get_markets(limit=1000, cursor=cursor)
        tickers.update(m.ticker for m in page.markets)
        n += len(page.markets)
        cursor = page.cursor
        if not cursor:
            break
    events = client.get_events(limit=200, with_nested_markets=True)
    ev = client.get_event(events.events[0].event_ticker)
    series = client.get_series(events.events[0].series_ticker)
    hot = sim.exchange.universe.market_ticker(sim.exchange.hot[0])
    book = client.get_market_orderbook(hot)
    one = client.get_market(hot)
    trades = client.get_trades(limit=100, ticker=None)
    status = client.get_exchange_status()
    assert status.exchange_active is True
    assert one.market.ticker == hot
    assert book.orderbook.yes_dollars, "a hot market has YES bids"
    assert series.series.ticker == events.events[0].series_ticker
    assert len(ev.markets) == 4
    return {"markets": n, "unique": len(tickers), "events": len(events.events), "trades": len(trades.trades)}


async def test_official_sdk_reads_everything_without_validation_error() -> None:
    # the SDK 3.2.0 requires fields Kalshi removed in 2026: it reads the simulator with --legacy-fields
    async with running_sim(markets=2_345, active=20, status_vocabulary="sdk", legacy_rest=True) as sim:
        while len(sim.ledger.rows("trade")) < 100:
            sim.exchange.step(sim.exchange.now_us())
        got = await asyncio.to_thread(sdk_walk, sim)
    assert got == {"markets": 2_345, "unique": 2_345, "events": 200, "trades": 100}


async def test_current_vocabulary_reports_every_status_and_filters_select_them() -> None:
    async with running_sim(markets=5_000, active=20) as sim, httpx.AsyncClient(base_url=sim.rest_url) as http:
        seen: set[str] = set()
        counts = {}
        for name in STATUS_FILTERS:
            n, cursor = 0, ""
            while True:
                r = await http.get("/markets", params={"status": name, "limit": 1000, "cursor": cursor})
                body = r.json()
                n += len(body["markets"])
                seen.update(m["status"] for m in body["markets"])
                cursor = body["cursor"]
                if not cursor:
                    break
            counts[name] = n
        u = sim.exchange.universe
        assert counts == {k: u.indices_with_status(v) for k, v in STATUS_FILTERS.items()}
        assert seen == {
            "initialized",
            "active",
            "inactive",
            "closed",
            "determined",
            "disputed",
            "amended",
            "finalized",
        }


REMOVED_2026 = (
    "yes_bid",
    "volume",
    "open_interest",
    "notional_value",
    "tick_size",
    "response_price_units",
    "fractional_trading_enabled",
    "liquidity",
    "liquidity_dollars",
)


async def test_market_fields_both_generations_and_current_only() -> None:
    async with (
        running_sim(markets=50, active=5, legacy_rest=True) as sim,
        httpx.AsyncClient(base_url=sim.rest_url) as http,
    ):
        m = (await http.get(f"/markets/{sim.exchange.universe.market_ticker(0)}")).json()["market"]
        assert m["yes_bid"] * 1000 <= int(m["yes_bid_dollars"].replace(".", "")) * 10 < (m["yes_bid"] + 1) * 1000
        assert isinstance(m["volume_fp"], str) and isinstance(m["volume"], int)
        ob = (await http.get(f"/markets/{m['ticker']}/orderbook", params={"depth": 2})).json()["orderbook"]
        assert len(ob["yes_dollars"]) <= 2 and "yes" in ob
    async with running_sim(markets=50, active=5) as sim, httpx.AsyncClient(base_url=sim.rest_url) as h:  # default
        m = (await h.get(f"/markets/{sim.exchange.universe.market_ticker(0)}")).json()["market"]
        assert not set(REMOVED_2026) & set(m) and "yes_bid_dollars" in m and "volume_fp" in m
        body = (await h.get(f"/markets/{m['ticker']}/orderbook")).json()
        ob = body.get("orderbook") or body["orderbook_fp"]
        assert "yes" not in ob and "yes_dollars" in ob


async def test_orderbook_shapes_vary_as_kalshi_and_the_client_reads_each_one() -> None:
    """kalshi-api.md: the book object is `orderbook` or `orderbook_fp`, a side without bids `[]`, `null` or
    absent. Six reads of a market with one empty side show every shape; the gatherer's parser gives the
    simulator's book from each."""
    from gatherer._models import rest_snapshot

    async with running_sim(markets=50, active=5) as sim, httpx.AsyncClient(base_url=sim.rest_url) as h:
        st = sim.exchange.state(sim.exchange.hot[0])
        st.book.no.clear()  # the NO side has no bids
        names, empties = set(), set()
        for _ in range(6):
            body = (await h.get(f"/markets/{st.ticker}/orderbook")).json()
            (name,) = body
            names.add(name)
            empties.add(repr(body[name].get("no_dollars", "absent")))
            snap = rest_snapshot(body, st.ticker, "g1", 0)
            assert dict(snap.yes_bids) == dict(st.book.yes) and st.book.yes and snap.no_bids == []
        assert names == {"orderbook", "orderbook_fp"} and empties == {"[]", "None", "'absent'"}


async def test_filters_limits_and_errors() -> None:
    async with running_sim(markets=400, active=5) as sim, httpx.AsyncClient(base_url=sim.rest_url) as http:
        u = sim.exchange.universe
        ev = u.event_ticker(3)
        r = await http.get("/markets", params={"event_ticker": ev})
        assert [m["ticker"] for m in r.json()["markets"]] == [u.market_ticker(i) for i in range(12, 16)]
        r = await http.get("/markets", params={"tickers": f"{u.market_ticker(7)},{u.market_ticker(2)}"})
        assert [m["ticker"] for m in r.json()["markets"]] == [u.market_ticker(2), u.market_ticker(7)]
        r = await http.get("/markets", params={"series_ticker": u.series_ticker(0)})
        assert len(r.json()["markets"]) == 100 and all(
            m["series_ticker"] == u.series_ticker(0) for m in r.json()["markets"]
        )
        for params in ({"limit": 1001}, {"limit": 0}, {"limit": "x"}, {"status": "weird"}, {"cursor": "!!"}):
            r = await http.get("/markets", params=params)
            assert r.status_code == 400, params
            assert set(r.json()["error"]) == {"code", "message", "details"}
        assert (await http.get("/events", params={"limit": 201})).status_code == 400
        r = await http.get("/markets/NOPE-1")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = await http.get("/series/KXNOPE")
        assert r.status_code == 404


async def test_trades_page_newest_first_and_filter() -> None:
    async with running_sim(markets=40, active=3) as sim, httpx.AsyncClient(base_url=sim.rest_url) as http:
        for _ in range(2000):
            sim.exchange.step(sim.exchange.now_us())
        truth = sim.ledger.rows("trade")
        got, cursor = [], ""
        while True:
            body = (await http.get("/markets/trades", params={"limit": 7, "cursor": cursor})).json()
            got += [t["trade_id"] for t in body["trades"]]
            cursor = body["cursor"]
            if not cursor:
                break
        assert got == [r[0] for r in reversed(truth)]
        t0 = truth[0][1]
        body = (await http.get("/markets/trades", params={"ticker": t0, "limit": 1000})).json()
        assert {t["ticker"] for t in body["trades"]} == {t0}
        assert len(body["trades"]) == sum(1 for r in truth if r[1] == t0)


@pytest.mark.slow
def test_million_market_universe_pages_and_stays_small() -> None:
    import tracemalloc

    tracemalloc.start()
    u = Universe(seed=3, n_markets=1_000_000, start_s=1_764_000_000, hot=1000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 50_000_000  # bytes: one status byte per market, not a dict per market
    last = u.market_ticker(999_999)
    assert u.parse_market_ticker(last) == 999_999
    assert len({u.market_ticker(i) for i in range(0, 1_000_000, 997)}) == len(range(0, 1_000_000, 997))


@pytest.mark.slow
async def test_million_markets_last_page_via_cursor() -> None:
    async with running_sim(markets=1_000_000, active=10) as sim, httpx.AsyncClient(base_url=sim.rest_url) as http:
        r = (await http.get("/markets", params={"limit": 1000})).json()
        assert len(r["markets"]) == 1000 and r["cursor"]
        cursor = sim.rest.cursors.make("markets", 999_500)  # what page 1000's cursor holds
        r = (await http.get("/markets", params={"limit": 1000, "cursor": cursor})).json()
        assert len(r["markets"]) == 500 and r["cursor"] == ""
        assert r["markets"][-1]["ticker"] == sim.exchange.universe.market_ticker(999_999)


# ---- authentication and rate limits -------------------------------------------------------------------


@pytest.fixture(scope="module", params=["rsa", "ed25519"])
def keypair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A key of each type Kalshi takes: its private PEM and the public key's file."""
    key: Any = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if request.param == "rsa"
        else ed25519.Ed25519PrivateKey.generate()
    )
    d = tmp_path_factory.mktemp("keys")
    (d / "pub.pem").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode(), d / "pub.pem"


def sign(pem: str, ts_ms: int, method: str, path: str) -> str:
    """Signed as kalshi-api.md says, independently of the gatherer's code."""
    key = serialization.load_pem_private_key(pem.encode(), None)
    message = f"{ts_ms}{method}{path}".encode()
    if isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(message, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    else:
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        sig = key.sign(message)
    return base64.b64encode(sig).decode()


async def test_rest_signature_checked_like_kalshi(keypair: tuple[str, Path]) -> None:
    """Market data is public: an unsigned request is served. A signed one has its signature checked (each
    failure with its own code), and the portfolio needs one."""
    pem, pub = keypair
    async with running_sim(markets=30, active=2, public_keys=[f"key1={pub}"]) as sim:
        async with httpx.AsyncClient(base_url=sim.rest_url) as http:
            assert (await http.get("/markets", params={"limit": 5})).status_code == 200
            r = await http.get("/portfolio/balance")
            assert r.status_code == 401 and r.json()["error"]["code"] == "missing_authentication"
            now = int(time.time() * 1000)

            def signed(
                path: str, ts: int = now, key_id: str = "key1", signed_path: str | None = None
            ) -> dict[str, str]:
                return {
                    "KALSHI-ACCESS-KEY": key_id,
                    "KALSHI-ACCESS-TIMESTAMP": str(ts),
                    "KALSHI-ACCESS-SIGNATURE": sign(pem, ts, "GET", signed_path or f"/trade-api/v2{path}"),
                }

            assert (await http.get("/markets", params={"limit": 5}, headers=signed("/markets"))).status_code == 200
            assert (await http.get("/portfolio/balance", headers=signed("/portfolio/balance"))).status_code == 200
            for headers, code in (
                (signed("/portfolio/balance", ts=now - 120_000), "stale_timestamp"),
                (signed("/portfolio/balance", signed_path="/trade-api/v2/events"), "invalid_signature"),
                (signed("/portfolio/balance", key_id="key2"), "unknown_api_key"),
            ):
                r = await http.get("/portfolio/balance", headers=headers)
                assert r.status_code == 401 and r.json()["error"]["code"] == code, (code, r.json())
            bad = signed("/markets", signed_path="/trade-api/v2/events")
            assert (await http.get("/markets", headers=bad)).status_code == 401  # a signature shown is checked
        if "BEGIN PRIVATE KEY" in pem and pub.read_text().startswith("-----BEGIN PUBLIC KEY"):
            key = serialization.load_pem_private_key(pem.encode(), None)
            if isinstance(key, rsa.RSAPrivateKey):  # the official SDK 3.2.0 signs with RSA-PSS only
                # its own signing is accepted: an independent check of the message format
                got = await asyncio.to_thread(
                    lambda: sdk_client(sim, "key1", pem).get_exchange_status().exchange_active
                )
                assert got is True


async def test_ws_handshake_requires_signature(keypair: tuple[str, Path]) -> None:
    pem, pub = keypair
    async with running_sim(markets=30, active=2, public_keys=[f"key1={pub}"]) as sim:
        with pytest.raises(websockets.InvalidStatus) as err:
            async with websockets.connect(sim.ws_url):
                pass
        assert err.value.response.status_code == 401
        now = int(time.time() * 1000)
        headers = {
            "KALSHI-ACCESS-KEY": "key1",
            "KALSHI-ACCESS-TIMESTAMP": str(now),
            "KALSHI-ACCESS-SIGNATURE": sign(pem, now, "GET", "/trade-api/ws/v2"),
        }
        async with raw_client(sim, additional_headers=headers) as c:
            await c.send("subscribe", channels=["ticker"])
            assert (await c.recv())["type"] == "subscribed"


async def test_rate_limit_answers_429_with_error_body() -> None:
    async with running_sim(markets=30, active=2, rest_rate_limit=5, rest_burst=5) as sim:
        async with httpx.AsyncClient(base_url=sim.rest_url) as http:
            answers = [await http.get("/exchange/status") for _ in range(12)]
            codes = [r.status_code for r in answers]
            assert codes[:5] == [200] * 5
            limited = [r for r in answers if r.status_code == 429]
            assert limited, codes
            assert limited[0].json()["error"]["code"] == "too_many_requests"
            await asyncio.sleep(0.5)  # the bucket refills at 5/s
            assert (await http.get("/exchange/status")).status_code == 200


async def test_mve_filter_lists_or_leaves_out_multivariate_markets() -> None:
    async with running_sim(markets=2_000, active=5) as sim, httpx.AsyncClient(base_url=sim.rest_url) as h:
        u = sim.exchange.universe
        mve = {u.market_ticker(i) for i in range(u.n_markets) if u.is_multivariate(i)}
        # a realistic share: more multivariate markets than the rest, but not only them
        assert all(t.startswith("KXMVE") for t in mve) and u.n_markets * 0.4 < len(mve) < u.n_markets * 0.9

        async def listed(**q: str) -> set[str]:
            out, cursor = set(), ""
            while True:
                body = (await h.get("/markets", params={"limit": "1000", "cursor": cursor, **q})).json()
                out |= {m["ticker"] for m in body["markets"]}
                if not (cursor := body["cursor"]):
                    return out

        everything, only, exclude = await listed(), await listed(mve_filter="only"), await listed(mve_filter="exclude")
        assert only == mve and exclude == everything - mve and len(everything) == u.n_markets
        one = (await h.get(f"/markets/{next(iter(mve))}")).json()["market"]
        assert one["mve_collection_ticker"] and one["mve_selected_legs"]
        assert (await h.get("/markets", params={"mve_filter": "both"})).status_code == 400
