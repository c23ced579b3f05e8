"""The market-data WebSocket: commands and responses, subscriptions with per-sid seq, fan-out, faults.

One Session per connection. Commands are answered in order; data frames go through a per-session queue
drained by one writer task, where the connection's scheduled faults are applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import WSMsgType, web

from simulator import _wire
from simulator._faults import WsFault

if TYPE_CHECKING:
    from simulator._exchange import Exchange
    from simulator._ledger import Ledger

log = logging.getLogger(__name__)

CHANNELS = (
    "orderbook_delta",
    "ticker",
    "trade",
    "market_lifecycle_v2",
    "event_lifecycle",
    "multivariate_market_lifecycle",
)
PRIVATE_CHANNELS = ("fill", "orders", "market_positions", "order_group_updates", "communications")
ALL_MARKET_CHANNELS = ("ticker", "trade", "market_lifecycle_v2", "event_lifecycle", "multivariate_market_lifecycle")

# Error codes of ../shared/kalshi-api.md
E_UNABLE, E_PARAMS, E_CHANNELS, E_SIDS, E_UNKNOWN_CMD, E_ALREADY, E_UNKNOWN_SID = 1, 2, 3, 4, 5, 6, 7
E_UNKNOWN_CHANNEL, E_AUTH, E_CHANNEL, E_INVALID, E_ONE_SID, E_ACTION_UNSUPPORTED = 8, 9, 10, 11, 12, 13
E_TICKER_REQUIRED, E_ACTION_REQUIRED, E_MARKET_NOT_FOUND = 14, 15, 16
_ERR_TEXT = {
    1: "Unable to process message",
    2: "Params required",
    3: "Channels required",
    4: "Sids required",
    5: "Unknown command",
    6: "Already subscribed",
    7: "Unknown sid",
    8: "Unknown channel",
    9: "Authentication required",
    10: "Channel error",
    11: "Invalid parameter",
    12: "Exactly one sid required",
    13: "Unsupported action",
    14: "Market ticker required",
    15: "Action required",
    16: "Market not found",
}
QUEUE_LIMIT = 200_000  # frames queued for one slow client before it is disconnected
# Frames per socket write. A busy exchange packs many frames into one TCP segment; one send() per frame
# would cost the simulator (and the client's wake-ups) more than building the frames.
WRITE_BATCH = 256
WRITE_BUFFER_LIMIT = 1 << 20  # bytes in the transport before the writer waits: the rest stays queued


def text_frame(payload: bytes, first_byte: int = 0x81) -> bytes:
    """A final, unmasked, uncompressed text frame (RFC 6455 section 5.2): what a server sends. `first_byte`
    gives another FIN bit and opcode (a fragment)."""
    n = len(payload)
    if n < 126:
        return bytes((first_byte, n)) + payload
    if n < 65536:
        return bytes((first_byte, 0x7E)) + n.to_bytes(2, "big") + payload
    return bytes((first_byte, 0x7F)) + n.to_bytes(8, "big") + payload


def fragmented_text(payload: bytes, parts: int = 3) -> bytes:
    """One text message as `parts` frames: a text frame without FIN, continuations, the last with FIN."""
    cut = [len(payload) * k // parts for k in range(parts + 1)]
    pieces = [payload[a:b] for a, b in itertools.pairwise(cut)]
    heads = [0x01] + [0x00] * (parts - 2) + [0x80]
    return b"".join(text_frame(p, h) for p, h in zip(pieces, heads, strict=True))


class CommandError(Exception):
    def __init__(self, code: int, detail: str | None = None) -> None:
        super().__init__(detail or _ERR_TEXT[code])
        self.code = code


@dataclass(eq=False)
class Sub:
    session: Session
    sid: int
    channel: str
    tickers: set[str] | None  # None = all markets
    seq: int = 0


@dataclass
class Hub:
    """Routes each published message to every subscription that wants it."""

    by_ticker: dict[str, dict[str, set[Sub]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(set)))
    all_markets: dict[str, set[Sub]] = field(default_factory=lambda: defaultdict(set))
    seq_on_all_channels: bool = True
    sending_ts: bool = True  # sending_ts_ms on every data message and reply (Kalshi since 2026-10-01)
    frames_out: int = 0
    # The `lose_delta` / `lose_trade` faults: the next message of that type reaches no subscriber, and every
    # subscription that should have carried it skips its seq (Kalshi losing a message for everyone). Per type,
    # how many of its next messages to lose; `on_lost` gets each one's type and body.
    lose_next: dict[str, int] = field(default_factory=dict)
    on_lost: Callable[[str, str], None] | None = None

    def add(self, sub: Sub, tickers: set[str] | None = None) -> None:
        if sub.tickers is None:
            self.all_markets[sub.channel].add(sub)
        else:
            for t in tickers if tickers is not None else sub.tickers:
                self.by_ticker[sub.channel][t].add(sub)

    def remove(self, sub: Sub, tickers: set[str] | None = None) -> None:
        if sub.tickers is None:
            self.all_markets[sub.channel].discard(sub)
            return
        chan = self.by_ticker[sub.channel]
        for t in tickers if tickers is not None else sub.tickers:
            subs = chan.get(t)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del chan[t]

    def publish(self, channel: str, ticker: str, mtype: str, body: str) -> None:
        targets = self.by_ticker[channel].get(ticker)
        everyone = self.all_markets.get(channel)
        with_seq = channel == "orderbook_delta" or self.seq_on_all_channels
        if self.lose_next.get(mtype) and (targets or everyone):
            self.lose_next[mtype] -= 1
            if with_seq:
                for group in (targets, everyone):
                    for sub in group or ():
                        sub.seq += 1
            if self.on_lost is not None:
                self.on_lost(mtype, body)
            return
        for group in (targets, everyone):
            if not group:
                continue
            for sub in group:
                sub.session.send_data(sub, mtype, body, with_seq)
                self.frames_out += 1


@dataclass(eq=False)
class Session:
    ws: web.WebSocketResponse
    number: int  # 1-based accept order (fault schedules address connections by it)
    exchange: Exchange
    hub: Hub
    ledger: Ledger
    faults: list[WsFault]
    ping_interval_s: float
    channel_faults: Callable[[str], list[WsFault]] | None = None  # faults for the first channel subscribed
    # A command is carried out this long after it arrives (a real exchange answers in milliseconds while its
    # data keeps flowing), in arrival order.
    command_latency_s: float = 0.0
    # Time the exchange takes between carrying out two commands of one connection, while data flows on (0: back
    # to back). A client that unsubscribes and subscribes again misses what is published in between.
    command_spacing_s: float = 0.0
    subs: dict[int, Sub] = field(default_factory=dict)
    next_sid: int = 1
    transport: asyncio.BaseTransport | None = None  # for an abrupt close (no close frame)
    queue: deque[tuple[str, bool]] = field(default_factory=deque)  # (frame, is data)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    data_sent: int = 0
    started: float = field(default_factory=time.monotonic)
    silent_until: float = 0.0
    stalled_until: float = 0.0
    closed: bool = False
    _skip_next: bool = False
    _drop_next_delta: bool = False
    _held: str | None = None

    # ---- outgoing -----------------------------------------------------------------------------------
    def send_data(self, sub: Sub, mtype: str, body: str, with_seq: bool) -> None:
        if self.closed:
            return
        if self._drop_next_delta and mtype == "orderbook_delta":
            # the exchange loses the message before numbering it: the next one carries the next seq, no gap
            self._drop_next_delta = False
            self._fault_log("dropped_delta", body)
            return
        sent = f',"sending_ts_ms":{time.time_ns() // 1_000_000}' if self.hub.sending_ts else ""
        if with_seq:
            sub.seq += 1
            if self._skip_next:
                self._skip_next = False
                sub.seq += 1
            frame = f'{{"type":"{mtype}","sid":{sub.sid},"seq":{sub.seq},"msg":{body}{sent}}}'
        else:
            frame = f'{{"type":"{mtype}","sid":{sub.sid},"msg":{body}{sent}}}'
        self.queue.append((frame, True))
        if len(self.queue) > QUEUE_LIMIT:
            self._fault_log("slow_consumer", f"queue over {QUEUE_LIMIT} frames: disconnected")
            self.closed = True
            self.queue.clear()
        self.wake.set()

    def send_control(self, obj: dict[str, Any]) -> None:
        if self.hub.sending_ts and obj.get("type") in ("subscribed", "unsubscribed", "ok"):
            obj = {**obj, "sending_ts_ms": time.time_ns() // 1_000_000}
        self.queue.append((orjson.dumps(obj).decode(), False))
        self.wake.set()

    def _fault_log(self, kind: str, detail: str) -> None:
        self.ledger.record("fault", (time.time_ns() // 1000, f"ws:{self.number}", kind, detail))

    def _due_faults(self) -> list[WsFault]:
        due = []
        elapsed = time.monotonic() - self.started
        queued_data = sum(1 for _, is_data in itertools.islice(self.queue, 2) if is_data)
        for f in self.faults:
            if (f.after_messages is not None and self.data_sent >= f.after_messages) or (
                f.after_s is not None and elapsed >= f.after_s
            ):
                # frame-shaping faults wait until there are frames to shape
                need = 2 if f.kind == "reorder" else 1 if f.kind in ("duplicate", "truncated", "fragment") else 0
                if queued_data < need:
                    continue
                due.append(f)
        for f in due:
            self.faults.remove(f)
        return due

    def cut(self) -> None:
        """A TCP reset now, no close frame (the `close` fault, at a moment a test chooses)."""
        self._fault_log("close", f"cut after {self.data_sent} data messages")
        if isinstance(self.transport, asyncio.WriteTransport):
            self.transport.abort()
        self.closed = True
        self.wake.set()

    async def _apply(self, f: WsFault) -> str | None:
        """Apply one fault; returns 'close' when the connection must end."""
        self._fault_log(f.kind, f"after {self.data_sent} data messages")
        now = time.monotonic()
        if f.kind == "close":
            if isinstance(self.transport, asyncio.WriteTransport):
                self.transport.abort()
            return "close"
        if f.kind == "silence":
            self.silent_until = now + (f.duration_s or 1e9)
        elif f.kind == "stall":
            self.stalled_until = now + (f.duration_s or 2.0)
        elif f.kind == "skip_seq":
            # One seq number never arrives: the next queued data frame is dropped (a lost message,
            # as a gap means on Kalshi); with nothing queued the next frame's seq jumps instead.
            for k, (_frame, is_data) in enumerate(self.queue):
                if is_data:
                    del self.queue[k]
                    break
            else:
                self._skip_next = True
        elif f.kind == "drop_delta":
            self._drop_next_delta = True
        elif f.kind in ("lose_delta", "lose_trade"):
            mtype = "orderbook_delta" if f.kind == "lose_delta" else "trade"
            self.hub.lose_next[mtype] = self.hub.lose_next.get(mtype, 0) + 1
        elif f.kind == "malformed":
            await self.ws.send_str('{"type": "orderbook_delta", "sid": 1, "msg": {')
        elif f.kind == "unknown_type":
            await self.ws.send_str('{"type":"mystery_update","sid":1,"seq":1,"msg":{"hello":"world"}}')
        elif f.kind == "bad_utf8" and isinstance(self.transport, asyncio.WriteTransport):
            # A text frame that is not UTF-8: aiohttp will not send one, so the frame is built here.
            self.transport.write(text_frame(b'{"type":"orderbook_delta","sid":1,"msg":{"market_ticker":"\xff\xfe"}}'))
        elif f.kind == "duplicate" and self.queue:
            self.queue.appendleft(self.queue[0])
        elif f.kind == "reorder" and len(self.queue) >= 2:
            a = self.queue.popleft()
            b = self.queue.popleft()
            self.queue.appendleft(a)
            self.queue.appendleft(b)
        elif f.kind == "fragment" and self.queue:
            # The next message in three frames (RFC 6455 fragmentation), in its place in the stream.
            frame, is_data = self.queue.popleft()
            self.data_sent += is_data
            if self.ws.compress or not isinstance(self.transport, asyncio.WriteTransport):
                await self.ws.send_str(frame)  # aiohttp compresses whole messages only
            else:
                self.transport.write(fragmented_text(frame.encode()))
        elif f.kind == "truncated" and self.queue:
            frame, is_data = self.queue.popleft()
            self.queue.appendleft((frame[: len(frame) // 2], is_data))  # the message is lost
        return None

    async def writer(self) -> None:
        ws = self.ws
        while not self.closed:
            if not self.queue:
                self.wake.clear()
                if self.faults:  # a time-triggered fault must fire on a quiet connection too
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.2):
                            await self.wake.wait()
                else:
                    await self.wake.wait()
            now = time.monotonic()
            if now < self.stalled_until or now < self.silent_until:
                await asyncio.sleep(min(0.05, max(self.stalled_until, self.silent_until) - now))
                continue
            due = self._due_faults()
            for f in due:
                if await self._apply(f) == "close":
                    self.closed = True
                    return
            if due or not self.queue:
                continue  # re-check stall/silence and the queue the fault may have changed
            if ws.closed:
                return
            await self._send(self._take_batch())

    def _take_batch(self) -> list[str]:
        """Queued frames, at most WRITE_BATCH and never past the data message after which a fault is due."""
        sent = self.data_sent
        due_at = [n - sent for f in self.faults if (n := f.after_messages) is not None and n > sent]
        data_left = min(due_at, default=WRITE_BATCH)
        batch: list[str] = []
        queue = self.queue
        while queue and len(batch) < WRITE_BATCH and data_left > 0:
            frame, is_data = queue.popleft()
            batch.append(frame)
            data_left -= is_data
            self.data_sent += is_data
        return batch

    async def _send(self, frames: list[str]) -> None:
        transport = self.transport
        if self.ws.compress or not isinstance(transport, asyncio.WriteTransport):
            for frame in frames:  # permessage-deflate: aiohttp compresses, frame by frame
                await self.ws.send_str(frame)
            return
        if transport.is_closing():
            return
        transport.write(b"".join([text_frame(f.encode()) for f in frames]))  # one send() for the batch
        while transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT and not transport.is_closing():
            await asyncio.sleep(0.005)  # a slow client: let its frames wait in the queue, where QUEUE_LIMIT sees them

    async def pinger(self) -> None:
        while not self.closed and not self.ws.closed:
            await asyncio.sleep(self.ping_interval_s)
            if time.monotonic() >= self.silent_until:
                await self.ws.ping(b"heartbeat")

    # ---- incoming -----------------------------------------------------------------------------------
    async def run(self) -> None:
        tasks = [asyncio.create_task(self.writer()), asyncio.create_task(self.pinger())]
        commands: asyncio.Queue[tuple[float, str]] = asyncio.Queue()
        if self.command_latency_s > 0 or self.command_spacing_s > 0:
            tasks.append(asyncio.create_task(self.commander(commands)))
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.TEXT:
                    if self.command_latency_s > 0 or self.command_spacing_s > 0:
                        commands.put_nowait((time.monotonic() + self.command_latency_s, msg.data))
                    else:
                        self.handle_text(msg.data)
                elif msg.type == WSMsgType.PING:
                    if time.monotonic() >= self.silent_until:
                        await self.ws.pong(msg.data)
                elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
                if self.closed:
                    break
        finally:
            self.closed = True
            for sub in self.subs.values():
                self.hub.remove(sub)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if not self.ws.closed:
                await self.ws.close()

    async def commander(self, commands: asyncio.Queue[tuple[float, str]]) -> None:
        """Carries out commands when due, in arrival order; commands already due run back to back, with no
        data published between them (as a server that reads them from one buffer does)."""
        while not self.closed:
            due, text = await commands.get()
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            while not self.closed:
                self.handle_text(text)
                if commands.empty():
                    break
                due, text = commands.get_nowait()
                if self.command_spacing_s > 0:
                    await asyncio.sleep(self.command_spacing_s)
                if due > time.monotonic() + 0.001:  # arrived in the same millisecond: one batch
                    await asyncio.sleep(due - time.monotonic())

    def handle_text(self, text: str) -> None:
        cmd_id: Any = None
        try:
            try:
                cmd = orjson.loads(text)
            except orjson.JSONDecodeError:
                raise CommandError(E_UNABLE, "invalid JSON") from None
            if not isinstance(cmd, dict):
                raise CommandError(E_UNABLE)
            cmd_id = cmd.get("id")
            name = cmd.get("cmd")
            params = cmd.get("params")
            if name not in ("subscribe", "unsubscribe", "update_subscription"):
                raise CommandError(E_UNKNOWN_CMD)
            if not isinstance(params, dict):
                raise CommandError(E_PARAMS)
            getattr(self, f"_cmd_{name}")(cmd_id, params)
        except CommandError as exc:
            err: dict[str, Any] = {"type": "error", "msg": {"code": exc.code, "msg": str(exc)}}
            if cmd_id is not None:
                err = {"id": cmd_id, **err}
            self.send_control(err)

    def _tickers_param(self, params: dict[str, Any]) -> list[str] | None:
        if "market_tickers" in params:
            ts = params["market_tickers"]
            if not isinstance(ts, list) or not all(isinstance(t, str) for t in ts):
                raise CommandError(E_INVALID, "market_tickers must be a list of strings")
            return ts
        if "market_ticker" in params:
            t = params["market_ticker"]
            if not isinstance(t, str):
                raise CommandError(E_INVALID, "market_ticker must be a string")
            return [t]
        return None

    def _indices(self, tickers: list[str]) -> list[int]:
        out = []
        for t in tickers:
            i = self.exchange.universe.parse_market_ticker(t)
            if i is None:
                raise CommandError(E_MARKET_NOT_FOUND, f"Market not found: {t}")
            out.append(i)
        return out

    def _cmd_subscribe(self, cmd_id: Any, params: dict[str, Any]) -> None:
        channels = params.get("channels")
        if not channels:
            raise CommandError(E_CHANNELS)
        if not isinstance(channels, list):
            raise CommandError(E_INVALID, "channels must be a list")
        for c in channels:
            if c in PRIVATE_CHANNELS:
                raise CommandError(E_AUTH, f"Authentication required for channel {c}")
            if c not in CHANNELS:
                raise CommandError(E_UNKNOWN_CHANNEL, f"Unknown channel: {c}")
        tickers = self._tickers_param(params)
        if "orderbook_delta" in channels and not tickers:
            raise CommandError(E_TICKER_REQUIRED)
        indices = self._indices(tickers) if tickers else []
        for c in channels:
            for sub in self.subs.values():
                if sub.channel != c:
                    continue
                if sub.tickers is None or tickers is None or sub.tickers & set(tickers):
                    raise CommandError(E_ALREADY)
        if self.next_sid == 1 and self.channel_faults is not None:
            self.faults.extend(self.channel_faults(channels[0]))
        for c in channels:
            sub = Sub(self, self.next_sid, c, set(tickers) if tickers else None)
            self.next_sid += 1
            self.subs[sub.sid] = sub
            self.send_control({"id": cmd_id, "type": "subscribed", "msg": {"channel": c, "sid": sub.sid}})
            if c == "orderbook_delta":
                self._snapshots(sub, indices)
            self.hub.add(sub)

    def _snapshots(self, sub: Sub, indices: list[int]) -> None:
        ex = self.exchange
        for i in indices:
            st = ex.state(i)
            body = _wire.ws_snapshot(ex.universe.market_ticker(i), ex.universe.market_id(i), st.book, ex.opts.ws_fields)
            self.send_data(sub, "orderbook_snapshot", orjson.dumps(body).decode(), True)

    def _cmd_unsubscribe(self, cmd_id: Any, params: dict[str, Any]) -> None:
        sids = params.get("sids")
        if not sids:
            raise CommandError(E_SIDS)
        if not isinstance(sids, list) or not all(isinstance(s, int) for s in sids):
            raise CommandError(E_INVALID, "sids must be a list of integers")
        for sid in sids:
            if sid not in self.subs:
                raise CommandError(E_UNKNOWN_SID, f"Unknown sid: {sid}")
        for sid in sids:
            sub = self.subs.pop(sid)
            self.hub.remove(sub)
            self.send_control({"id": cmd_id, "sid": sid, "type": "unsubscribed"})

    def _ok(self, cmd_id: Any, sub: Sub) -> None:
        """update_subscription's reply: the sid's last sent seq (not consumed) and its markets now."""
        assert sub.tickers is not None
        msg = {"market_tickers": sorted(sub.tickers)}
        self.send_control({"id": cmd_id, "sid": sub.sid, "seq": sub.seq, "type": "ok", "msg": msg})

    def _cmd_update_subscription(self, cmd_id: Any, params: dict[str, Any]) -> None:
        sids = params.get("sids")
        if sids is None and "sid" in params:
            sids = [params["sid"]]
        if not sids:
            raise CommandError(E_SIDS)
        if not isinstance(sids, list) or len(sids) != 1:
            raise CommandError(E_ONE_SID)
        action = params.get("action")
        if not action:
            raise CommandError(E_ACTION_REQUIRED)
        if action not in ("add_markets", "delete_markets"):
            raise CommandError(E_ACTION_UNSUPPORTED)
        sub = self.subs.get(sids[0])
        if sub is None:
            raise CommandError(E_UNKNOWN_SID, f"Unknown sid: {sids[0]}")
        tickers = self._tickers_param(params)
        if not tickers:
            raise CommandError(E_TICKER_REQUIRED)
        if sub.tickers is None:
            raise CommandError(E_CHANNEL, "subscription covers all markets")
        indices = self._indices(tickers)
        if action == "add_markets":
            new = [t for t in tickers if t not in sub.tickers]
            new_idx = [i for t, i in zip(tickers, indices, strict=True) if t in new]
            sub.tickers.update(new)
            self._ok(cmd_id, sub)
            if sub.channel == "orderbook_delta":
                self._snapshots(sub, new_idx)
            self.hub.add(sub, set(new))
        else:
            gone = {t for t in tickers if t in sub.tickers}
            sub.tickers -= gone
            self.hub.remove(sub, gone)
            self._ok(cmd_id, sub)
