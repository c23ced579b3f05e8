"""History: Kalshi's public past (markets of every status, trades, one-minute candlesticks) into production,
captured exactly once, resumable at checkpoints, within the REST budget the gatherers share.

Owns the backfill's plan, its windows and checkpoints, and the cutoff between the live and /historical/*
endpoints. Talks to Kalshi through the gatherer's REST client and writes production through the writers' insert
path; must not import dedup (production's merge), the simulator, devstack or the command line.
"""

from history._backfill import Backfill, BackfillReport, BackfillRequest, run_backfill
from history._candles import candle_row
from history._cutoff import Cutoff, CutoffWatch
from history._job import backfill_job, enqueue, request_of
from history._progress import Progress
from history._store import Checkpoint, Store

__all__ = [
    "Backfill",
    "BackfillReport",
    "BackfillRequest",
    "Checkpoint",
    "Cutoff",
    "CutoffWatch",
    "Progress",
    "Store",
    "backfill_job",
    "candle_row",
    "enqueue",
    "request_of",
    "run_backfill",
]
