"""One way to open Redis from config: the URL names the server, the password comes from the config (itself
from the environment), never from a command line."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis

from core.config import RedisConfig


def _with_password(cfg: RedisConfig, options: dict[str, Any]) -> dict[str, Any]:
    if cfg.password is not None:
        options["password"] = cfg.password.get_secret_value()
    return options


def redis_from_config(cfg: RedisConfig, **options: Any) -> redis.Redis:
    """A client for the configured server; `options` pass through (socket_timeout, decode_responses...)."""
    return redis.Redis.from_url(cfg.url, **_with_password(cfg, options))


def async_redis_from_config(cfg: RedisConfig, **options: Any) -> aioredis.Redis:
    """The asyncio twin, for the gatherer's sinks."""
    return aioredis.from_url(cfg.url, **_with_password(cfg, options))
