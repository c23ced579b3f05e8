"""A StreamWriter: one consumer of the `writers` group on one stream, into the gatherer database.

XREADGROUP a batch -> decode -> one transaction (binary COPY + INSERT ... ON CONFLICT) -> COMMIT -> XACK.
A crash anywhere before XACK re-delivers the batch, and the natural keys make the repeat change nothing.
Entries idle longer than claim_idle_ms (a dead consumer's, or our own after a failure) are taken over with
XAUTOCLAIM; an entry that fails max_deliveries times goes to the writer dead-letter stream with its error.
PostgreSQL down: back off and retry the same batch, acknowledging nothing.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg
import redis

from core import keys, metrics
from core.codec import PAYLOAD_FIELD, DecodeError, decode_batch
from core.config import WriterConfig
from core.records import Kind
from core.tables import SPECS
from writers._insert import BatchInserter

log = logging.getLogger(__name__)
# Kinds whose table takes the record's fields as they are: their rows stay the lists msgpack decoded, in the
# record's order, and COPY names the columns in that order (no record and no row built per row).
PLAIN_KINDS = frozenset(kind for kind, spec in SPECS.items() if spec.record_fields is not None)

Entry = tuple[bytes, dict[bytes, bytes]]


@dataclass
class WriterStats:
    batches: int = 0
    entries: int = 0
    rows_new: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rows_seen: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    claimed: int = 0
    dead_lettered: int = 0
    db_retries: int = 0


def _crash_hook() -> tuple[str, int] | None:
    """Test hook: KD_WRITER_CRASH=before_commit:N or after_commit:N kills this process with SIGKILL at
    the Nth batch, to prove what a real crash does. Never set in production."""
    v = os.environ.get("KD_WRITER_CRASH")
    if not v:
        return None
    point, _, n = v.partition(":")
    return point, int(n or "1")


class StreamWriter:
    def __init__(
        self,
        r: redis.Redis,
        dsn: str,
        stream: str,
        consumer: str,
        cfg: WriterConfig,
        dead_stream: str,
    ) -> None:
        self.r, self.dsn, self.stream, self.consumer, self.cfg = r, dsn, stream, consumer, cfg
        self.dead_stream = dead_stream
        self.group = keys.WRITER_GROUP
        self.stats = WriterStats()
        self._conn: psycopg.Connection[Any] | None = None
        self._crash = _crash_hook()
        self.inserter = BatchInserter()
        self._stop = False
        self._next_claim = 0.0  # monotonic time of the next XAUTOCLAIM (at once on start)
        self._linger = False  # the last read found fewer than batch_size entries: wait linger_ms before the next

    def stop(self) -> None:
        self._stop = True

    # ---- setup ---------------------------------------------------------------------------------------------
    def ensure_group(self) -> None:
        try:
            self.r.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _db(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            # autocommit: a batch of one kind that goes straight into its table is one COPY, atomic alone;
            # anything more runs inside `conn.transaction()`
            self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    # ---- one round -------------------------------------------------------------------------------------------
    def read(self) -> list[Entry]:
        """Claimed idle entries first, then new ones. An entry is claimable only after claim_idle_ms without
        an acknowledgement, so asking every tenth of that (not every batch: a round trip each) delays a
        takeover by at most a tenth. After a read that found fewer than batch_size entries, the next waits
        linger_ms first: the entries a transaction's fixed round trips carry pile up meanwhile, with one
        XREADGROUP a round (the first entry after a quiet spell is written at once)."""
        if self._linger and self.cfg.linger_ms and not self._stop:
            time.sleep(self.cfg.linger_ms / 1000)
        self._linger = False
        now = time.monotonic()
        if now >= self._next_claim:
            claimed: Any = self.r.xautoclaim(
                self.stream, self.group, self.consumer, self.cfg.claim_idle_ms, "0-0", count=self.cfg.batch_size
            )
            entries: list[Entry] = [e for e in claimed[1] if e[1] is not None]
            if entries:  # more may wait: ask again next round
                self.stats.claimed += len(entries)
                return entries
            self._next_claim = now + self.cfg.claim_idle_ms / 10_000
        entries = self._read_new(self.cfg.batch_size, self.cfg.block_ms)
        self._linger = 0 < len(entries) < self.cfg.batch_size
        return entries

    def _read_new(self, count: int, block_ms: int | None) -> list[Entry]:
        got: Any = self.r.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=count, block=block_ms)
        return list(got[0][1]) if got else []

    def process(self, entries: list[Entry]) -> None:
        """Write a batch and acknowledge it. Returns only when the batch is written or dead-lettered."""
        if not entries:
            return
        decoded: list[tuple[bytes, Kind, list[Any]]] = []
        for entry_id, fields in entries:
            try:
                kind, recs = decode_batch(fields[PAYLOAD_FIELD], PLAIN_KINDS)
                decoded.append((entry_id, kind, recs))
            except (DecodeError, KeyError, TypeError) as exc:
                self._poison(entry_id, fields, f"decode: {exc}")
        t0 = time.perf_counter()
        try:
            self._write_all(decoded)
        except psycopg.OperationalError:
            raise  # the database is unavailable: the caller retries the same batch
        except psycopg.Error as exc:
            log.warning("%s: batch failed (%s); writing entry by entry", self.stream, exc)
            self._write_one_by_one(decoded, entries)
            return
        self._ack([e for e, _, _ in decoded])
        metrics.WRITER_BATCHES.labels(self.stream).inc()
        metrics.WRITER_BATCH_SECONDS.labels(self.stream).observe(time.perf_counter() - t0)
        self.stats.batches += 1
        self.stats.entries += len(entries)
        log.debug("%s: %d entries in %.3fs", self.stream, len(entries), time.perf_counter() - t0)

    def _write_all(self, decoded: list[tuple[bytes, Kind, list[Any]]]) -> None:
        by_kind: dict[Kind, list[Any]] = defaultdict(list)
        for _, kind, recs in decoded:
            by_kind[kind].extend(recs)
        rows = {kind: self._rows(kind, recs) for kind, recs in by_kind.items()}
        conn = self._db()
        try:
            counts = self._write_alone(conn, rows)
            if counts is None:
                with conn.transaction():
                    counts = {}
                    for kind, kind_rows in rows.items():
                        spec = SPECS[kind]
                        new = self.inserter.insert(conn, spec, kind_rows, kind in PLAIN_KINDS)
                        counts[spec.table] = (new, len(kind_rows))
                    self._maybe_crash("before_commit")
        except psycopg.OperationalError:
            self._conn = None
            raise
        self._maybe_crash("after_commit")
        for table, (new, seen) in counts.items():
            self.stats.rows_new[table] += new
            self.stats.rows_seen[table] += seen
            metrics.WRITER_ROWS.labels(table, "new").inc(new)
            metrics.WRITER_ROWS.labels(table, "duplicate").inc(seen - new)

    @staticmethod
    def _rows(kind: Kind, recs: list[Any]) -> list[Any]:
        """The COPY rows of a kind: plain kinds' records as they are (lists or records, both in the record's
        field order), the others' built by their table's row function."""
        if kind in PLAIN_KINDS:
            return recs
        row = SPECS[kind].row
        return [row(r) for r in recs]

    def _write_alone(
        self, conn: psycopg.Connection[Any], rows: dict[Kind, list[Any]]
    ) -> dict[str, tuple[int, int]] | None:
        """A batch of one kind that its table takes straight: one COPY, committed alone (the common case: a
        stream carries one kind). None when it needs a transaction."""
        if len(rows) != 1:
            return None
        ((kind, kind_rows),) = rows.items()
        spec = SPECS[kind]
        self._maybe_crash("before_commit")  # before the COPY: nothing of the batch is committed
        new = self.inserter.insert_alone(conn, spec, kind_rows, kind in PLAIN_KINDS)
        return None if new is None else {spec.table: (new, len(kind_rows))}

    def _write_one_by_one(self, decoded: list[tuple[bytes, Kind, list[Any]]], entries: list[Entry]) -> None:
        raw = dict(entries)
        for item in decoded:
            try:
                self._write_all([item])
            except psycopg.OperationalError:
                raise
            except psycopg.Error as exc:
                log.warning("%s: entry %s failed: %s", self.stream, item[0].decode(), exc)
                self._poison(item[0], raw[item[0]], f"insert: {exc}")
                continue
            self._ack([item[0]])

    def _deliveries(self, entry_id: bytes) -> int:
        info: Any = self.r.xpending_range(self.stream, self.group, entry_id, entry_id, 1)
        return int(info[0]["times_delivered"]) if info else 0

    def _poison(self, entry_id: bytes, fields: dict[bytes, bytes], error: str) -> None:
        """An entry that cannot be written: to the dead-letter stream with its error, then acknowledged."""
        deliveries = self._deliveries(entry_id)
        if deliveries < self.cfg.max_deliveries:
            return  # left pending: XAUTOCLAIM delivers it again after claim_idle_ms
        dead: dict[Any, Any] = dict(fields)
        self.r.xadd(
            self.dead_stream,
            {**dead, b"error": error[:1000].encode(), b"stream": self.stream.encode(), b"entry_id": entry_id},
        )
        self._ack([entry_id])
        self.stats.dead_lettered += 1
        metrics.WRITER_DEAD.labels(self.stream).inc()
        log.error("%s: entry %s dead-lettered: %s", self.stream, entry_id.decode(), error)

    def _ack(self, ids: list[bytes]) -> None:
        if ids:
            self.r.xack(self.stream, self.group, *ids)

    def _maybe_crash(self, point: str) -> None:
        if self._crash is not None and self._crash[0] == point and self.stats.batches + 1 >= self._crash[1]:
            os.kill(os.getpid(), signal.SIGKILL)

    # ---- loop --------------------------------------------------------------------------------------------------
    def run_once(self) -> int:
        """One read-write-ack round; returns entries handled. PostgreSQL down: retry until it is back."""
        entries = self.read()
        backoff = 0.2
        while entries and not self._stop:
            try:
                self.process(entries)
                return len(entries)
            except psycopg.OperationalError as exc:
                self.stats.db_retries += 1
                metrics.WRITER_ERRORS.labels(self.stream).inc()
                log.warning("%s: database unavailable (%s); retrying in %.1fs", self.stream, exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        return 0

    def trim(self, now_ms: int | None = None) -> int:
        """XTRIM MINID below what every group has acknowledged, keeping the replay window."""
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        floor = now_ms - self.cfg.replay_window_s * 1000
        groups: Any = self.r.xinfo_groups(self.stream)
        safe = floor
        for g in groups:
            safe = min(safe, _entry_ms(g["last-delivered-id"]))
            low = self._oldest_pending_ms(g)
            if low is not None:
                safe = min(safe, low)
        trimmed: int = self.r.xtrim(self.stream, minid=f"{safe}-0", approximate=False)
        return trimmed

    def _oldest_pending_ms(self, group: Any) -> int | None:
        """Time part of the oldest entry the group (an XINFO GROUPS row) has delivered but not acknowledged."""
        if not group["pending"]:
            return None
        pend: Any = self.r.xpending(self.stream, group["name"])
        low = pend["min"]
        if low is None:  # acknowledged between XINFO GROUPS and XPENDING
            return None
        return _entry_ms(low)

    def backlog(self) -> tuple[int, float]:
        """(entries not yet acknowledged or delivered, age in seconds of the oldest pending entry)."""
        groups: Any = self.r.xinfo_groups(self.stream)
        g = next((g for g in groups if (g["name"] in (self.group, self.group.encode()))), None)
        if g is None:
            return 0, 0.0
        lag = int(g.get("lag") or 0) + int(g["pending"])
        age = 0.0
        low = self._oldest_pending_ms(g)
        if low is not None:
            age = max(0.0, time.time() - low / 1000)
        metrics.WRITER_LAG.labels(self.stream).set(age)
        metrics.STREAM_BACKLOG.labels(self.stream).set(lag)
        metrics.STREAM_LENGTH.labels(self.stream).set(int(self.r.xlen(self.stream)))
        return lag, age


def _entry_ms(entry_id: bytes | str) -> int:
    """The time part of a stream entry id ("1700000000000-3" -> 1700000000000)."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-")[0])
