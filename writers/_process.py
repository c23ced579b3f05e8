"""`kalshi-data write`: one writer process, a thread per stream (psycopg and redis are blocking here, and
each stream's batches are independent). SIGTERM/SIGINT: every thread finishes and acknowledges its
current batch, then the process exits."""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis

from core import keys
from core.config import GathererConfig
from core.db import dsn_from_config
from core.redisconn import redis_from_config
from writers._writer import StreamWriter

log = logging.getLogger(__name__)


def default_consumer() -> str:
    """Stable across restarts of the same unit on the same host, unique across hosts."""
    return f"{socket.gethostname()}-writer"


def make_writers(cfg: GathererConfig, streams: Sequence[str], consumer: str) -> list[StreamWriter]:
    r = redis_from_config(cfg.redis, socket_timeout=30)
    dsn = dsn_from_config(cfg.database, f"kalshi-data-writer-{consumer}")
    dead = keys.writer_deadletter(cfg.redis.key_prefix, cfg.gatherer_id)
    out = []
    for kind in streams:
        w = StreamWriter(r, dsn, keys.stream(cfg.redis.key_prefix, cfg.gatherer_id, kind), consumer, cfg.writer, dead)
        w.ensure_group()
        out.append(w)
    return out


def run_writers(writers: list[StreamWriter], stop: threading.Event, trim_interval_s: float) -> None:
    def loop(w: StreamWriter) -> None:
        last_trim = time.monotonic()
        while not stop.is_set():
            try:
                w.run_once()
                if time.monotonic() - last_trim > trim_interval_s:
                    w.trim()
                    w.backlog()
                    last_trim = time.monotonic()
            except redis.RedisError as exc:
                log.warning("%s: redis unavailable (%s); retrying", w.stream, exc)
                stop.wait(1.0)
        w.close()

    threads = [threading.Thread(target=loop, args=(w,), name=w.stream, daemon=True) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.5)
    for w in writers:
        w.stop()


def run_write_process(cfg: GathererConfig, streams: Sequence[str], consumer: str | None) -> int:
    from core.health import HealthServer

    consumer = consumer or default_consumer()
    writers = make_writers(cfg, streams, consumer)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        log.info("signal %d: finishing the current batches", signum)
        stop.set()
        for w in writers:
            w.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def ready() -> tuple[bool, dict[str, Any]]:
        backlog = {w.stream: w.backlog()[0] for w in writers}
        return not stop.is_set(), {"backlog": backlog}

    health = HealthServer(cfg.metrics.host, cfg.writer.metrics_port, ready) if cfg.writer.metrics_port else None
    if health is not None:
        health.start()
    log.info("writer %s: %s", consumer, ", ".join(w.stream for w in writers))
    run_writers(writers, stop, cfg.writer.trim_interval_s)
    if health is not None:
        health.stop()
    return 0
