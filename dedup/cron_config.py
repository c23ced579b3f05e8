"""RQ cron config: `KD_DEDUP_CONFIG=deduplicator.yaml rq cron dedup.cron_config --url REDIS_URL`.

RQ's own scheduler enqueues the sync and export jobs on queue `dedup` at the intervals of the config file
(`kalshi-data dedup worker` starts it for you). No home-made cron loop.
"""

from __future__ import annotations

import os

from rq import cron

from core.config import DeduplicatorConfig, load_config
from dedup._jobs import QUEUE, export_job, sync_job

_path = os.environ.get("KD_DEDUP_CONFIG", "config/deduplicator.yaml")
_cfg = load_config(_path, DeduplicatorConfig)

cron.register(sync_job, QUEUE, args=(_path,), interval=_cfg.schedule.sync_interval_s, name="kd-sync",
              job_timeout=3600)  # fmt: skip
cron.register(export_job, QUEUE, args=(_path,), interval=_cfg.schedule.export_interval_s, name="kd-export",
              job_timeout=6 * 3600)  # fmt: skip
