"""When the dedup jobs run: RQ's own CronScheduler enqueues sync and export on queue `dedup` at the
config's intervals. It is started in-process from the config file, so the Redis password reaches it from
the config (the environment), never through a command line that every user of the host can read."""

from __future__ import annotations

import redis
from rq.cron import CronScheduler

from core.config import DeduplicatorConfig
from dedup._jobs import QUEUE, export_job, sync_job

SYNC_JOB_TIMEOUT_S = 3600
EXPORT_JOB_TIMEOUT_S = 6 * 3600


def make_scheduler(cfg: DeduplicatorConfig, config_path: str, connection: redis.Redis) -> CronScheduler:
    """The scheduler with both jobs registered; the jobs get the config path (no secret) as argument."""
    scheduler = CronScheduler(connection=connection)
    jobs = (
        (sync_job, "kd-sync", cfg.schedule.sync_interval_s, SYNC_JOB_TIMEOUT_S),
        (export_job, "kd-export", cfg.schedule.export_interval_s, EXPORT_JOB_TIMEOUT_S),
    )
    for job, name, interval_s, timeout_s in jobs:
        scheduler.register(job, QUEUE, args=(config_path,), interval=interval_s, name=name, job_timeout=timeout_s)
    return scheduler
