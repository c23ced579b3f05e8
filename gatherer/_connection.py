"""One WebSocket connection: signed handshake, keep-alive, reconnect with backoff, one subscription on one
channel, command/response correlation by id, per-sid seq checking, gap recording and resync.

The client is picows: its C parser hands each frame to `_Reader.on_ws_frame`, which hands it to `_handle`,
with no coroutine, future or queue per frame: half the CPU a frame of aiohttp's client and a sixth of
websockets' on the same frames (bench/bench_ws_client.py).

Every frame is parsed once (router.parse); a repeated seq is dropped before normalisation; a gap is
recorded as a SequenceGap record and, on orderbook connections, healed by a resync (fresh snapshots) unless
its frames come late within gap_grace_s. A resync is make-before-break: the new subscription opens on a
second socket while the old one goes on, and the two streams are joined at each market's cut
(gatherer._handover), so a resync costs this gatherer nothing but what was already lost.

A subscription's `sid` in the records is the gatherer's own number (`local_sid`), unique within the process
run: Kalshi numbers subscriptions per socket from 1, so its sids repeat across sockets and reconnects, and a
book (a snapshot and the deltas after it) must be told from another one by its sid.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import picows

from core import metrics
from core.config import WebSocketConfig
from core.records import LifecycleEvent, OrderbookSnapshot, Record, SequenceGap, SubscriptionEnd
from gatherer._backoff import full_jitter
from gatherer._commands import CommandFailed, Commands
from gatherer._conn_stats import ConnMetrics, ConnStats
from gatherer._handover import Handover
from gatherer._seq import LossWatch, SeqTracker
from gatherer._signing import Signer
from router import CONTROL_TYPES, CopyFilter, Frame, FrameError, FrameNormaliser, parse

# Multivariate markets' lifecycle has had its own channel since 2026-03-19 (market_lifecycle_v2 no longer
# carries them); event_lifecycle and event_fee_update arrive on both lifecycle subscriptions.
LIFECYCLE_CHANNELS = ("market_lifecycle_v2", "multivariate_market_lifecycle")
ORDERBOOK = "orderbook_delta"

log = logging.getLogger(__name__)
WS_SIGN_PATH = "/trade-api/ws/v2"
# How long a resync's new subscription may take to pass the old one's last frame before the old stream counts
# as complete anyway (a quiet subscription sends nothing to pass it with).
HANDOVER_QUIET_S = 1.0


class FrameSink(Protocol):
    def put_nowait(self, records: list[Record]) -> None: ...

    def put_one(self, record: Record) -> None: ...

    def dead_letter(self, raw: str | bytes, reason: str, detail: str, connection: str, received_us: int) -> None: ...


class ConnectionLost(Exception):
    """The socket ended with an error (a pong that never came, a protocol error, a reset)."""


E_MARKET_NOT_FOUND = 16

# The gatherer's own subscription numbers, unique within a gatherer across its processes and their workers: the
# process's epoch (a counter in Redis, incremented at each start) in the high bits, the worker in the next ones,
# a counter in the low ones (it wraps after 131,072 subscriptions, long after those books ended). Kalshi's sids
# start at 1 on every socket; a restarted process that numbered from 1 again made its books indistinguishable
# from the dead process's ones with the same numbers.
SID_COUNTER_BITS, SID_WORKER_BITS, SID_EPOCH_BITS = 17, 6, 8
MAX_WORKERS = (1 << SID_WORKER_BITS) - 1
_sid_high = 0
_sid_counter = itertools.count(1)


def set_local_sid_base(epoch: int, worker: int) -> None:
    """This process's subscription numbers: `worker` 0 is the gatherer's main process, 1.. its workers."""
    global _sid_high, _sid_counter
    if not 0 <= worker <= MAX_WORKERS:
        raise ValueError(f"worker {worker} outside 0..{MAX_WORKERS}")
    _sid_high = ((epoch % (1 << SID_EPOCH_BITS)) << (SID_COUNTER_BITS + SID_WORKER_BITS)) | (worker << SID_COUNTER_BITS)
    _sid_counter = itertools.count(1)


def next_local_sid() -> int:
    return _sid_high | (next(_sid_counter) % (1 << SID_COUNTER_BITS))


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass(eq=False)
class _Session:
    """One socket of a connection and the subscription it carries."""

    commands: Commands
    gaps: LossWatch = field(init=False)
    transport: Any = None  # picows.WSTransport
    reader: _Reader | None = None
    closed: asyncio.Future[Any] | None = None
    sid: int | None = None  # Kalshi's, on this socket
    local_sid: int = 0  # the gatherer's own (records, sequence gaps)
    seq: SeqTracker = field(default_factory=SeqTracker)
    # The earliest exchange time a message not yet received may carry: where a sequence gap found next dates
    # its blind stretch from. See advance().
    since_us: int = 0
    subscribe_sent_us: int = 0  # when the current subscribe left

    def advance(self, rec: Record) -> None:
        """A record arrived in sequence: a later message was published at or after its exchange time (or its
        receipt, if earlier). A snapshot carries no time and is a state as of some moment after the subscribe
        left, perhaps before its own receipt: it moves nothing. Dated by receipt, a snapshot received just
        after a delta of an already snapshotted market was published dated that delta's loss too late, outside
        every gap (issue 28)."""
        if isinstance(rec, OrderbookSnapshot):
            return
        received: int = getattr(rec, "received_us", self.since_us)
        ts: int | None = getattr(rec, "exchange_ts_us", None)
        self.since_us = received if ts is None else min(ts, received)


class WsConnection:
    def __init__(
        self,
        conn_id: str,
        url: str,
        channel: str,
        tickers: set[str] | None,
        gatherer_id: str,
        sink: FrameSink,
        cfg: WebSocketConfig,
        signer: Signer | None = None,
        on_lifecycle: Callable[[LifecycleEvent], None] | None = None,
        on_loss: Callable[[int, int], None] | None = None,
        copies: CopyFilter | None = None,
    ) -> None:
        self.conn_id, self.url, self.channel = conn_id, url, channel
        self.tickers = tickers  # desired markets; None = all markets
        self.gatherer_id = gatherer_id
        self.sink, self.cfg, self.signer = sink, cfg, signer
        self.on_lifecycle = on_lifecycle
        # (from_us, to_us) of a gap whose frames never came, on a channel that is not resubscribed (trades:
        # the gatherer refills the stretch from REST)
        self.on_loss = on_loss
        self.copies = copies  # shared with the twin connection of this channel: its copies are dropped
        self.normaliser = FrameNormaliser(gatherer_id)
        self.stats = ConnStats()
        self.metrics = ConnMetrics(conn_id, channel)
        self.connected = asyncio.Event()
        self.main = self._new_session()
        self._control: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._stopping = False
        self._handover: Handover | None = None  # a resync joining two subscriptions
        self._handover_old: _Session | None = None
        self._handover_new: _Session | None = None
        self._pushed = time.monotonic()  # when the counters last went to the metrics

    def __repr__(self) -> str:
        n = "all" if self.tickers is None else len(self.tickers)
        return f"WsConnection({self.conn_id}, {self.channel}, markets={n})"

    @property
    def sid(self) -> int | None:
        """Kalshi's sid of the current subscription (None while not subscribed)."""
        return self.main.sid

    def _new_session(self) -> _Session:
        s = _Session(Commands(self.conn_id, self.cfg.command_timeout_s, self.stats))
        s.gaps = LossWatch(self.cfg.gap_grace_s, lambda: s.seq, self._healed)  # gaps waiting for late frames
        return s

    # ---- public: market changes (orderbook connections) -----------------------------------------------------
    def add_markets(self, tickers: set[str]) -> None:
        assert self.tickers is not None
        new = tickers - self.tickers
        if new:
            self.tickers |= new
            self._control.put_nowait(("add_markets", new))

    def remove_markets(self, tickers: set[str]) -> None:
        assert self.tickers is not None
        gone = tickers & self.tickers
        if gone:
            self.tickers -= gone
            self._control.put_nowait(("delete_markets", gone))

    def request_resync(self, reason: str, sid: int | None = None) -> None:
        """Resubscribe (fresh snapshots); with `sid` (a local sid), only if that subscription is still the
        current one."""
        self._control.put_nowait(("resync", (sid, reason)))

    # ---- run ----------------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, subscribe and read until cancelled; reconnect with exponential backoff and full jitter."""
        attempt = 0
        while not self._stopping:
            started = time.monotonic()
            try:
                await self._serve()
            except asyncio.CancelledError:
                raise
            except (OSError, picows.WSError, ConnectionLost, CommandFailed, TimeoutError) as exc:
                log.warning("%s: connection lost: %s: %s", self.conn_id, type(exc).__name__, exc)
            if self._stopping:
                return
            self.stats.reconnects += 1
            metrics.WS_RECONNECTS.labels(self.conn_id).inc()
            attempt = 0 if time.monotonic() - started > 30 else attempt + 1
            delay = full_jitter(attempt, self.cfg.backoff_initial_s, self.cfg.backoff_max_s)
            await asyncio.sleep(delay)

    def stop(self) -> None:
        """No reconnect from now on; the owner cancels run(), which closes the socket."""
        self._stopping = True

    async def _open(self, s: _Session) -> None:
        """Connect a session's socket (signed handshake)."""
        headers = self.signer.headers("GET", WS_SIGN_PATH) if self.signer else None
        # A ping after `heartbeat` s without a frame, and its pong within heartbeat / 2: a silent peer is dead
        # within dead_after_s, never sooner than ping_interval_s allows.
        heartbeat = max(self.cfg.ping_interval_s, self.cfg.dead_after_s * 2 / 3)
        handle = self._handle
        reader = _Reader(lambda raw, received_us: handle(s, raw, received_us), self._push_metrics, s.commands.lost)
        async with asyncio.timeout(self.cfg.command_timeout_s):
            transport, _ = await picows.ws_connect(
                lambda: reader,
                self.url,
                extra_headers=headers,
                websocket_handshake_timeout=self.cfg.command_timeout_s,
                enable_auto_ping=True,
                auto_ping_idle_timeout=heartbeat,
                auto_ping_reply_timeout=heartbeat / 2,
                max_frame_size=MAX_FRAME_BYTES,
            )
        s.transport, s.reader = transport, reader
        s.closed = asyncio.ensure_future(transport.wait_disconnected())
        s.commands.send_text = lambda data: transport.send(_TEXT, data)

    async def _serve(self) -> None:
        s = self.main = self._new_session()
        control: asyncio.Task[None] | None = None
        try:
            await self._open(s)
            # Changes queued while disconnected are already in self.tickers: drop them.
            while not self._control.empty():
                self._control.get_nowait()
            await self._subscribe(s)
            self.connected.set()
            metrics.WS_CONNECTED.labels(self.conn_id).set(1)
            control = asyncio.create_task(self._control_loop(), name=f"{self.conn_id}:control")
            while True:
                main = self.main
                assert main.closed is not None
                done, _ = await asyncio.wait({main.closed, control}, return_when=asyncio.FIRST_COMPLETED)
                if control in done:
                    control.result()  # re-raise why the session ended
                if main.closed in done and self.main is main:
                    break  # the socket of the current subscription ended (a resync's swap is no end)
            assert self.main.reader is not None
            self.main.reader.raise_if_lost(self.main.transport)
        finally:
            if control is not None:
                control.cancel()
                await asyncio.gather(control, return_exceptions=True)
            self.connected.clear()
            metrics.WS_CONNECTED.labels(self.conn_id).set(0)
            self._abort_handover()
            await self._close(self.main, "stopped" if self._stopping else "disconnected")

    async def _close(self, s: _Session, reason: str | None) -> None:
        """Close a session's socket and forget its subscription; with a reason, its markets' books end here
        (SubscriptionEnd): a resync's old subscription ends without one, its successor carries them on."""
        s.commands.lost()
        s.gaps.flush()  # no late frame can come now (a book gap's rows are stored; its resubscribe is moot)
        if reason is not None and s.sid is not None and self.channel == ORDERBOOK and self.tickers:
            now, since = _now_us(), s.since_us
            self.sink.put_nowait(
                [
                    SubscriptionEnd(self.gatherer_id, now, self.conn_id, self.channel, s.local_sid, m, reason, since)
                    for m in sorted(self.tickers)
                ]
            )
        if s.local_sid:
            self.normaliser.forget_sid(s.local_sid)
        s.sid = None
        transport, closed = s.transport, s.closed
        if transport is None or closed is None:
            return
        if not transport.is_disconnected:
            transport.send_close(picows.WSCloseCode.GOING_AWAY)
            transport.disconnect()
        # A peer that does not take the close must not hold up a shutdown: after CLOSE_WAIT_S, an abort.
        if not (await asyncio.wait({closed}, timeout=CLOSE_WAIT_S))[0]:
            transport.disconnect(graceful=False)
            await asyncio.wait({closed}, timeout=CLOSE_WAIT_S)
        if closed.done() and not closed.cancelled():
            closed.exception()  # why it closed is known already (raised, or the close frame)

    # ---- commands -----------------------------------------------------------------------------------------
    async def _subscribe(self, s: _Session) -> None:
        params: dict[str, Any] = {"channels": [self.channel]}
        if self.tickers is not None:
            if not self.tickers:
                return  # nothing to capture yet; add_markets subscribes later
            params["market_tickers"] = sorted(self.tickers)
        # Its snapshots are states as of some moment after this: the earliest a loss on it can be dated.
        s.subscribe_sent_us = _now_us()
        await self._without_unknown_markets(s, "subscribe", params)

    async def _without_unknown_markets(self, s: _Session, cmd: str, params: dict[str, Any]) -> None:
        """Send the command; a market the exchange does not know (code 16, a market gone between the listing
        and the subscribe) is dropped from this connection, counted, and the rest sent again. Without this one
        vanished market failed the whole connection, which reconnected and failed again, for ever."""
        while True:
            try:
                await s.commands.call(cmd, params)
                return
            except CommandFailed as exc:
                wanted = params.get("market_tickers") or []
                gone = [t for t in wanted if exc.code == E_MARKET_NOT_FOUND and t in exc.detail]
                if not gone:
                    raise
                for t in gone:
                    log.warning("%s: exchange does not know market %s: dropped from this connection", self.conn_id, t)
                    metrics.WS_MARKETS_REFUSED.labels(self.channel).inc()
                    if self.tickers is not None:
                        self.tickers.discard(t)
                params = params | {"market_tickers": [t for t in wanted if t not in gone]}
                if not params["market_tickers"]:
                    return

    async def _control_loop(self) -> None:
        while True:
            action, arg = await self._control.get()
            s = self.main
            if action == "resync":
                sid, reason = arg
                if sid is None or sid == s.local_sid:
                    await self._resync(reason)
            elif s.sid is None:
                if self.tickers:
                    await self._subscribe(s)  # the first markets of an empty connection
            else:
                params = {"sids": [s.sid], "market_tickers": sorted(arg), "action": action}
                await self._without_unknown_markets(s, "update_subscription", params)
                if action == "delete_markets":  # they left capture: this gatherer's books of them end here
                    now = _now_us()
                    self.sink.put_nowait(
                        [
                            SubscriptionEnd(self.gatherer_id, now, self.conn_id, self.channel, s.local_sid, m,
                                            "released", now)
                            for m in sorted(arg)
                        ]
                    )  # fmt: skip

    async def _resync(self, reason: str) -> None:
        """Replace the subscription, make before break: fresh snapshots make the stored books exact again,
        and the old subscription's frames are kept until the new one has taken over each market
        (gatherer._handover), so nothing the exchange sent meanwhile is missed."""
        self.stats.resyncs += 1
        metrics.RESYNCS.labels(self.channel).inc()
        log.info("%s: resubscribing after %s", self.conn_id, reason)
        old = self.main
        if old.sid is None or not self.tickers:
            await self._subscribe(old)
            return
        h = self._handover = Handover(
            old.local_sid, 0, frozenset(self.tickers), self.sink.put_nowait,
            old_counts=self.normaliser.occurrences.counters(old.local_sid),
        )  # fmt: skip
        new = self._new_session()
        self._handover_old, self._handover_new = old, new
        timeout = self.cfg.command_timeout_s
        try:
            await self._open(new)
            await self._subscribe(new)
            h.new_sid = new.local_sid
            try:
                async with asyncio.timeout(timeout):
                    while h.snapshots_missing:
                        await asyncio.sleep(0.005)
            except TimeoutError:  # a market the exchange no longer serves: the old subscription's deltas stand
                log.warning("%s: no new snapshot of %d markets (e.g. %s)", self.conn_id, len(h.snapshots_missing),
                            min(h.snapshots_missing))  # fmt: skip
            # The old subscription's unsubscribe is answered after every frame it had to send: its stream is
            # then complete past every new snapshot's cut.
            await old.commands.call("unsubscribe", {"sids": [old.sid]})
            quiet = time.monotonic() + HANDOVER_QUIET_S
            while not h.new_has_passed_old() and time.monotonic() < quiet:
                await asyncio.sleep(0.005)
        except (OSError, picows.WSError, ConnectionLost, CommandFailed, TimeoutError) as exc:
            log.warning("%s: resync failed (%s: %s); the old subscription goes on", self.conn_id,
                        type(exc).__name__, exc)  # fmt: skip
            self._abort_handover()
            await self._close(new, "disconnected")
            self._control.put_nowait(("resync", (old.local_sid, reason)))  # after the control loop's next turn
            await asyncio.sleep(full_jitter(1, self.cfg.backoff_initial_s, self.cfg.backoff_max_s))
            return
        except BaseException:
            self._abort_handover()
            await self._close(new, "disconnected")
            raise
        stats = h.resolve()
        self._handover = self._handover_old = self._handover_new = None
        self.main = new
        log.info(
            "%s: resync done: %d markets, %d old deltas kept, %d held twice", self.conn_id, stats.markets,
            stats.old_kept, stats.old_dropped,
        )  # fmt: skip
        await self._close(old, None)

    def _abort_handover(self) -> None:
        if self._handover is not None:
            self._handover.abort()
        self._handover = self._handover_old = self._handover_new = None

    def _lost_book_frames(self, s: _Session, rows: list[Record], reason: str) -> None:
        """An orderbook gap whose frames did not come: its rows are stored and the subscription replaced
        (fresh snapshots). Until then its rows were held: production reads a 'skip' row as the end of this
        gatherer's book of each market, which a gap that heals must not be (its late frames write 'reorder'
        rows)."""
        self.sink.put_nowait(rows)
        self.request_resync(reason, s.local_sid)  # skipped if that subscription is already gone

    # ---- reading ------------------------------------------------------------------------------------------
    def _push_metrics(self) -> None:
        """Every 1024 frames: this connection's counters to the gatherer's metrics, at most once a second."""
        if time.monotonic() - self._pushed > 1.0:
            self.metrics.push(self.stats)
            self._pushed = time.monotonic()

    def _handle(self, s: _Session, raw: str | bytes, received_us: int) -> None:
        self.stats.frames += 1
        try:
            f = parse(raw)
        except FrameError as exc:
            self._dead(raw, exc, received_us)
            return
        by_type = self.stats.by_type
        by_type[f.type] = by_type.get(f.type, 0) + 1
        if f.type in CONTROL_TYPES and isinstance(f, Frame):  # (a control frame always is one)
            self._on_control(s, f)
            return
        if f.sid != s.sid:
            self.stats.stale += 1
            return
        in_order = True
        if f.seq is not None:
            expected = s.seq.next
            verdict = s.seq.check(f.seq)
            if verdict != "ok":
                if verdict == "repeat":
                    self.stats.repeats += 1
                    metrics.SEQUENCE_GAPS.labels(self.channel, "repeat").inc()
                    return
                self._gap(s, verdict, expected, f.seq, received_us)
                in_order = verdict == "gap"  # after a gap, this frame is where the sequence goes on
        f.sid = s.local_sid  # records carry the gatherer's own number of the subscription
        try:
            rec = self.normaliser.normalise(f, received_us)
        except FrameError as exc:
            self._dead(raw, exc, received_us)
            return
        if in_order:
            s.advance(rec)
        sent: int | None = getattr(rec, "sent_us", None)
        if sent is not None:
            self.stats.delayed(received_us - sent)
        if self.copies is not None and not self.copies.first(rec):
            self.stats.copies += 1  # the twin connection delivered it first
            return
        self.stats.records += 1
        h = self._handover
        if h is not None:  # a resync is joining two subscriptions: they hold what they deliver
            if s is self._handover_new:
                h.from_new(rec)
            else:
                h.from_old(rec)
            return
        self.sink.put_one(rec)
        if self.on_lifecycle is not None and isinstance(rec, LifecycleEvent):
            self.on_lifecycle(rec)

    def _gap(self, s: _Session, verdict: str, expected: int, got: int, received_us: int) -> None:
        """A skipped seq (gap: messages lost) or one arriving after its successors (late: kept)."""
        kind = "skip" if verdict == "gap" else "reorder"
        if verdict == "gap":
            self.stats.gaps += 1
        else:
            self.stats.late += 1
        metrics.SEQUENCE_GAPS.labels(self.channel, kind).inc()
        # On an orderbook connection the lost message could be any of its markets: a row per market, so
        # production can tell where every gatherer was blind at once (coverage gaps).
        markets = sorted(self.tickers) if self.channel == ORDERBOOK and self.tickers else [""]
        since = s.since_us
        rows: list[Record] = [
            SequenceGap(
                self.gatherer_id, received_us, self.conn_id, self.channel, s.local_sid, m, expected, got, kind, since
            )
            for m in markets
        ]
        if verdict == "gap" and self.channel == ORDERBOOK:
            # a resync unless the frames come late within gap_grace_s (a reorder, not a loss): each one costs
            # every market of the connection a snapshot
            reason = f"seq gap on sid {s.local_sid}: expected {expected}, got {got}"
            s.gaps.watch(s.seq, expected, got, lambda: self._lost_book_frames(s, rows, reason))
            return
        self.sink.put_nowait(rows)
        if verdict == "gap" and self.on_loss is not None:
            s.gaps.watch(s.seq, expected, got, lambda: self._report_loss(since, received_us))

    def _healed(self) -> None:
        self.stats.healed += 1  # every frame of the gap came late
        metrics.SEQUENCE_GAPS.labels(self.channel, "healed").inc()

    def _report_loss(self, since: int, detected: int) -> None:
        log.warning("%s: frames lost between %d and %d: refilled elsewhere", self.conn_id, since, detected)
        if self.on_loss is not None:
            self.on_loss(since, detected)

    def _dead(self, raw: str | bytes, exc: FrameError, received_us: int) -> None:
        self.stats.dead_letters += 1
        self.sink.dead_letter(raw, exc.reason, exc.detail, self.conn_id, received_us)

    def _on_control(self, s: _Session, f: Frame) -> None:
        """A reply: the parsed frame answers the command with its id (no second parse)."""
        if f.type == "subscribed" and isinstance(f.msg.get("sid"), int):
            s.sid = f.msg["sid"]
            s.local_sid = next_local_sid()
            s.seq = SeqTracker()
            s.since_us = s.subscribe_sent_us or _now_us()
        elif f.type == "unsubscribed" and f.sid is not None and f.sid == s.sid:
            s.sid = None  # the old subscription's frames end here
        s.commands.answer(f)


MAX_FRAME_BYTES = 1 << 30  # no practical limit: a snapshot of a deep book must never close the connection
CLOSE_WAIT_S = 2.0  # for the socket to close after our close frame, then again after an abort


class _Reader(picows.WSListener):
    """picows calls on_ws_frame for every frame, from its C parser, with no coroutine or queue between:
    a data frame goes straight to `handle`; a fragmented message is joined first."""

    def __init__(
        self, handle: Callable[[bytes, int], None], on_frames: Callable[[], None], on_lost: Callable[[], None]
    ) -> None:
        self.handle, self.on_frames, self.on_lost = handle, on_frames, on_lost
        self.parts: list[bytes] | None = None  # a fragmented message being joined
        self.close_code: int | None = None  # the peer's close frame, if one came
        self.frames = 0

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        kind = frame.msg_type
        if kind is _TEXT or kind is _BINARY:
            if self.parts is not None:
                raise picows.WSProtocolError(picows.WSCloseCode.PROTOCOL_ERROR, "a message inside a fragmented one")
            if frame.fin:
                self.handle(frame.get_payload_as_bytes(), time.time_ns() // 1000)
            else:
                self.parts = [frame.get_payload_as_bytes()]
        elif kind is _CONTINUATION:
            if self.parts is None:
                raise picows.WSProtocolError(picows.WSCloseCode.PROTOCOL_ERROR, "a continuation without a start")
            self.parts.append(frame.get_payload_as_bytes())
            if not frame.fin:
                return
            raw, self.parts = b"".join(self.parts), None
            self.handle(raw, time.time_ns() // 1000)
        elif kind is _CLOSE:
            self.close_code = frame.get_close_code().value
            transport.send_close(picows.WSCloseCode.OK)
            transport.disconnect()
            return
        else:
            return  # a ping (picows answers it) or a pong
        self.frames += 1
        if self.frames & 1023 == 0:
            self.on_frames()

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        self.on_lost()

    def raise_if_lost(self, transport: picows.WSTransport) -> None:
        """The session ended without an exception: the peer's close with 1000, 1001 or no code is an end;
        any other close, or none (a reset, a pong that never came), a lost connection."""
        if self.close_code is None:
            hs = transport.close_handshake
            sent = None if hs is None else hs.sent
            raise ConnectionLost("closed without a close frame" if sent is None else f"closed by us: {sent.reason}")
        if self.close_code not in (0, 1000, 1001):
            raise ConnectionLost(f"closed with code {self.close_code}")


_TEXT, _BINARY = picows.WSMsgType.TEXT, picows.WSMsgType.BINARY
_CONTINUATION, _CLOSE = picows.WSMsgType.CONTINUATION, picows.WSMsgType.CLOSE
