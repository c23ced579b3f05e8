"""Where normalised records go: the RecordSink protocol, and an in-memory sink for tests and tools."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from core.records import Record


class RecordSink(Protocol):
    async def put(self, records: Sequence[Record]) -> None:
        """Accept records for durable delivery. Returns once they are owned by the sink (queued)."""
        ...


class MemorySink:
    """Keeps every record it is given, in order."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.dead: list[tuple[str | bytes, str, str, str, int]] = []

    async def put(self, records: Sequence[Record]) -> None:
        self.records.extend(records)

    def put_nowait(self, records: Sequence[Record]) -> None:
        self.records.extend(records)

    def put_one(self, record: Record) -> None:
        self.records.append(record)

    def dead_letter(self, raw: str | bytes, reason: str, detail: str, connection: str, received_us: int) -> None:
        self.dead.append((raw, reason, detail, connection, received_us))

    def of(self, kind: type) -> list[Record]:
        return [r for r in self.records if type(r) is kind]
