"""REST handlers at Kalshi's paths, with its pagination, limit caps and error shapes."""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from simulator import _wire, _wire_history
from simulator._auth import AuthError, RateLimiter, Verifier
from simulator._exchange import Exchange
from simulator._faults import FaultSchedule, RestFault
from simulator._history import History
from simulator._ledger import Ledger
from simulator._rest_common import PREFIX, ApiError, Cursors, Handler, int_param
from simulator._rest_history import HistoryRoutes
from simulator._universe import EVENTS_PER_SERIES, STATUS_FILTERS

_TS_FILTERS = ("min_created_ts", "max_created_ts", "min_close_ts", "max_close_ts", "min_settled_ts", "max_settled_ts")


@dataclass
class RestApi(HistoryRoutes):
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
    history: History | None = None  # the past (--history-days): settled markets, their trades and candles

    def routes(self) -> list[web.RouteDef]:
        g = web.get
        return [
            g(f"{PREFIX}/exchange/status", self.exchange_status),
            g(f"{PREFIX}/markets", self.markets),
            g(f"{PREFIX}/markets/trades", self.trades),
            g(f"{PREFIX}/markets/candlesticks", self.batch_candlesticks),
            g(f"{PREFIX}/markets/{{ticker}}", self.market),
            g(f"{PREFIX}/markets/{{ticker}}/orderbook", self.orderbook),
            g(f"{PREFIX}/events", self.events),
            g(f"{PREFIX}/events/{{event_ticker}}", self.event),
            g(f"{PREFIX}/series", self.series_list),
            g(f"{PREFIX}/series/{{series_ticker}}", self.series),
            g(f"{PREFIX}/portfolio/balance", self.balance),
            g(f"{PREFIX}/series/{{series_ticker}}/markets/{{ticker}}/candlesticks", self.candlesticks),
            g(f"{PREFIX}/historical/cutoff", self.cutoff),
            g(f"{PREFIX}/historical/markets", self.historical_markets),
            g(f"{PREFIX}/historical/markets/{{ticker}}", self.historical_market),
            g(f"{PREFIX}/historical/markets/{{ticker}}/candlesticks", self.historical_candlesticks),
            g(f"{PREFIX}/historical/trades", self.historical_trades),
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
        limit = int_param(q, "limit", 100, 1, 1000) or 100
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
        ts_filters = {k: int_param(q, k, None) for k in _TS_FILTERS}
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
        # then the past markets the live endpoints still serve (settled after the cutoff), for a filter that admits
        # settled markets
        past = self._past_listed(q) if status in (None, "settled") and mve != "only" else []
        while n <= pos < n + len(past) and len(out) < limit:
            m = past[pos - n]
            pos += 1
            if self.history is not None and not self.history.is_archived(m):
                out.append(_wire_history.past_market_json(u, m))
        cursor = self.cursors.make("markets", pos) if pos < n + len(past) else ""
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
            m = self._past(request.match_info["ticker"], archived=False)
            return web.json_response({"market": _wire_history.past_market_json(self.exchange.universe, m)})
        return web.json_response({"market": self._market(i)})

    async def orderbook(self, request: web.Request) -> web.Response:
        ex = self.exchange
        i = ex.universe.parse_market_ticker(request.match_info["ticker"])
        if i is None:
            raise ApiError(404, "not_found", "market not found")
        depth = int_param(request.query, "depth", 0, 0, 100) or 0
        # the shapes vary by request (1, 2, ...); the legacy mode's official SDK 3.2.0 reads `orderbook` only
        shape = 0 if self.legacy else self.served_by_route["/markets/{ticker}/orderbook"]
        return web.json_response(_wire.orderbook_json(ex.state(i).book, depth, legacy=self.legacy, shape=shape))

    async def trades(self, request: web.Request) -> web.Response:
        return self._trades(request, archived=False)

    async def historical_trades(self, request: web.Request) -> web.Response:
        return self._trades(request, archived=True)

    def _trades(self, request: web.Request, archived: bool) -> web.Response:
        """Trades newest first: the live listing those at or after the trades cutoff, the historical one those
        before it. Cursors index the unfiltered list, so they stay valid when the cutoff moves between pages."""
        q = request.query
        limit = int_param(q, "limit", 100, 1, 1000) or 100
        ticker = q.get("ticker")
        min_ts, max_ts = int_param(q, "min_ts", None), int_param(q, "max_ts", None)
        h = self.history
        if archived and h is None:
            raise ApiError(404, "not_found", "no history")
        cut = h.cutoff.trades_created_us if h is not None else None
        # a past market's trades are its own list; anything else reads the ledger (oldest first)
        own = h is not None and ticker is not None and ticker in h.by_ticker
        rows = h.trades[ticker] if own and h is not None and ticker else self.ledger.view("trade")
        kind = "htrades" if archived else "trades"
        pos = self.cursors.read(kind, q.get("cursor"))
        lo_us = None if min_ts is None else min_ts * 1_000_000
        hi_us = None if max_ts is None else (max_ts + 1) * 1_000_000
        # the ledger's trades begin with the past's, in time order: [0, sorted_to) can be bisected and cut short
        sorted_to = len(rows) if own else len(h.every_ts) if h is not None else 0
        if pos is None:
            pos = len(rows) - 1
            if not own and h is not None and hi_us is not None and h.every_ts and hi_us <= h.every_ts[-1]:
                pos = bisect_left(h.every_ts, hi_us) - 1
        out: list[dict[str, Any]] = []
        while pos >= 0 and len(out) < limit:
            row = rows[pos]
            pos -= 1
            ts = row[2]
            if lo_us is not None and ts < lo_us:
                if pos + 1 < sorted_to:
                    pos = -1  # in time order from here down: nothing older can match
                continue
            if (
                (ticker and row[1] != ticker)
                or (hi_us is not None and ts >= hi_us)
                or (cut is not None and (ts < cut) != archived)
            ):
                continue
            out.append(_wire.trade_json(row, legacy=self.legacy))
        cursor = self.cursors.make(kind, pos) if pos >= 0 else ""
        return web.json_response({"trades": out, "cursor": cursor})

    async def events(self, request: web.Request) -> web.Response:
        q = request.query
        u = self.exchange.universe
        limit = int_param(q, "limit", 100, 1, 200) or 100
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
        # then the past's events (events are never archived), for a filter that admits settled markets
        n = len(candidates)
        past = self._past_events(series) if status in (None, "settled") else []
        while n <= pos < n + len(past) and len(out) < limit:
            first = past[pos - n]
            pos += 1
            ev = _wire_history.past_event_json(u, first)
            if nested and self.history is not None:
                ev["markets"] = [
                    _wire_history.past_market_json(u, m)
                    for m in self.history.markets
                    if m.event_ticker == first.event_ticker
                ]
            out.append(ev)
        cursor = self.cursors.make("events", pos) if pos < n + len(past) else ""
        return web.json_response({"events": out, "milestones": [], "cursor": cursor})

    async def event(self, request: web.Request) -> web.Response:
        u = self.exchange.universe
        e = u.parse_event_ticker(request.match_info["event_ticker"])
        if e is None:
            return self._past_event(request)
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
