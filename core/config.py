"""The one config loader: YAML files, ${VAR} / ${VAR:-default} from the environment, pydantic models.

Every default lives in the models below. Errors name the file, the key path and what was expected, e.g.
`gatherer.yaml: database.port: expected integer, got "abc"`. Secret values never appear in errors or in
`redacted()` output.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
SECRET_MARK = "********"


class ConfigError(Exception):
    """A config file that cannot be used. The message names the file and key path."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(5432, ge=1, le=65535)
    dbname: str = "kalshi"
    user: str = "postgres"
    password: SecretStr | None = None
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    sslrootcert: str | None = None
    pool_min: int = Field(1, ge=0)
    pool_max: int = Field(8, ge=1)
    connect_timeout_s: int = Field(10, ge=1)


class RedisConfig(_Model):
    url: str = "redis://127.0.0.1:6379/0"
    password: SecretStr | None = None
    # Every key of this deployment starts with the prefix (several gatherers may share one Redis).
    key_prefix: str = "kd"


class RateLimitConfig(_Model):
    # Kalshi tiers (unconfirmed numbers): basic 20/10, advanced 30/30, premier 100/100, prime 400/400.
    read_per_second: float = Field(20.0, gt=0)
    write_per_second: float = Field(10.0, gt=0)
    burst: int = Field(5, ge=1)
    # One budget for every process that reads with this API key (the gatherers and the history backfill): a
    # token bucket in this Redis, under {key_prefix}:ratelimit:{api_key_id}. Point every host at the same Redis
    # (the deployment's shared one, where the dedup queue lives). Unset: each process has a bucket of its own.
    shared: RedisConfig | None = None
    # While the shared Redis does not answer, a process falls back to a bucket of its own at this share of the
    # rate (one of three gatherers: a third), so together they stay within the budget.
    shared_fallback_share: float = Field(1 / 3, gt=0, le=1)


class KalshiConfig(_Model):
    # The default target is the project's own simulator; point these at Kalshi to capture the real thing.
    rest_url: str = "http://127.0.0.1:8765/trade-api/v2"
    ws_url: str = "ws://127.0.0.1:8765/trade-api/ws/v2"
    api_key_id: str | None = None
    private_key_path: SecretStr | None = None
    rate_limit: RateLimitConfig = RateLimitConfig()
    request_timeout_s: float = Field(10.0, gt=0)
    max_retries: int = Field(6, ge=0)


class RegistryConfig(_Model):
    reconcile_interval_s: float = Field(60.0, gt=0)
    page_size: int = Field(1000, ge=1, le=1000)
    progress_every_pages: int = Field(50, ge=1)


class WebSocketConfig(_Model):
    markets_per_connection: int = Field(7500, ge=1)
    # Connection-worker processes: 0 = one per core, 1 = every connection in the gatherer process itself.
    workers: int = Field(0, ge=0)
    ticker_connections: int = Field(2, ge=1)
    trade_connections: int = Field(2, ge=1)
    lifecycle_connections: int = Field(2, ge=1)
    ping_interval_s: float = Field(10.0, gt=0)
    dead_after_s: float = Field(30.0, gt=0)
    command_timeout_s: float = Field(10.0, gt=0)
    # After a seq gap, wait this long for the missing frames to come late (a reorder) before acting on it: an
    # orderbook subscription resubscribes, a trade gap is refilled from REST; 0 acts at once. Frames keep
    # being captured meanwhile.
    gap_grace_s: float = Field(0.25, ge=0)
    backoff_initial_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)


class PollerConfig(_Model):
    interval_s: float = Field(300.0, gt=0)
    concurrency: int = Field(4, ge=1)
    enabled: bool = True


class CaptureConfig(_Model):
    # The gatherer writes "capturing trades up to now" to Redis this often; after a restart, the stretch from
    # the last beat to the trade subscription being back is a capture outage (refilled from REST).
    heartbeat_s: float = Field(1.0, gt=0)
    backfill_trades: bool = True  # fetch an outage's trades from GET /markets/trades (source 'rest')
    # Every this many seconds, fetch every trade since the last sweep from REST too (0: never): a trade the
    # WebSocket lost without a seq gap (frames without seq, a message the exchange dropped) is stored then.
    trade_sweep_s: float = Field(60.0, ge=0)
    trade_sweep_lag_s: float = Field(10.0, ge=0)  # sweep up to this long ago: REST may list a trade late
    # How often the gatherer tells production it is alive (a CaptureBeat record): a gatherer whose beats stop
    # holds no book from its last beat on (coverage). Keep it well under dedup's coverage.dead_after_s.
    beat_record_s: float = Field(2.0, gt=0)


class RouterConfig(_Model):
    # Where records wait on disk while Redis is down ({gatherer_id} is filled in).
    spill_dir: str = "./run/spill/{gatherer_id}"
    memory_limit_records: int = Field(200_000, ge=1)  # held in memory before spilling to disk
    records_per_entry: int = Field(500, ge=1)  # records batched into one stream entry
    # How long records wait for company before an XADD: each flush is a pipelined round trip to Redis,
    # whose cost (a loopback TCP send) is paid per flush, not per record.
    flush_interval_ms: float = Field(50.0, gt=0, le=1000)
    shutdown_timeout_s: float = Field(10.0, gt=0)  # on SIGTERM: drain to Redis this long, then spill


class WriterConfig(_Model):
    batch_size: int = Field(5000, ge=1)
    block_ms: int = Field(200, ge=1)
    # After a read that found fewer than batch_size entries, the next waits this long: a write's fixed cost
    # (round trips for XREADGROUP, COPY, XACK) spread over more rows, for this much latency.
    linger_ms: int = Field(100, ge=0, le=1000)
    claim_idle_ms: int = Field(30_000, ge=1)
    max_deliveries: int = Field(5, ge=1)
    replay_window_s: int = Field(6 * 3600, ge=0)
    trim_interval_s: float = Field(60.0, gt=0)
    metrics_port: int = Field(9109, ge=0, le=65535)  # /metrics of a `kalshi-data write` process


class RetentionConfig(_Model):
    # TimescaleDB: compression and retention policies; plain PostgreSQL: partitions dropped after retain_days.
    compress_after_days: int = Field(2, ge=1)
    retain_days: int | None = Field(None, ge=1)
    partitions_ahead_days: int = Field(3, ge=1)


class MetricsConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(9108, ge=0, le=65535)


class GathererConfig(_Model):
    gatherer_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    kalshi: KalshiConfig = KalshiConfig()
    database: DatabaseConfig = DatabaseConfig()
    redis: RedisConfig = RedisConfig()
    registry: RegistryConfig = RegistryConfig()
    websocket: WebSocketConfig = WebSocketConfig()
    poller: PollerConfig = PollerConfig()
    capture: CaptureConfig = CaptureConfig()
    router: RouterConfig = RouterConfig()
    writer: WriterConfig = WriterConfig()
    retention: RetentionConfig = RetentionConfig()
    metrics: MetricsConfig = MetricsConfig()


class SourceConfig(_Model):
    gatherer_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    database: DatabaseConfig


class ScheduleConfig(_Model):
    sync_interval_s: int = Field(10, ge=1)
    export_interval_s: int = Field(3600, ge=1)


class ExportConfig(_Model):
    target: str = "file://./lake"
    s3_endpoint_url: str | None = None
    # One file per table-day until it reaches this many bytes, then the next part: the file count follows the
    # data volume, never the number of markets.
    max_file_bytes: int = Field(256 * 1024 * 1024, ge=1)
    row_group_size: int = Field(128 * 1024, ge=1)  # rows; a market's rows of a day span few row groups
    zstd_level: int = Field(9, ge=1, le=22)
    bloom_filter: bool = False  # a bloom filter on the market column (bench_lake measures what it costs)

    @field_validator("target")
    @classmethod
    def _target_scheme(cls, v: str) -> str:
        if not (v.startswith("file://") or v.startswith("s3://")):
            raise ValueError("expected a file:// or s3:// URL")
        return v


class AuditConfig(_Model):
    enabled: bool = True
    # A REST snapshot matches if it equals the captured book at any state the deltas received this close to
    # it (either side) pass through: covers the REST round trip and the order of WebSocket and REST delivery.
    window_s: float = Field(2.0, gt=0)
    max_snapshots_per_run: int = Field(20_000, ge=1)  # per source and sync round


class CoverageConfig(_Model):
    # A gatherer that has sent no beat (capture.beat_record_s) for this long holds no book from its last beat on:
    # production records gaps where no other gatherer covers. Well above the beat interval and the sync lag.
    dead_after_s: float = Field(30.0, gt=0)


class BackfillConfig(_Model):
    """`kalshi-data backfill`: Kalshi's public past into production (history/)."""

    production: DatabaseConfig
    kalshi: KalshiConfig = KalshiConfig()
    redis: RedisConfig = RedisConfig()  # the queue `backfill --enqueue` puts the job on (the dedup workers')
    concurrency: int = Field(8, ge=1, le=256)  # requests in flight: enough that the rate limit is the bottleneck
    trade_window_s: int = Field(3600, ge=60, le=86_400)  # trades of every market, an hour a checkpoint
    candles: bool = True  # one-minute candlesticks of every market in the window
    settle_lag_s: float = Field(120.0, ge=0)  # a window ending less than this long ago is fetched again next run


class DeduplicatorConfig(_Model):
    production: DatabaseConfig
    sources: list[SourceConfig] = Field(min_length=1)
    redis: RedisConfig = RedisConfig()
    batch_size: int = Field(20_000, ge=1)
    schedule: ScheduleConfig = ScheduleConfig()
    audit: AuditConfig = AuditConfig()
    coverage: CoverageConfig = CoverageConfig()
    export: ExportConfig = ExportConfig()
    # production partitions (RDS: plain PostgreSQL); retain_days unset keeps everything
    retention: RetentionConfig = RetentionConfig()
    metrics: MetricsConfig = MetricsConfig(port=9110)


M = TypeVar("M", bound=BaseModel)


# ---- loading ----------------------------------------------------------------------------------------


def _substitute(node: Any, path: str, fname: str, env: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: _substitute(v, f"{path}.{k}" if path else str(k), fname, env) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, f"{path}[{i}]", fname, env) for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:

        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(
                f"{fname}: {path}: environment variable {name} is not set (set it, or write ${{{name}:-default}})"
            )

        return _VAR_RE.sub(repl, node)
    return node


_EXPECT = {
    "int_parsing": "expected integer",
    "int_type": "expected integer",
    "int_from_float": "expected integer",
    "float_parsing": "expected number",
    "float_type": "expected number",
    "bool_parsing": "expected boolean",
    "bool_type": "expected boolean",
    "string_type": "expected string",
    "missing": "required key is missing",
    "extra_forbidden": "unknown key",
    "list_type": "expected a list",
    "model_type": "expected a mapping",
    "dict_type": "expected a mapping",
}


# Keys a release removed, and what to do about them: "unknown key" alone would leave an upgrade guessing.
_REMOVED = {
    "websocket.compression": "no longer a setting (the WebSocket client, picows, has no permessage-deflate): "
    "delete the line",
}


def _is_secret_path(loc: tuple[Any, ...], model: type[BaseModel]) -> bool:
    cur: Any = model
    for part in loc:
        fields = getattr(cur, "model_fields", None)
        if fields is None or part not in fields:
            return False
        ann = fields[part].annotation
        if "SecretStr" in repr(ann):
            return True
        for cand in getattr(ann, "__args__", (ann,)):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                cur = cand
                break
            inner = getattr(cand, "__args__", ())
            if inner and isinstance(inner[0], type) and issubclass(inner[0], BaseModel):
                cur = inner[0]
                break
    return False


def format_validation_error(fname: str, exc: ValidationError, model: type[BaseModel]) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")
        what = _EXPECT.get(err["type"]) or err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            what = _REMOVED.get(path, what)
        if err["type"] in ("missing", "extra_forbidden") or _is_secret_path(loc, model):
            lines.append(f"{fname}: {path}: {what}")
        else:
            got = err.get("input")
            shown = f'"{got}"' if isinstance(got, str) else repr(got)
            lines.append(f"{fname}: {path}: {what}, got {shown}")
    return "\n".join(lines)


def load_config(path: str | Path, model: type[M], env: dict[str, str] | None = None) -> M:
    """Read, substitute and validate a YAML config file. Raises ConfigError naming file and key."""
    p = Path(path)
    fname = p.name
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{fname}:{where}: invalid YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{fname}: expected a mapping at the top level")
    data = _substitute(data, "", fname, dict(os.environ) if env is None else env)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(fname, exc, model)) from None


def redacted(cfg: BaseModel) -> dict[str, Any]:
    """The config as plain data with every secret replaced, for `config check` and logs."""

    def walk(v: Any) -> Any:
        if isinstance(v, SecretStr):
            return SECRET_MARK
        if isinstance(v, BaseModel):
            return {k: walk(getattr(v, k)) for k in type(v).model_fields}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    out = walk(cfg)
    assert isinstance(out, dict)
    return out


def detect_config_model(path: str | Path) -> type[BaseModel]:
    """Pick the model for `config check` from the file's keys (sources -> deduplicator)."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return GathererConfig  # load_config reports the real error
    if isinstance(data, dict) and "sources" in data:
        return DeduplicatorConfig
    if isinstance(data, dict) and "production" in data:
        return BackfillConfig
    return GathererConfig
