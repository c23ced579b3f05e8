"""The Redis sink: batches records per kind into msgpack stream entries and XADDs them pipelined.

Never drops. When Redis is slow or down, records wait in memory; past `memory_limit` records, encoded
entries spill to append-only files under `spill_dir`, replayed (oldest first) when Redis answers again.
A crash between replaying an entry and deleting its file can add that entry twice: the writers' natural
keys make that harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgpack
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core import keys, metrics
from core.codec import PAYLOAD_FIELD, encode_batch
from core.records import KIND_OF, Kind, Record
from core.redisconn import ASYNC_OP_TIMEOUT_S, redis_deadline

log = logging.getLogger(__name__)

STREAM_OF_KIND: dict[Kind, str] = {
    Kind.MARKET: "reference",
    Kind.EVENT: "reference",
    Kind.SERIES: "reference",
    Kind.TRADE: "trades",
    Kind.ORDERBOOK_DELTA: "deltas",
    Kind.ORDERBOOK_SNAPSHOT: "snapshots",
    Kind.TICKER: "tickers",
    Kind.LIFECYCLE: "lifecycle",
    Kind.SEQUENCE_GAP: "gaps",
    Kind.EVENT_LIFECYCLE: "lifecycle",
    Kind.EVENT_FEE_UPDATE: "lifecycle",
    Kind.CAPTURE_OUTAGE: "gaps",
    # the coverage evidence travels with the sequence gaps, in order: a beat follows the ends before it
    Kind.SUBSCRIPTION_END: "gaps",
    Kind.CAPTURE_BEAT: "gaps",
}
_LEN = struct.Struct(">I")

Entry = tuple[str, dict[Any, Any]]  # (stream, fields)


class RedisSink:
    def __init__(
        self,
        redis: aioredis.Redis,
        prefix: str,
        gatherer_id: str,
        spill_dir: Path,
        *,
        records_per_entry: int = 500,
        flush_interval_s: float = 0.005,
        memory_limit: int = 200_000,
        op_timeout_s: float = ASYNC_OP_TIMEOUT_S,
    ) -> None:
        self.redis = redis
        self.op_timeout_s = op_timeout_s  # a pipeline unanswered this long counts as Redis down
        self.prefix, self.gatherer_id = prefix, gatherer_id
        self.spill_dir = spill_dir
        self.records_per_entry = records_per_entry
        self.flush_interval_s = flush_interval_s
        self.memory_limit = memory_limit
        self._buffers: dict[Kind, list[Record]] = defaultdict(list)
        self._dead: list[Entry] = []
        self._buffered = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._stop_event = asyncio.Event()
        self.redis_up = True
        self.healthy = True  # False from an unexpected flush failure until a flush succeeds (/readyz)
        self.entries_written = 0
        self.records_written = 0
        self.spilled_entries = 0
        self.replayed_entries = 0
        self._spill_seq = 0
        self._pending: list[Entry] = []  # taken from the buffers, not yet written (Redis down)
        self._pending_records = 0
        spill_dir.mkdir(parents=True, exist_ok=True)
        # Whether spill files wait for replay: those an earlier run left, then the ones this sink writes. Kept
        # here rather than listing the directory on every flush (20 a second: 40 % of the busy samples of a
        # gatherer main process at 20,000 events/s, py-spy).
        self._spill_waiting = bool(self._spill_files())

    # ---- intake (never blocks, never raises) -----------------------------------------------------------------
    def put_nowait(self, records: Sequence[Record]) -> None:
        for r in records:
            self._buffers[KIND_OF[type(r)]].append(r)
        self._buffered += len(records)
        if self._buffered >= self.records_per_entry:
            self._wake.set()

    def put_one(self, record: Record) -> None:
        """The hot path: one record from a connection."""
        buf = self._buffers[KIND_OF[type(record)]]
        buf.append(record)
        self._buffered += 1
        if self._buffered >= self.records_per_entry:
            self._wake.set()

    async def put(self, records: Sequence[Record]) -> None:
        self.put_nowait(records)

    def dead_letter(self, raw: str | bytes, reason: str, detail: str, connection: str, received_us: int) -> None:
        metrics.DEAD_LETTERS.labels(reason).inc()
        self._dead_entry(raw if isinstance(raw, bytes) else raw.encode(), reason, detail, connection, received_us)
        self._wake.set()

    def _dead_entry(self, raw: bytes, reason: str, detail: str, connection: str, received_us: int) -> None:
        self._dead.append(
            (
                keys.deadletter(self.prefix, self.gatherer_id),
                {
                    "raw": raw,
                    "reason": reason,
                    "detail": detail[:500],
                    "connection": connection,
                    "received_us": str(received_us),
                },
            )
        )

    @property
    def buffered(self) -> int:
        return self._buffered + len(self._dead) + self._pending_records

    # ---- flushing ----------------------------------------------------------------------------------------------
    def _take_entries(self) -> list[Entry]:
        entries: list[Entry] = self._dead
        self._dead = []
        for kind, recs in self._buffers.items():
            if not recs:
                continue
            stream = keys.stream(self.prefix, self.gatherer_id, STREAM_OF_KIND[kind])
            for i in range(0, len(recs), self.records_per_entry):
                entries += self._encode(stream, recs[i : i + self.records_per_entry])
            metrics.RECORDS_ROUTED.labels(kind.name.lower()).inc(len(recs))
        self._buffers = defaultdict(list)
        self._buffered = 0
        return entries

    def _encode(self, stream: str, recs: list[Record]) -> list[Entry]:
        """One entry for the batch; a record msgpack cannot encode (the router's range checks should stop
        it first) becomes a dead letter of its own, and the rest of the batch goes on: never a stuck flush."""
        try:
            return [(stream, {PAYLOAD_FIELD: encode_batch(recs)})]
        except (OverflowError, TypeError, ValueError):
            good: list[Record] = []
            for r in recs:
                try:
                    encode_batch([r])
                except (OverflowError, TypeError, ValueError) as exc:
                    metrics.DEAD_LETTERS.labels("unencodable").inc()
                    self._dead_entry(
                        repr(r).encode(),
                        "unencodable",
                        f"{type(exc).__name__}: {exc}",
                        "sink",
                        r[1] if isinstance(r[1], int) else 0,
                    )
                else:
                    good.append(r)
            dead, self._dead = self._dead, []
            return dead + ([(stream, {PAYLOAD_FIELD: encode_batch(good)})] if good else [])

    async def _xadd(self, entries: list[Entry]) -> None:
        t0 = time.perf_counter()
        async with redis_deadline(self.op_timeout_s), self.redis.pipeline(transaction=False) as pipe:
            for stream, fields in entries:
                pipe.xadd(stream, fields)
            await pipe.execute()
        metrics.XADD_SECONDS.observe(time.perf_counter() - t0)

    async def flush(self) -> bool:
        """Write everything buffered (spill first). False when Redis is down (entries kept or spilled)."""
        if self._spill_waiting and not await self._replay():
            self._spill_overflow()
            return False
        n = self._buffered
        metrics.SINK_BUFFERED.set(n + self._pending_records)
        if not self.redis_up:
            st = os.statvfs(self.spill_dir)
            metrics.SPILL_DISK_FREE.set(st.f_bavail * st.f_frsize)
        self._pending += self._take_entries()
        self._pending_records += n
        if not self._pending:
            return True
        try:
            await self._xadd(self._pending)
        except (RedisError, OSError) as exc:
            self._set_up(False, exc)
            self._spill_overflow()
            return False
        self._set_up(True)
        self.entries_written += len(self._pending)
        self.records_written += self._pending_records
        self._pending, self._pending_records = [], 0
        return True

    def _set_up(self, up: bool, exc: BaseException | None = None) -> None:
        if up != self.redis_up:
            if up:
                log.warning("redis answers again; replaying what waited")
            else:
                log.error(
                    "redis write failed (%s); keeping records in memory, spilling past %d", exc, self.memory_limit
                )
        self.redis_up = up
        metrics.REDIS_UP.set(1 if up else 0)

    # ---- disk spill --------------------------------------------------------------------------------------------
    def _spill_files(self) -> list[Path]:
        return sorted(self.spill_dir.glob("spill-*.bin"))

    def _spill_overflow(self) -> None:
        """Past the memory limit, move pending entries to a new spill file (fsynced)."""
        if self._pending_records + self._buffered < self.memory_limit and not self._closing:
            return
        pending = self._pending + self._take_entries()
        if not pending:
            return
        self._spill_seq += 1
        path = self.spill_dir / f"spill-{time.time_ns():020d}-{self._spill_seq:06d}.bin"
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            for stream, fields in pending:
                blob = msgpack.packb([stream, {_s(k): v for k, v in fields.items()}], use_bin_type=True)
                f.write(_LEN.pack(len(blob)) + blob)
            f.flush()
            os.fsync(f.fileno())
        tmp.rename(path)
        self._spill_waiting = True
        metrics.SINK_SPILLED_BYTES.inc(path.stat().st_size)
        self.spilled_entries += len(pending)
        metrics.SINK_SPILLED.inc(len(pending))
        self._pending, self._pending_records = [], 0
        metrics.SINK_BUFFERED.set(0)
        log.warning("spilled %d stream entries to %s", len(pending), path.name)

    async def _replay(self) -> bool:
        for path in self._spill_files():
            entries = list(read_spill(path))
            try:
                for i in range(0, len(entries), 1000):
                    await self._xadd(entries[i : i + 1000])
            except (RedisError, OSError) as exc:
                self._set_up(False, exc)
                return False
            path.unlink()
            self.replayed_entries += len(entries)
            self.entries_written += len(entries)
            metrics.SINK_REPLAYED.inc(len(entries))
        self._spill_waiting = False
        self._set_up(True)
        return True

    # ---- lifecycle ---------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask run() to return after its current flush. Shutdown uses this, not a cancel: a cancel cuts a flush
        short (its entries are sent again, as copies), and until the client lost no cancels
        (core.redisconn.async_redis_from_config) a lost one left the loop running and a shutdown hung."""
        self._stop_event.set()
        self._wake.set()

    async def run(self) -> None:
        backoff = 0.1
        while not self._stop_event.is_set():
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that lands as the wait
            # ends, and this loop then never stops (a gatherer's shutdown hung on it)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                ok = await self.flush()
            except Exception:  # anything unforeseen would end this task and silently stop capture
                log.exception("sink flush failed unexpectedly; retrying")
                metrics.TASK_RESTARTS.labels("sink").inc()
                self.healthy, ok = False, False
            else:
                self.healthy = self.healthy or ok
            if ok:
                backoff = 0.1
            elif not self._stop_event.is_set():
                with contextlib.suppress(TimeoutError):  # Redis down: back off, but return at once on stop()
                    async with asyncio.timeout(backoff):
                        await self._stop_event.wait()
                backoff = min(backoff * 2, 2.0)

    async def stop_task(self, task: asyncio.Task[None], grace_s: float = 10.0) -> None:
        """stop(), then wait for run() to return; a cancel only if it has not within grace_s."""
        self.stop()
        done, _ = await asyncio.wait({task}, timeout=grace_s)
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def close(self, timeout_s: float = 5.0) -> None:
        """Drain to Redis within timeout_s; whatever could not be written is spilled to disk."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await self.flush() and not self.buffered and not self._spill_waiting:
                return
            await asyncio.sleep(0.1)
        self._closing = True
        self._spill_overflow()


def _s(k: bytes | str) -> str:
    return k.decode() if isinstance(k, bytes) else k


def read_spill(path: Path) -> list[Entry]:
    out: list[Entry] = []
    data = path.read_bytes()
    pos = 0
    while pos + 4 <= len(data):
        (n,) = _LEN.unpack_from(data, pos)
        if pos + 4 + n > len(data):
            break  # a torn tail from a crash mid-write (the rename makes this rare): ignore it
        stream, fields = msgpack.unpackb(data[pos + 4 : pos + 4 + n], raw=False)
        out.append((stream, fields))
        pos += 4 + n
    return out
