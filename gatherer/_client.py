"""The Kalshi REST client: one httpx.AsyncClient per process, signed requests, a shared token bucket,
retries with exponential backoff and full jitter on connect errors, timeouts, 5xx and 429."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from core import metrics
from core.config import KalshiConfig
from gatherer._backoff import full_jitter
from gatherer._ratelimit import TokenBucket, limiter_from_config
from gatherer._signing import Signer

log = logging.getLogger(__name__)


class KalshiApiError(Exception):
    """A non-retryable answer (4xx other than 429), or retries exhausted."""

    def __init__(self, status: int, code: str, message: str, path: str) -> None:
        super().__init__(f"{status} {code}: {message} ({path})")
        self.status, self.code, self.message, self.path = status, code, message, path


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    throttled: int = 0  # 429 answers seen
    server_errors: int = 0
    transport_errors: int = 0
    by_status: dict[int, int] = field(default_factory=dict)


class KalshiRestClient:
    def __init__(
        self,
        cfg: KalshiConfig,
        signer: Signer | None = None,
        limiter: TokenBucket | None = None,
        *,
        backoff_base_s: float = 0.25,
        backoff_max_s: float = 10.0,
    ) -> None:
        self.cfg = cfg
        self.base = cfg.rest_url.rstrip("/")
        self._path_prefix = urlsplit(self.base).path  # "/trade-api/v2"
        self.signer = signer
        self.limiter: TokenBucket = limiter or limiter_from_config(cfg)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.stats = ClientStats()
        self._http = httpx.AsyncClient(
            timeout=cfg.request_timeout_s,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
            headers={"accept": "application/json", "user-agent": "kalshi-data"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()
        close = getattr(self.limiter, "aclose", None)  # a shared bucket holds a Redis connection
        if close is not None:
            await close()

    async def __aenter__(self) -> KalshiRestClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _backoff(self, attempt: int) -> float:
        return full_jitter(attempt, self.backoff_base_s, self.backoff_max_s)

    async def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """GET base+path. Retries what can succeed later; raises KalshiApiError for the rest."""
        url = self.base + path
        clean = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        attempt = 0
        while True:
            await self.limiter.acquire()
            headers = self.signer.headers("GET", self._path_prefix + path) if self.signer else None
            self.stats.requests += 1
            retry_after: float | None = None
            try:
                resp = await self._http.get(url, params=clean, headers=headers)
            except httpx.TransportError as exc:
                self.stats.transport_errors += 1
                reason = f"{type(exc).__name__}"
            else:
                self.stats.by_status[resp.status_code] = self.stats.by_status.get(resp.status_code, 0) + 1
                metrics.REST_REQUESTS.labels(str(resp.status_code)).inc()
                if resp.status_code < 400:
                    body: dict[str, Any] = orjson.loads(resp.content)
                    return body
                if resp.status_code == 429:
                    self.stats.throttled += 1
                    metrics.REST_THROTTLED.inc()
                    retry_after = _retry_after(resp)
                    reason = "429"
                elif resp.status_code >= 500:
                    self.stats.server_errors += 1
                    reason = str(resp.status_code)
                else:
                    code, message = _error_of(resp)
                    raise KalshiApiError(resp.status_code, code, message, path)
            if attempt >= self.cfg.max_retries:
                raise KalshiApiError(0, "retries_exhausted", f"{reason} after {attempt + 1} attempts", path)
            delay = retry_after if retry_after is not None else self._backoff(attempt)
            if reason == "429":
                self.limiter.pause(delay)  # every caller of this process slows down, not just this one
            self.stats.retries += 1
            metrics.REST_RETRIES.inc()
            log.debug("GET %s: %s, retry %d in %.2fs", path, reason, attempt + 1, delay)
            await asyncio.sleep(delay)
            attempt += 1

    # ---- endpoints ------------------------------------------------------------------------------------
    async def exchange_status(self) -> dict[str, Any]:
        return await self.get("/exchange/status")

    async def market(self, ticker: str) -> dict[str, Any]:
        body = await self.get(f"/markets/{ticker}")
        market: dict[str, Any] = body["market"]
        return market

    async def iter_markets(self, *, limit: int = 1000, **filters: Any) -> AsyncIterator[list[dict[str, Any]]]:
        """Pages of raw markets. Filters as the API names them (status, event_ticker, series_ticker,
        tickers, min/max_created_ts, min/max_close_ts, min/max_settled_ts, mve_filter). An expired cursor
        restarts the listing from the beginning (callers key by ticker, so repeats are harmless)."""
        async for page in self._pages("/markets", "markets", limit, filters):
            yield page

    async def iter_events(self, *, limit: int = 200, **filters: Any) -> AsyncIterator[list[dict[str, Any]]]:
        async for page in self._pages("/events", "events", limit, filters):
            yield page

    async def iter_trades(self, *, limit: int = 1000, **filters: Any) -> AsyncIterator[list[dict[str, Any]]]:
        async for page in self._pages("/markets/trades", "trades", limit, filters):
            yield page

    # ---- history (kalshi-api.md, "History") --------------------------------------------------------------
    async def historical_cutoff(self) -> dict[str, Any]:
        return await self.get("/historical/cutoff")

    async def iter_historical_markets(
        self, *, limit: int = 1000, **filters: Any
    ) -> AsyncIterator[list[dict[str, Any]]]:
        async for page in self._pages("/historical/markets", "markets", limit, filters):
            yield page

    async def iter_historical_trades(self, *, limit: int = 1000, **filters: Any) -> AsyncIterator[list[dict[str, Any]]]:
        async for page in self._pages("/historical/trades", "trades", limit, filters):
            yield page

    async def candlesticks(
        self, series_ticker: str, ticker: str, start_ts: int, end_ts: int, period_interval: int = 1
    ) -> list[dict[str, Any]]:
        """Candles whose period ends in [start_ts, end_ts] (unix seconds), from the live endpoint."""
        path = f"/series/{series_ticker}/markets/{ticker}/candlesticks"
        return await self._candles(path, start_ts, end_ts, period_interval)

    async def batch_candlesticks(
        self, tickers: list[str], start_ts: int, end_ts: int, period_interval: int = 1
    ) -> dict[str, list[dict[str, Any]]]:
        """Up to 100 markets' candles in one call (at most 10,000 candles), by ticker; a market the live
        endpoints do not serve is absent."""
        body = await self.get(
            "/markets/candlesticks",
            {"market_tickers": ",".join(tickers), "start_ts": start_ts, "end_ts": end_ts,
             "period_interval": period_interval},
        )  # fmt: skip
        return {m["market_ticker"]: list(m.get("candlesticks") or []) for m in body.get("markets") or []}

    async def historical_candlesticks(
        self, ticker: str, start_ts: int, end_ts: int, period_interval: int = 1
    ) -> list[dict[str, Any]]:
        """The same from /historical/* (a market settled before the cutoff; its candles name fields differently)."""
        return await self._candles(f"/historical/markets/{ticker}/candlesticks", start_ts, end_ts, period_interval)

    async def _candles(self, path: str, start_ts: int, end_ts: int, period_interval: int) -> list[dict[str, Any]]:
        body = await self.get(path, {"start_ts": start_ts, "end_ts": end_ts, "period_interval": period_interval})
        return list(body.get("candlesticks") or [])

    async def _pages(
        self, path: str, key: str, limit: int, filters: dict[str, Any]
    ) -> AsyncIterator[list[dict[str, Any]]]:
        cursor: str | None = None
        restarts = 0
        while True:
            try:
                body = await self.get(path, {**filters, "limit": limit, "cursor": cursor})
            except KalshiApiError as exc:
                if exc.code == "invalid_cursor" and cursor and restarts < 3:
                    restarts += 1
                    log.warning("%s: cursor refused (%s); restarting the listing", path, exc.message)
                    cursor = None
                    continue
                raise
            yield body.get(key) or []
            cursor = body.get("cursor") or None
            if cursor is None:
                return

    async def event(self, event_ticker: str, *, with_nested_markets: bool = False) -> dict[str, Any]:
        return await self.get(f"/events/{event_ticker}", {"with_nested_markets": str(with_nested_markets).lower()})

    async def series(self, series_ticker: str) -> dict[str, Any]:
        body = await self.get(f"/series/{series_ticker}")
        series: dict[str, Any] = body["series"]
        return series

    async def series_list(self, **filters: Any) -> list[dict[str, Any]]:
        body = await self.get("/series", filters)
        return list(body.get("series") or [])

    async def orderbook(self, ticker: str, depth: int = 0) -> dict[str, Any]:
        return await self.get(f"/markets/{ticker}/orderbook", {"depth": depth})


def _retry_after(resp: httpx.Response) -> float | None:
    v = resp.headers.get("retry-after")
    if v is None:
        return None
    try:
        return max(0.0, float(v))
    except ValueError:
        return None


def _error_of(resp: httpx.Response) -> tuple[str, str]:
    try:
        err = orjson.loads(resp.content).get("error") or {}
        return str(err.get("code", "error")), str(err.get("message", resp.reason_phrase))
    except (orjson.JSONDecodeError, AttributeError):
        return "error", resp.reason_phrase
