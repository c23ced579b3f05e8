"""What every REST handler of the simulator shares: Kalshi's path prefix, its error shape, integer query
parameters and opaque cursors."""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

PREFIX = "/trade-api/v2"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: str = "") -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    def response(self) -> web.Response:
        body = {"error": {"code": self.code, "message": self.message, "details": self.details}}
        return web.json_response(body, status=self.status)


def int_param(q: Any, name: str, default: int | None, lo: int | None = None, hi: int | None = None) -> int | None:
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
