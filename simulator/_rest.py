"""REST handlers at Kalshi's paths, with its pagination, limit caps and error shapes."""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from simulator import _wire
from simulator._auth import AuthError, RateLimiter, Verifier
from simulator._exchange import Exchange
from simulator._faults import FaultSchedule, RestFault
from simulator._ledger import Ledger
from simulator._universe import EVENTS_PER_SERIES, STATUS_FILTERS

PREFIX = "/trade-api/v2"
_TS_FILTERS = ("min_created_ts", "max_created_ts", "min_close_ts", "max_close_ts", "min_settled_ts", "max_settled_ts")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: str = "") -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    def response(self) -> web.Response:
        body = {"error": {"code": self.code, "message": self.message, "details": self.details}}
        return web.json_response(body, status=self.status)


def _int_param(q: Any, name: str, default: int | None, lo: int | None = None, hi: int | None = None) -> int | None:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_parameters", f"{name} must be an integer") from None
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ApiError(400, "invalid_parameters", f"{name} must be between {lo} and {hi}")
    return v


@dataclass
class Cursors:
    """Opaque cursors: base64 of 'kind:position:issued_ms'. A cursor older than ttl_s is refused."""

    ttl_s: float | None = None
    expire_next: int = 0  # set by the expire_cursor fault

    def make(self, kind: str, position: int) -> str:
        return base64.urlsafe_b64encode(f"{kind}:{position}:{int(time.time() * 1000)}".encode()).decode()

    def read(self, kind: str, cursor: str | None) -> int | None:
        if not cursor:
            return None
        try:
            k, pos, issued = base64.urlsafe_b64decode(cursor.encode()).decode().split(":")
            position, issued_ms = int(pos), int(issued)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "invalid_cursor", "cursor is not valid") from None
        if k != kind:
            raise ApiError(400, "invalid_cursor", "cursor belongs to another listing")
        expired = self.ttl_s is not None and time.time() * 1000 - issued_ms > self.ttl_s * 1000
        if self.expire_next > 0:
            self.expire_next -= 1
            expired = True
        if expired:
            raise ApiError(400, "invalid_cursor", "cursor expired")
        return position


@dataclass
class RestApi:
    """Kalshi's REST endpoints over the exchange and its ledger. Holds only what it serves from (no
    reference back to the Simulator) and counts its own requests."""

    exchange: Exchange
    ledger: Ledger
    faults: FaultSchedule
    verifier: Verifier | None = None
    rate_limiter: RateLimiter = field(default_factory=lambda: RateLimiter(0, 0))
    legacy: bool = False  # the integer twins and the fields Kalshi removed in 2026
    vocabulary: str = "current"
    cursors: Cursors = field(default_factory=Cursors)
    requests: dict[str, int] = field(default_factory=dict)  # per fault path prefix, matching requests seen
    served: int = 0  # every request, for the simulator's stats
    served_by_route: Counter[str] = field(default_factory=Counter)  # e.g. "/markets/{ticker}/orderbook"

    def routes(self) -> list[web.RouteDef]:
        g = web.get
        return [
            g(f"{PREFIX}/exchange/status", self.exchange_status),
            g(f"{PREFIX}/markets", self.markets),
            g(f"{PREFIX}/markets/trades", self.trades),
            g(f"{PREFIX}/markets/{{ticker}}", self.market),
            g(f"{PREFIX}/markets/{{ticker}}/orderbook", self.orderbook),
            g(f"{PREFIX}/events", self.events),
            g(f"{PREFIX}/events/{{event_ticker}}", self.event),
            g(f"{PREFIX}/series", self.series_list),
            g(f"{PREFIX}/series/{{series_ticker}}", self.series),
            g(f"{PREFIX}/portfolio/balance", self.balance),
        ]

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(PREFIX):
            return await handler(request)
        self.served += 1
        resource = request.match_info.route.resource
        self.served_by_route[resource.canonical[len(PREFIX) :] if resource is not None else "?"] += 1
        try:
            # Market data is public (kalshi-api.md): a request without a signature is served; one that carries
            # a signature has it checked; the portfolio needs one.
            private = request.path.startswith(f"{PREFIX}/portfolio")
            if self.verifier is not None and (private or self.verifier.signed(request.headers)):
                try:
                    self.verifier.verify(request.headers, request.method, request.path)
                except AuthError as exc:
                    raise ApiError(401, exc.code, exc.message) from None
            elif private:
                raise ApiError(401, "missing_authentication", "this endpoint needs a signed request")
            client = request.headers.get("KALSHI-ACCESS-KEY") or request.remote or "?"
            if not self.rate_limiter.allow(client):
                raise ApiError(429, "too_many_requests", "too many requests")
            await self._faults(request)
            return await handler(request)
        except ApiError as exc:
            return exc.response()

    async def _faults(self, request: web.Request) -> None:
        sub = request.path[len(PREFIX) :]
        due: list[tuple[RestFault, int]] = []
        for n, f in enumerate(self.faults.rest):  # count every matching fault before any fires
            if not sub.startswith(f.path):
                continue
            seen = self.requests[str(n)] = self.requests.get(str(n), 0) + 1
            if f.after_requests <= seen < f.after_requests + f.count:
                due.append((f, seen))
        for f, seen in due:
            self.ledger.record("fault", (time.time_ns() // 1000, f"rest:{sub}", f.kind, f"request {seen}"))
            await self._apply(f)

    async def _apply(self, f: RestFault) -> None:
        if f.kind == "429":
            raise ApiError(429, "too_many_requests", "too many requests")
        if f.kind in ("500", "503"):
            raise ApiError(int(f.kind), "internal_server_error", "simulated server error")
        if f.kind == "slow":
            await asyncio.sleep(f.delay_s)
        elif f.kind == "expire_cursor":
            self.cursors.expire_next += 1

    # ---- handlers ---------------------------------------------------------------------------------------
    async def balance(self, request: web.Request) -> web.Response:
        """The account's balance: the simplest request that needs a signature (what `kalshi-data probe` asks)."""
        return web.json_response({"balance": 0, "portfolio_value": 0, "updated_ts": int(time.time())})

    async def exchange_status(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"exchange_active": True, "trading_active": True, "exchange_estimated_resume_time": None}
        )

    def _market(self, i: int) -> dict[str, Any]:
        st = self.exchange.states.get(i)
        return _wire.market_json(self.exchange.universe, i, st, legacy=self.legacy, vocabulary=self.vocabulary)

    async def markets(self, request: web.Request) -> web.Response:
        q = request.query
        u = self.exchange.universe
        limit = _int_param(q, "limit", 100, 1, 1000) or 100
        start = self.cursors.read("markets", q.get("cursor")) or 0
        status = q.get("status")
        codes = None
        if status:
            if status not in STATUS_FILTERS:
                raise ApiError(400, "invalid_parameters", f"status must be one of {', '.join(STATUS_FILTERS)}")
            codes = STATUS_FILTERS[status]
        if q.get("tickers"):
            wanted = [u.parse_market_ticker(t) for t in q["tickers"].split(",")]
            candidates: Any = sorted(i for i in wanted if i is not None)
        elif q.get("event_ticker"):
            evs = q["event_ticker"].split(",")
            if len(evs) > 10:
                raise ApiError(400, "invalid_parameters", "at most 10 event tickers")
            idx = [u.parse_event_ticker(e) for e in evs]
            candidates = [i for e in sorted(x for x in idx if x is not None) for i in u.markets_of_event(e)]
        elif q.get("series_ticker"):
            s = u.parse_series_ticker(q["series_ticker"])
            candidates = (
                [] if s is None else range(s * EVENTS_PER_SERIES * 4, min((s + 1) * EVENTS_PER_SERIES * 4, u.n_markets))
            )
        else:
            candidates = range(u.n_markets)
        ts_filters = {k: _int_param(q, k, None) for k in _TS_FILTERS}
        mve = q.get("mve_filter")
        if mve not in (None, "only", "exclude"):
            raise ApiError(400, "invalid_parameters", "mve_filter must be one of only, exclude")
        out: list[dict[str, Any]] = []
        pos = start
        n = len(candidates)
        while pos < n and len(out) < limit:
            i = candidates[pos]
            pos += 1
            if codes is not None and u.status[i] not in codes:
                continue
            if mve is not None and u.is_multivariate(i) != (mve == "only"):
                continue
            if any(v is not None for v in ts_filters.values()) and not self._ts_ok(i, ts_filters):
                continue
            out.append(self._market(i))
        cursor = self.cursors.make("markets", pos) if pos < n else ""
        return web.json_response({"markets": out, "cursor": cursor})

    def _ts_ok(self, i: int, f: dict[str, int | None]) -> bool:
        t = self.exchange.universe.times(i)
        checks = (("created", t.created_s), ("close", t.close_s), ("settled", t.expiration_s))
        for name, value in checks:
            lo, hi = f[f"min_{name}_ts"], f[f"max_{name}_ts"]
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                return False
        return True

    async def market(self, request: web.Request) -> web.Response:
        i = self.exchange.universe.parse_market_ticker(request.match_info["ticker"])
        if i is None:
            raise ApiError(404, "not_found", "market not found")
        return web.json_response({"market": self._market(i)})

    async def orderbook(self, request: web.Request) -> web.Response:
        ex = self.exchange
        i = ex.universe.parse_market_ticker(request.match_info["ticker"])
        if i is None:
            raise ApiError(404, "not_found", "market not found")
        depth = _int_param(request.query, "depth", 0, 0, 100) or 0
        # the shapes vary by request (1, 2, ...); the legacy mode's official SDK 3.2.0 reads `orderbook` only
        shape = 0 if self.legacy else self.served_by_route["/markets/{ticker}/orderbook"]
        return web.json_response(_wire.orderbook_json(ex.state(i).book, depth, legacy=self.legacy, shape=shape))

    async def trades(self, request: web.Request) -> web.Response:
        q = request.query
        limit = _int_param(q, "limit", 100, 1, 1000) or 100
        ticker = q.get("ticker")
        min_ts, max_ts = _int_param(q, "min_ts", None), _int_param(q, "max_ts", None)
        rows = self.ledger.rows("trade")  # oldest first; listed newest first
        pos = self.cursors.read("trades", q.get("cursor"))
        pos = len(rows) - 1 if pos is None else pos
        out: list[dict[str, Any]] = []
        while pos >= 0 and len(out) < limit:
            row = rows[pos]
            pos -= 1
            ts_s = row[2] // 1_000_000
            if (
                (ticker and row[1] != ticker)
                or (min_ts is not None and ts_s < min_ts)
                or (max_ts is not None and ts_s > max_ts)
            ):
                continue
            out.append(_wire.trade_json(row, legacy=self.legacy))
        cursor = self.cursors.make("trades", pos) if pos >= 0 else ""
        return web.json_response({"trades": out, "cursor": cursor})

    async def events(self, request: web.Request) -> web.Response:
        q = request.query
        u = self.exchange.universe
        limit = _int_param(q, "limit", 100, 1, 200) or 100
        nested = q.get("with_nested_markets", "false").lower() == "true"
        status = q.get("status")
        if status and status not in STATUS_FILTERS:
            raise ApiError(400, "invalid_parameters", f"status must be one of {', '.join(STATUS_FILTERS)}")
        codes = STATUS_FILTERS[status] if status else None
        series = q.get("series_ticker")
        if series:
            s = u.parse_series_ticker(series)
            candidates: range = (
                range(0) if s is None else range(s * EVENTS_PER_SERIES, min((s + 1) * EVENTS_PER_SERIES, u.n_events))
            )
        else:
            candidates = range(u.n_events)
        pos = self.cursors.read("events", q.get("cursor")) or 0
        out: list[dict[str, Any]] = []
        while pos < len(candidates) and len(out) < limit:
            e = candidates[pos]
            pos += 1
            markets = u.markets_of_event(e)
            if codes is not None and not any(u.status[i] in codes for i in markets):
                continue
            ev = _wire.event_json(u, e)
            if nested:
                ev["markets"] = [self._market(i) for i in markets]
            out.append(ev)
        cursor = self.cursors.make("events", pos) if pos < len(candidates) else ""
        return web.json_response({"events": out, "milestones": [], "cursor": cursor})

    async def event(self, request: web.Request) -> web.Response:
        u = self.exchange.universe
        e = u.parse_event_ticker(request.match_info["event_ticker"])
        if e is None:
            raise ApiError(404, "not_found", "event not found")
        ev = _wire.event_json(u, e)
        markets = [self._market(i) for i in u.markets_of_event(e)]
        if request.query.get("with_nested_markets", "false").lower() == "true":
            ev["markets"] = markets
        return web.json_response({"event": ev, "markets": markets})

    async def series_list(self, request: web.Request) -> web.Response:
        u = self.exchange.universe
        category, tags = request.query.get("category"), request.query.get("tags")
        out: list[dict[str, Any]] = []
        for s in range(u.n_series):
            js = _wire.series_json(u, s)
            if category and js["category"] != category:
                continue
            if tags and not set(tags.split(",")) & set(js["tags"]):
                continue
            out.append(js)
        return web.json_response({"series": out})

    async def series(self, request: web.Request) -> web.Response:
        u = self.exchange.universe
        s = u.parse_series_ticker(request.match_info["series_ticker"])
        if s is None:
            raise ApiError(404, "not_found", "series not found")
        return web.json_response({"series": _wire.series_json(u, s)})
