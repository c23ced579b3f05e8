"""The history backfill beside the local stack: its config, `kalshi-data backfill` as a process of its own (so a
test can kill it -9), and what it reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core.config import BackfillConfig, KalshiConfig, RateLimitConfig, RedisConfig
from devstack._services import db_config, kill_group


class BackfillProcess:
    def __init__(self, run_dir: Path, prod_dsn: str, rest_url: str, redis_url: str, days: int) -> None:
        self.run_dir, self.days = run_dir, days
        self.config_path = run_dir / "backfill.yaml"
        self.log_path = run_dir / "backfill.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.config = BackfillConfig(
            production=db_config(prod_dsn),
            kalshi=KalshiConfig(rest_url=rest_url, rate_limit=RateLimitConfig(read_per_second=20, burst=5)),
            redis=RedisConfig(url=redis_url),
            settle_lag_s=30,
        )
        self.write_config()  # now: a config an earlier run left in run_dir names another simulator

    def write_config(self, **changes: Any) -> None:
        self.config = self.config.model_copy(update=changes)
        self.config_path.write_text(self.config.model_dump_json(indent=1))

    @property
    def since(self) -> str:
        """The first day of the simulator's past (UTC)."""
        return (datetime.now(UTC).date() - timedelta(days=self.days)).isoformat()

    def start(self, until: str | None = None) -> None:
        """`kalshi-data backfill --since <the past's first day> [--until DAY]` (no until: up to now)."""
        cmd = [sys.executable, "-m", "cli.main", "backfill", "--config", str(self.config_path), "--since", self.since]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*cmd, *(("--until", until) if until else ())],
                stdout=subprocess.PIPE,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )

    def kill(self) -> None:
        """kill -9, wherever it is."""
        if self.proc is not None:
            kill_group(self.proc)
            self.proc = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout_s: float = 600) -> dict[str, Any]:
        """Its report (the JSON line it prints at the end); raises when it failed."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        out, _ = self.proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        code, self.proc = self.proc.returncode, None
        lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
        if not lines:
            raise RuntimeError(f"backfill exited {code} without a report (see {self.log_path})")
        report: dict[str, Any] = json.loads(lines[-1])
        report["exit_code"] = code
        return report
