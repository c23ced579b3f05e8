"""One way to open Redis from config: the URL names the server, the password comes from the config (itself
from the environment), never from a command line."""

from __future__ import annotations

from typing import Any

import redis

from core.config import RedisConfig


def redis_from_config(cfg: RedisConfig, **options: Any) -> redis.Redis:
    """A client for the configured server; `options` pass through (socket_timeout, decode_responses...)."""
    if cfg.password is not None:
        options["password"] = cfg.password.get_secret_value()
    return redis.Redis.from_url(cfg.url, **options)
