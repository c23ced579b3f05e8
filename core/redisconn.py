"""One way to open Redis from config: the URL names the server, the password comes from the config (itself
from the environment), never from a command line."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.config import RedisConfig

# How long an asyncio Redis call may take before it counts as Redis down (redis_deadline's default).
ASYNC_OP_TIMEOUT_S = 5.0
ASYNC_CONNECT_TIMEOUT_S = 5.0


def _with_password(cfg: RedisConfig, options: dict[str, Any]) -> dict[str, Any]:
    if cfg.password is not None:
        options["password"] = cfg.password.get_secret_value()
    return options


def redis_from_config(cfg: RedisConfig, **options: Any) -> redis.Redis:
    """A client for the configured server; `options` pass through (socket_timeout, decode_responses...)."""
    return redis.Redis.from_url(cfg.url, **_with_password(cfg, options))


def async_redis_from_config(cfg: RedisConfig, **options: Any) -> aioredis.Redis:
    """The asyncio twin, for the gatherer's sinks. It has no socket_timeout: with one, redis-py sends every
    command inside asyncio.wait_for, which on Python 3.11 swallows a cancel that lands as the send completes
    (4 cancels in 10 at random points, measured; tests/test_redisconn.py), and a task that was told to stop goes
    on. Bound the calls with redis_deadline() instead: asyncio.timeout does not lose a cancel."""
    if options.get("socket_timeout") is not None:
        raise ValueError("async_redis_from_config: no socket_timeout (it loses cancels); use redis_deadline()")
    options["socket_timeout"] = None  # redis-py 8 sets 5 s when none is given
    options.setdefault("socket_connect_timeout", ASYNC_CONNECT_TIMEOUT_S)  # connect uses asyncio.timeout
    return aioredis.from_url(cfg.url, **_with_password(cfg, options))


@contextlib.asynccontextmanager
async def redis_deadline(seconds: float = ASYNC_OP_TIMEOUT_S) -> AsyncIterator[None]:
    """The asyncio Redis calls inside get `seconds`, then fail as redis-py's own timeout does (a RedisError,
    so callers that handle Redis down need nothing new). The client drops the connection of a call cut short."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError as exc:
        raise RedisTimeoutError(f"no answer from Redis in {seconds:g} s") from exc
