"""Every Redis key name kalshi-data uses, in one place (after rq's keys.py).

Streams are per gatherer host: `{prefix}:{gatherer_id}:{kind}`. The router XADDs, the writers read them
through one consumer group per stream.
"""

from __future__ import annotations

STREAM_KINDS: tuple[str, ...] = ("trades", "deltas", "snapshots", "tickers", "lifecycle", "reference", "gaps")
WRITER_GROUP = "writers"


def stream(prefix: str, gatherer_id: str, kind: str) -> str:
    """The Redis stream one kind of record travels on, e.g. `kd:g1:deltas`."""
    if kind not in STREAM_KINDS and kind != "deadletter":
        raise ValueError(f"unknown stream kind {kind!r}")
    return f"{prefix}:{gatherer_id}:{kind}"


def deadletter(prefix: str, gatherer_id: str) -> str:
    """Raw frames the router could not parse or normalise, with the reason; never trimmed by age."""
    return f"{prefix}:{gatherer_id}:deadletter"


def writer_deadletter(prefix: str, gatherer_id: str) -> str:
    """Stream entries a writer could not decode or insert after max_deliveries attempts."""
    return f"{prefix}:{gatherer_id}:writer-deadletter"


def heartbeat(prefix: str, gatherer_id: str) -> str:
    """Unix microseconds up to which the gatherer was capturing trades (CaptureWatch); read after a restart."""
    return f"{prefix}:{gatherer_id}:capturing-until"


def trades_swept_until(prefix: str, gatherer_id: str) -> str:
    """Unix microseconds up to which the gatherer has fetched every trade from REST (TradeSweep)."""
    return f"{prefix}:{gatherer_id}:trades-swept-until"


def backfill_pending(prefix: str, gatherer_id: str) -> str:
    """Hash of capture outages whose trades are not yet refilled from REST (field: from_us)."""
    return f"{prefix}:{gatherer_id}:backfill-pending"


def capture_lock(prefix: str, gatherer_id: str) -> str:
    """Held by the one process capturing as this gatherer id (gatherer._lock.CaptureLock): its token, with a TTL."""
    return f"{prefix}:{gatherer_id}:capture-lock"


def process_epoch(prefix: str, gatherer_id: str) -> str:
    """Incremented by each gatherer process that starts: the high bits of its subscription numbers."""
    return f"{prefix}:{gatherer_id}:process-epoch"


def ratelimit(prefix: str, api_key_id: str) -> str:
    """The REST token bucket every process reading with one API key shares (gatherer._ratelimit): a hash of
    tokens and the Redis time they were counted at. Not per gatherer: Kalshi's budget is the key's."""
    return f"{prefix}:ratelimit:{api_key_id}"
