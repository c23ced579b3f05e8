"""The simulator's history endpoints (kalshi-api.md, "History"): the cutoff, archived markets, candlesticks live,
batched and archived, and the past's events; a mixin of RestApi, which holds the exchange, the cursors and the
past (None without --history-days). The trades listings, live and archived, are RestApi's own."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from core.conversions import us_to_iso
from simulator import _wire_history
from simulator._exchange import Exchange
from simulator._history import History, PastMarket
from simulator._rest_common import ApiError, Cursors, int_param

CANDLES_PER_CALL = 10_000


class HistoryRoutes:
    exchange: Exchange
    cursors: Cursors
    history: History | None

    def _past_listed(self, q: Any) -> list[PastMarket]:
        if self.history is None:
            return []
        if q.get("event_ticker") and len(q["event_ticker"].split(",")) > 10:
            raise ApiError(400, "invalid_parameters", "at most 10 event tickers")
        return self.history.listed(
            q.get("series_ticker") or None,
            q["event_ticker"].split(",") if q.get("event_ticker") else None,
            q["tickers"].split(",") if q.get("tickers") else None,
        )

    def _past(self, ticker: str, archived: bool) -> PastMarket:
        """A past market on the asked side of the cutoff, or 404 (Kalshi serves an archived market only through
        /historical/*, and a market still on the live side only through the live endpoints)."""
        m = self.history.by_ticker.get(ticker) if self.history else None
        if m is None or self.history is None or self.history.is_archived(m) != archived:
            raise ApiError(404, "not_found", "market not found")
        return m

    # ---- history ----------------------------------------------------------------------------------------
    def _history(self) -> History:
        if self.history is None:
            raise ApiError(404, "not_found", "no history")
        return self.history

    async def cutoff(self, request: web.Request) -> web.Response:
        c = self._history().cutoff
        return web.json_response(
            {
                "market_settled_ts": us_to_iso(c.market_settled_us),
                "trades_created_ts": us_to_iso(c.trades_created_us),
                "orders_updated_ts": us_to_iso(c.orders_updated_us),
            }
        )

    async def historical_markets(self, request: web.Request) -> web.Response:
        q = request.query
        limit = int_param(q, "limit", 100, 0, 1000) or 100
        pos = self.cursors.read("hmarkets", q.get("cursor")) or 0
        past = self._past_listed(q) if q.get("mve_filter") != "only" else []
        u, h = self.exchange.universe, self._history()
        out: list[dict[str, Any]] = []
        while pos < len(past) and len(out) < limit:
            m = past[pos]
            pos += 1
            if h.is_archived(m):
                out.append(_wire_history.past_market_json(u, m))
        cursor = self.cursors.make("hmarkets", pos) if pos < len(past) else ""
        return web.json_response({"markets": out, "cursor": cursor})

    async def historical_market(self, request: web.Request) -> web.Response:
        m = self._past(request.match_info["ticker"], archived=True)
        return web.json_response({"market": _wire_history.past_market_json(self.exchange.universe, m)})

    async def candlesticks(self, request: web.Request) -> web.Response:
        if self.exchange.universe.parse_market_ticker(request.match_info["ticker"]) is not None:
            # the living markets' quotes are the WebSocket's (and the lake's bars_1m): no candles computed here
            return web.json_response({"ticker": request.match_info["ticker"], "candlesticks": []})
        m = self._past(request.match_info["ticker"], archived=False)
        if self.exchange.universe.series_ticker(m.series) != request.match_info["series_ticker"]:
            raise ApiError(404, "not_found", "market not found in this series")
        return self._candles(request, m, historical=False)

    async def historical_candlesticks(self, request: web.Request) -> web.Response:
        return self._candles(request, self._past(request.match_info["ticker"], archived=True), historical=True)

    def _candle_span(self, q: Any) -> tuple[int, int]:
        start, end = int_param(q, "start_ts", None), int_param(q, "end_ts", None)
        period = int_param(q, "period_interval", None)
        if start is None or end is None or period is None:
            raise ApiError(400, "invalid_parameters", "start_ts, end_ts and period_interval are required")
        if period not in (1, 60, 1440):
            raise ApiError(400, "invalid_parameters", "period_interval must be 1, 60 or 1440")
        if period != 1:
            raise ApiError(400, "invalid_parameters", "the simulator serves one-minute candles only")
        return start, end

    def _candles(self, request: web.Request, m: PastMarket, historical: bool) -> web.Response:
        start, end = self._candle_span(request.query)
        rows = self._history().candles_of(m.ticker, start, end)
        if len(rows) > CANDLES_PER_CALL:
            raise ApiError(400, "invalid_parameters", f"at most {CANDLES_PER_CALL} candles a call")
        return web.json_response(
            {"ticker": m.ticker, "candlesticks": [_wire_history.candle_json(r, historical=historical) for r in rows]}
        )

    async def batch_candlesticks(self, request: web.Request) -> web.Response:
        """GET /markets/candlesticks: up to 100 markets a call, at most 10,000 candles in all. A market the live
        endpoints do not serve (unknown, or archived past the cutoff) is left out of the answer."""
        q = request.query
        tickers = [t for t in q.get("market_tickers", "").split(",") if t]
        if not tickers or len(tickers) > 100:
            raise ApiError(400, "invalid_parameters", "market_tickers: 1 to 100 tickers")
        start, end = self._candle_span(q)
        u, h = self.exchange.universe, self.history
        out: list[dict[str, Any]] = []
        total = 0
        for t in tickers:
            if u.parse_market_ticker(t) is not None:
                out.append({"market_ticker": t, "candlesticks": []})  # living markets: no candles computed here
                continue
            m = h.by_ticker.get(t) if h else None
            if m is None or h is None or h.is_archived(m):
                continue
            rows = h.candles_of(t, start, end)
            total += len(rows)
            out.append(
                {"market_ticker": t, "candlesticks": [_wire_history.candle_json(r, historical=False) for r in rows]}
            )
        if total > CANDLES_PER_CALL:
            raise ApiError(400, "invalid_parameters", f"at most {CANDLES_PER_CALL} candles a call")
        return web.json_response({"markets": out})

    def _past_events(self, series: str | None) -> list[PastMarket]:
        """The first market of each past event (of a series), in listing order."""
        if self.history is None:
            return []
        seen: dict[str, PastMarket] = {}
        for m in self.history.listed(series, None, None):
            seen.setdefault(m.event_ticker, m)
        return list(seen.values())

    def _past_event(self, request: web.Request) -> web.Response:
        """An event of the past (events are never archived: served live, their markets wherever they are)."""
        ticker = request.match_info["event_ticker"]
        past = [m for m in self.history.markets if m.event_ticker == ticker] if self.history else []
        if not past:
            raise ApiError(404, "not_found", "event not found")
        u = self.exchange.universe
        ev = _wire_history.past_event_json(u, past[0])
        markets = [_wire_history.past_market_json(u, m) for m in past]
        if request.query.get("with_nested_markets", "false").lower() == "true":
            ev["markets"] = markets
        return web.json_response({"event": ev, "markets": markets})
