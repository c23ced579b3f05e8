"""`kalshi-data probe`: a new setup's first contact with the exchange, one step a line, each failure with what to
do. It uses the gatherer's own REST client, signer and WebSocket connection, so what passes here is what the
gatherer will do.

1. the exchange answers (GET /exchange/status, unsigned: market data is public);
2. the key file loads (its type, its permissions);
3. a signed request is accepted (GET /portfolio/balance, which needs one); refused, the cause is told apart:
   a clock off Kalshi's (from the answer's Date header and the error), a key id Kalshi does not know, a
   signature that does not match the key registered for the id (another key, or a key of another type);
4. the WebSocket handshake, signed, is accepted;
5. an open market's order book arrives (a subscribe, its snapshot);
6. a trade or a ticker comes within the wait.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.config import GathererConfig
from core.records import OrderbookSnapshot, Ticker, Trade
from gatherer._client import KalshiApiError, KalshiRestClient
from gatherer._connection import WsConnection
from gatherer._signing import KeyFileError, Signer, signer_from_config
from router import MemorySink

MAX_SKEW_S = 5.0  # a clock further off than this from Kalshi's is reported even when it is still accepted


@dataclass
class Step:
    name: str
    ok: bool | None  # None: skipped (an earlier step failed)
    detail: str

    def line(self) -> str:
        tag = "ok  " if self.ok else "skip" if self.ok is None else "FAIL"
        return f"{tag}  {self.name:<10} {self.detail}"


@dataclass
class Probe:
    cfg: GathererConfig
    clock_ms: Callable[[], int] = field(default=lambda: int(time.time() * 1000))  # tests skew it
    book_wait_s: float = 15.0
    live_wait_s: float = 60.0
    steps: list[Step] = field(default_factory=list)
    out: Callable[[str], None] = print

    def _step(self, name: str, ok: bool | None, detail: str) -> bool:
        step = Step(name, ok, detail)
        self.steps.append(step)
        self.out(step.line())
        return bool(ok)

    def _skip(self, *names: str) -> None:
        for name in names:
            self._step(name, None, "not tried: an earlier step failed")

    async def run(self) -> bool:
        k = self.cfg.kalshi
        client = KalshiRestClient(k.model_copy(update={"max_retries": 1}), None)
        try:
            return await self._run(client)
        finally:
            await client.aclose()

    async def _run(self, client: KalshiRestClient) -> bool:
        k = self.cfg.kalshi
        rest = ["key", "signed", "websocket", "book", "live"]
        # 1. the exchange answers
        try:
            resp = await client._http.get(client.base + "/exchange/status")
        except Exception as exc:
            self._step("exchange", False, f"{k.rest_url} does not answer ({type(exc).__name__}: {exc}): check "
                       "kalshi.rest_url and this host's network")  # fmt: skip
            self._skip(*rest)
            return False
        if resp.status_code != 200:
            self._step("exchange", False, f"{k.rest_url}/exchange/status answered {resp.status_code}: is "
                       "kalshi.rest_url Kalshi's trade API (it ends in /trade-api/v2)?")  # fmt: skip
            self._skip(*rest)
            return False
        body = resp.json()
        skew_s = _skew_s(resp.headers.get("date"), self.clock_ms())
        self._step("exchange", True, f"{k.rest_url} answers: exchange "
                   f"{'active' if body.get('exchange_active') else 'NOT active'}, trading "
                   f"{'active' if body.get('trading_active') else 'not active'}")  # fmt: skip
        # 2. the key file
        try:
            signer = signer_from_config(
                k.api_key_id, k.private_key_path.get_secret_value() if k.private_key_path else None, self.clock_ms
            )
        except KeyFileError as exc:
            self._step("key", False, str(exc))
            self._skip(*rest[1:])
            return False
        if signer is None:
            self._step("key", False, "no key configured: set kalshi.api_key_id and kalshi.private_key_path (create "
                       "a key at kalshi.com, Account, API keys); Kalshi's WebSocket needs one")  # fmt: skip
            self._skip(*rest[1:])
            return False
        name = signer.key_type.upper() if signer.key_type.startswith("rsa") else "Ed25519"
        self._step("key", True, f"an {name} private key, readable by its owner only, key id {signer.key_id}")
        # 3. a signed request
        client.signer = signer
        try:
            await client.get("/portfolio/balance")
        except KalshiApiError as exc:
            self._step("signed", False, _refusal(exc, signer, skew_s))
            self._skip(*rest[2:])
            return False
        if skew_s is None or abs(skew_s) <= 1.5:  # the Date header counts whole seconds
            clock = " (this clock agrees with Kalshi's within a second or so)"
        else:
            clock = f" (this clock {abs(skew_s):.0f} s {'ahead of' if skew_s > 0 else 'behind'} Kalshi's)"
        if skew_s is not None and abs(skew_s) > MAX_SKEW_S:
            clock += ": accepted, but sync this host's clock (NTP) before Kalshi stops taking it"
        self._step("signed", True, f"GET /portfolio/balance accepted{clock}")
        # 4-6. the WebSocket: handshake, a book, a trade or a ticker
        return await self._websocket(client, signer)

    async def _websocket(self, client: KalshiRestClient, signer: Signer) -> bool:
        k = self.cfg.kalshi
        try:
            page = await client.get("/markets", {"status": "open", "limit": 1})
            market = (page.get("markets") or [{}])[0].get("ticker")
        except KalshiApiError as exc:
            market = None
            self.out(f"      (no open market listed: {exc})")
        sink = MemorySink()
        book = WsConnection("probe:orderbook", k.ws_url, "orderbook_delta", {market} if market else set(),
                            "probe", sink, self.cfg.websocket, signer)  # fmt: skip
        session = book._new_session()
        try:
            await book._open(session)
        except Exception as exc:
            self._step("websocket", False, _ws_refusal(exc, k.ws_url))
            self._skip("book", "live")
            return False
        self._step("websocket", True, f"handshake accepted at {k.ws_url}")
        live = WsConnection("probe:ticker", k.ws_url, "ticker", None, "probe", sink, self.cfg.websocket, signer)
        live_session = live._new_session()
        try:
            ok = await self._book(book, session, market, sink)
            ok = await self._live(live, live_session, sink) and ok
        finally:
            for conn, s in ((book, session), (live, live_session)):
                await conn._close(s, None)
        return ok

    async def _book(self, conn: WsConnection, s: Any, market: str | None, sink: MemorySink) -> bool:
        if market is None:
            return self._step("book", False, "the exchange lists no open market: try again while one is open")
        started = time.monotonic()
        try:
            await conn._subscribe(s)
            async with asyncio.timeout(self.book_wait_s):
                while not any(isinstance(r, OrderbookSnapshot) for r in sink.records):
                    await asyncio.sleep(0.05)
        except Exception as exc:
            return self._step("book", False, f"no order book of {market} within {self.book_wait_s:.0f} s "
                              f"({type(exc).__name__}: {exc})")  # fmt: skip
        snap = next(r for r in sink.records if isinstance(r, OrderbookSnapshot))
        return self._step("book", True, f"{market}: {len(snap.yes_bids)} YES and {len(snap.no_bids)} NO bid levels "
                          f"after {time.monotonic() - started:.1f} s")  # fmt: skip

    async def _live(self, conn: WsConnection, s: Any, sink: MemorySink) -> bool:
        started = time.monotonic()
        try:
            await conn._open(s)
            await conn._subscribe(s)
            async with asyncio.timeout(self.live_wait_s):
                while not any(isinstance(r, Ticker | Trade) for r in sink.records):
                    await asyncio.sleep(0.05)
        except TimeoutError:
            return self._step("live", False, f"no trade or ticker in {self.live_wait_s:.0f} s: the market may be "
                              "quiet (try again in trading hours); the connection itself works")  # fmt: skip
        except Exception as exc:
            return self._step("live", False, f"{type(exc).__name__}: {exc}")
        first = next(r for r in sink.records if isinstance(r, Ticker | Trade))
        kind = "trade" if isinstance(first, Trade) else "ticker"
        return self._step("live", True, f"a {kind} of {first.market_ticker} after {time.monotonic() - started:.1f} s")


def _skew_s(date_header: str | None, now_ms: int) -> float | None:
    """How far this clock is ahead of the server's (positive: ahead), from its Date header (1 s resolution)."""
    if not date_header:
        return None
    try:
        server = email.utils.parsedate_to_datetime(date_header).timestamp()
    except (TypeError, ValueError):
        return None
    return now_ms / 1000 - server


def _refusal(exc: KalshiApiError, signer: Signer, skew_s: float | None) -> str:
    """What Kalshi's refusal of a signed request means, and what to do. kalshi-api.md names no error codes for
    the three causes: the code, the message and this clock against the server's tell them apart."""
    text = f"{exc.code} {exc.message}".lower()
    said = f"(Kalshi: {exc.status} {exc.code}: {exc.message})"
    if (exc.status == 401 and ("timestamp" in text or "stale" in text or "expired" in text)) or (
        skew_s is not None and abs(skew_s) > 30
    ):
        off = "" if skew_s is None else f"this clock is {abs(skew_s):.0f} s {'ahead of' if skew_s > 0 else 'behind'} "
        return f"refused: {off}Kalshi's: sync this host's clock (NTP) {said}"
    if exc.status == 401 and ("unknown" in text or "not found" in text or "no such" in text) and "key" in text:
        return f"refused: Kalshi does not know key id {signer.key_id}: check kalshi.api_key_id {said}"
    if exc.status == 401 and "signature" in text:
        return (f"refused: the signature does not match the key registered for {signer.key_id}: the private key "
                f"file is another key, or of another type than the one registered {said}")  # fmt: skip
    if exc.status == 403:
        return f"refused: the key may not read the portfolio: give it read access at kalshi.com {said}"
    return f"refused {said}"


def _ws_refusal(exc: Exception, url: str) -> str:
    text = str(exc)
    if "401" in text:
        return f"{url} refused the signed handshake (401): the key worked for REST? then check kalshi.ws_url"
    return f"{url}: {type(exc).__name__}: {text}: check kalshi.ws_url and this host's network"
