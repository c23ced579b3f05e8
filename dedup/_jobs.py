"""The RQ jobs of queue `dedup`, and what they share: open the databases from deduplicator.yaml, merge
every (source, table), audit each source's books against its REST snapshots, derive coverage gaps, report
status. A source that is down is skipped (logged and
counted) and resumes from its cursor when it returns."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import asdict
from typing import Any

import psycopg

from core import metrics
from core.config import DeduplicatorConfig, load_config
from core.db import dsn_from_config, redact_dsn
from dedup._audit import audit_source
from dedup._coverage import OPEN_END, CoverageResult, build_coverage
from dedup._gaps import derive_trade_gaps
from dedup._sync import SYNC_TABLES, SyncResult, job_lock, sync_table
from writers import BatchInserter

log = logging.getLogger(__name__)
QUEUE = "dedup"


def sync_all(cfg: DeduplicatorConfig, max_batches: int | None = None) -> dict[str, Any]:
    """One round: every table of every reachable source, then coverage gaps."""
    prod_dsn = dsn_from_config(cfg.production, "kalshi-data-dedup")
    results: list[SyncResult] = []
    down: dict[str, str] = {}
    audits: dict[str, dict[str, int]] = {}
    with psycopg.connect(prod_dsn) as prod:
        inserter = BatchInserter()
        for src in cfg.sources:
            dsn = dsn_from_config(src.database, "kalshi-data-dedup")
            try:
                source = psycopg.connect(dsn, connect_timeout=5)
            except psycopg.OperationalError as exc:
                down[src.gatherer_id] = str(exc).splitlines()[0]
                log.warning(
                    "source %s (%s) unreachable, skipped: %s", src.gatherer_id, redact_dsn(dsn), down[src.gatherer_id]
                )
                continue
            with source:
                source.execute("SET default_transaction_read_only = on")
                for table in SYNC_TABLES:
                    try:
                        results.append(
                            sync_table(src.gatherer_id, source, prod, table, cfg.batch_size, max_batches, inserter)
                        )
                    except psycopg.OperationalError as exc:
                        down[src.gatherer_id] = str(exc).splitlines()[0]
                        log.warning("source %s failed mid-sync: %s", src.gatherer_id, exc)
                        break
                if cfg.audit.enabled and src.gatherer_id not in down:
                    try:
                        with job_lock(prod, src.gatherer_id, "book_audits") as mine:  # one audit of a source at a time
                            if mine:
                                audits[src.gatherer_id] = dict(
                                    audit_source(
                                        src.gatherer_id, source, prod, int(cfg.audit.window_s * 1e6),
                                        cfg.audit.max_snapshots_per_run,
                                    )
                                )  # fmt: skip
                    except psycopg.OperationalError as exc:
                        down[src.gatherer_id] = str(exc).splitlines()[0]
                        log.warning("source %s failed in the book audit: %s", src.gatherer_id, exc)
        live = [s.gatherer_id for s in cfg.sources if s.gatherer_id not in down]
        coverage = coverage_round(cfg, prod, down)
        trade_gaps = derive_trade_gaps(prod, [s.gatherer_id for s in cfg.sources]) if not down else 0
        update_lag_metrics(prod)
    return {
        "results": [asdict(r) for r in results],
        "down": down,
        "live": live,
        "coverage": asdict(coverage),
        "trade_gaps_added": trade_gaps,
        "book_audits": audits,
    }


def coverage_round(cfg: DeduplicatorConfig, prod: psycopg.Connection[Any], down: dict[str, str]) -> CoverageResult:
    """The coverage record, with a read-only connection to every source that answers (the gap checks read the
    gatherers' own books); a source that does not is None, and its checks wait."""
    with contextlib.ExitStack() as stack:
        conns: dict[str, psycopg.Connection[Any] | None] = {}
        for src in cfg.sources:
            conns[src.gatherer_id] = None
            if src.gatherer_id in down:
                continue
            try:
                conn = psycopg.connect(dsn_from_config(src.database, "kalshi-data-dedup"), connect_timeout=5)
            except psycopg.OperationalError:
                continue
            conn.execute("SET default_transaction_read_only = on")
            conns[src.gatherer_id] = stack.enter_context(conn)
        return build_coverage(prod, conns, int(cfg.coverage.dead_after_s * 1e6))


def update_lag_metrics(prod: psycopg.Connection[Any]) -> None:
    now = time.time_ns() // 1000
    for source, table, caught in prod.execute("SELECT source, table_name, caught_up_us FROM sync_cursors"):
        if caught is not None:
            metrics.DEDUP_LAG.labels(source, table).set((now - caught) / 1e6)
    counts = {
        (channel, state): n
        for channel, state, n in prod.execute(
            "SELECT channel, CASE WHEN channel = 'trade' AND trades_healed_us IS NOT NULL THEN 'healed' "
            "WHEN channel = 'orderbook_delta' AND verified_complete THEN 'verified' "
            "WHEN to_us >= %s THEN 'open' ELSE 'unverified' END, count(*) FROM coverage_gaps GROUP BY 1, 2",
            (OPEN_END,),
        )
    }
    # every pair, zero included: a trade gap that healed must take 'open' back down, not leave its last value
    states = {"orderbook_delta": ("open", "unverified", "verified"), "trade": ("open", "healed")}
    for channel, names in states.items():
        for state in names:
            metrics.COVERAGE_GAPS.labels(channel, state).set(counts.get((channel, state), 0))
    prod.rollback()


def status(cfg: DeduplicatorConfig) -> list[dict[str, Any]]:
    """Lag per source and table: rows synced and seconds since the cursor last caught up."""
    now = time.time_ns() // 1000
    with psycopg.connect(dsn_from_config(cfg.production, "kalshi-data-dedup")) as prod:
        rows = prod.execute(
            "SELECT source, table_name, rows_synced, caught_up_us, updated_at FROM sync_cursors ORDER BY 1, 2"
        ).fetchall()
    return [
        {
            "source": s,
            "table": t,
            "rows_synced": n,
            "lag_s": None if c is None else round((now - c) / 1e6, 1),
            "updated_at": u.isoformat(),
        }
        for s, t, n, c, u in rows
    ]


# ---- RQ entry points: take the config path, so a job is a plain, serialisable call ---------------------------


def sync_job(config_path: str) -> dict[str, Any]:
    return sync_all(load_config(config_path, DeduplicatorConfig))


def export_job(config_path: str) -> dict[str, Any]:
    from dedup._export import export_all

    return export_all(load_config(config_path, DeduplicatorConfig))
