"""The backfill as an RQ job on the dedup workers' queue: `kalshi-data backfill --enqueue` puts it there, any
`kalshi-data dedup worker` runs it (long: its timeout is a day; killed, it resumes at its checkpoints)."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

from core.config import BackfillConfig, load_config
from core.conversions import iso_to_us
from core.redisconn import redis_from_config
from history._backfill import BackfillRequest, run_backfill
from history._progress import Progress

QUEUE = "dedup"
JOB_TIMEOUT_S = 86_400


def request_of(since: date, until: date | None, series: list[str] | tuple[str, ...]) -> BackfillRequest:
    """Whole UTC days: [since 00:00, until + 1 day 00:00); no until: up to now."""
    lo = iso_to_us(f"{since.isoformat()}T00:00:00Z")
    hi = iso_to_us(f"{until.isoformat()}T00:00:00Z") + 86_400_000_000 if until else 2**62
    return BackfillRequest(lo, hi, tuple(series))


def backfill_job(config_path: str, since: str, until: str | None, series: list[str]) -> dict[str, Any]:
    """What a dedup worker runs: the config is read on the worker (secrets never travel through Redis)."""
    cfg = load_config(config_path, BackfillConfig)
    req = request_of(date.fromisoformat(since), date.fromisoformat(until) if until else None, series)
    return asyncio.run(run_backfill(cfg, req, Progress(bar=False))).as_dict()


def enqueue(config_path: str, since: str, until: str | None, series: list[str]) -> str:
    from rq import Queue

    cfg = load_config(config_path, BackfillConfig)
    q = Queue(QUEUE, connection=redis_from_config(cfg.redis))
    job = q.enqueue(backfill_job, config_path, since, until, series, job_timeout=JOB_TIMEOUT_S, result_ttl=7 * 86_400)
    return str(job.id)
