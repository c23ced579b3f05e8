"""The deduplicator: RQ jobs that merge every gatherer database into production exactly once, and the
Parquet export of production. Owns cursors, locks, coverage gaps, the lake layout and its manifests.
Must not write to a gatherer database (sources are read only) nor talk to Kalshi or Redis streams.
"""

from dedup._coverage import CoverageResult, build_coverage, coverage_summary
from dedup._datasets import sort_order
from dedup._export import export_all, watermark_us
from dedup._jobs import QUEUE, status, sync_all
from dedup._lake import column_floor, lake_stats, make_target
from dedup._lake_read import LakeSource
from dedup._lake_schema import arrow_schema, restore
from dedup._lake_sql import connect as lake_connect
from dedup._lake_sql import lake_sql
from dedup._replay import BookSource, BookState, ProductionSource, book_at, rebuild_book, replay
from dedup._schedule import make_scheduler
from dedup._sync import SYNC_TABLES, SyncResult, sync_table
from dedup._worker import DedupWorker

__all__ = [
    "QUEUE",
    "SYNC_TABLES",
    "BookSource",
    "BookState",
    "CoverageResult",
    "DedupWorker",
    "LakeSource",
    "ProductionSource",
    "SyncResult",
    "arrow_schema",
    "book_at",
    "build_coverage",
    "column_floor",
    "coverage_summary",
    "export_all",
    "lake_connect",
    "lake_sql",
    "lake_stats",
    "make_scheduler",
    "make_target",
    "rebuild_book",
    "replay",
    "restore",
    "sort_order",
    "status",
    "sync_all",
    "sync_table",
    "watermark_us",
]
