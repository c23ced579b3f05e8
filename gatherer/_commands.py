"""Commands on one WebSocket: each gets a client-chosen id, its answer is matched by that id, a timeout is
retried once, a refusal raises CommandFailed with the exchange's code."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson

from core import metrics
from gatherer._conn_stats import ConnStats
from router import Frame

log = logging.getLogger(__name__)


class CommandFailed(Exception):
    """A command refused by the server, unanswered after a retry, or cut by a lost connection."""

    def __init__(self, text: str, code: int | None = None, detail: str = "") -> None:
        super().__init__(text)
        self.code = code
        self.detail = detail


class Commands:
    """Ids and waiting answers of one connection; `send_text` sends a text frame on the current session's
    socket (None between sessions)."""

    def __init__(self, conn_id: str, timeout_s: float, stats: ConnStats) -> None:
        self.conn_id, self.timeout_s, self.stats = conn_id, timeout_s, stats
        self.send_text: Callable[[bytes], None] | None = None
        self._next_id = 1
        self._waiting: dict[int, asyncio.Future[Frame]] = {}

    async def send(self, cmd: str, params: dict[str, Any]) -> asyncio.Future[Frame]:
        """Send a command; the future gets the frame that answers it."""
        send_text = self.send_text
        if send_text is None:
            raise CommandFailed("not connected")
        cid = self._next_id
        self._next_id += 1
        fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._waiting[cid] = fut
        send_text(orjson.dumps({"id": cid, "cmd": cmd, "params": params}))
        return fut

    async def call(self, cmd: str, params: dict[str, Any], sent: asyncio.Future[Frame] | None = None) -> Frame:
        """Send a command (unless `sent` is its answer already on the way) and wait for its answer; retried
        once on timeout."""
        for attempt in range(2):
            fut = sent if sent is not None and attempt == 0 else await self.send(cmd, params)
            try:
                async with asyncio.timeout(self.timeout_s):
                    reply = await fut
            except TimeoutError:
                self._waiting = {k: v for k, v in self._waiting.items() if v is not fut}
                self.stats.command_failures += 1
                metrics.WS_COMMAND_FAILURES.labels(self.conn_id, "timeout").inc()
                log.warning("%s: %s unanswered in %.0fs (attempt %d)", self.conn_id, cmd, self.timeout_s, attempt + 1)
                continue
            if reply.type == "error":
                self.stats.command_failures += 1
                err = reply.msg
                code = err.get("code")
                metrics.WS_COMMAND_FAILURES.labels(self.conn_id, f"code_{code}").inc()
                raise CommandFailed(
                    f"{cmd} refused: code {code}: {err.get('msg')}",
                    code if isinstance(code, int) else None,
                    str(err.get("msg") or ""),
                )
            return reply
        raise CommandFailed(f"{cmd} unanswered")

    def answer(self, f: Frame) -> None:
        """A control frame: the answer to the command with its id, or an error nobody waits for (logged)."""
        fut = self._waiting.pop(f.id, None) if f.id is not None else None
        if fut is not None and not fut.done():
            fut.set_result(f)
        elif f.type == "error":
            log.warning("%s: unsolicited error: %s", self.conn_id, f.msg)

    def lost(self) -> None:
        """The socket is gone: nothing more can be sent, and every command still waiting fails now, not at
        its timeout."""
        self.send_text = None
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(CommandFailed("connection closed"))
        self._waiting.clear()
