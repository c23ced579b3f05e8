"""core.redisconn's asyncio client: a cancel always ends the call it lands in, and a Redis that does not answer
fails the call after redis_deadline's bound. A CI run hung for its 90 minutes on the first (a trade sweep that
was cancelled once, and went on sweeping)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr
from redis.exceptions import RedisError

from core.config import RedisConfig
from core.redisconn import async_redis_from_config, redis_deadline
from tests.services import PrivateRedis


async def cancels_swallowed(call: Callable[[int], Awaitable[Any]], n: int, seed: int) -> int:
    """Cancels n calls, each after 0..6 turns of the loop (so some land as the call's send completes), and counts
    the calls that returned a result although their cancel was accepted."""
    rng = random.Random(seed)
    swallowed = 0
    for i in range(n):
        task = asyncio.ensure_future(call(i))
        for _ in range(rng.randint(0, 6)):
            await asyncio.sleep(0)
        accepted = task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            continue
        swallowed += accepted
    return swallowed


@pytest.fixture
def password_redis(tmp_path: Path) -> Any:
    r = PrivateRedis(str(tmp_path), password="s3cret-for-tests")
    r.start()
    try:
        yield r
    finally:
        r.stop()


def config_of(server: PrivateRedis) -> RedisConfig:
    return RedisConfig(url=server.url, password=SecretStr(server.password or ""))


@pytest.mark.parametrize("seed", [1, 2])
async def test_a_cancelled_call_always_ends_cancelled(password_redis: PrivateRedis, seed: int) -> None:
    """The project's client loses none of 600 cancels of SET, XADD or a pipeline. The same probe on a client with
    a socket_timeout (redis-py 8's default) sees it lose cancels: the probe can see what it guards against."""
    r = async_redis_from_config(config_of(password_redis))

    async def pipelined(i: int) -> Any:
        async with r.pipeline(transaction=False) as pipe:
            pipe.xadd("kd:probe", {"i": i}, maxlen=100)
            pipe.set("kd:probe:last", i)
            return await pipe.execute()

    try:
        assert await cancels_swallowed(lambda i: r.set("kd:probe:n", i), 200, seed) == 0
        assert await cancels_swallowed(lambda i: r.xadd("kd:probe", {"i": i}, maxlen=100), 200, seed) == 0
        assert await cancels_swallowed(pipelined, 200, seed) == 0
    finally:
        await r.aclose()
    leaky = aioredis.from_url(password_redis.url, password=password_redis.password, socket_timeout=5)
    try:
        assert await cancels_swallowed(lambda i: leaky.set("kd:probe:n", i), 200, seed) > 0
    finally:
        await leaky.aclose()


async def test_a_redis_that_does_not_answer_fails_the_call_at_the_deadline(password_redis: PrivateRedis) -> None:
    """A stopped (SIGSTOP) server accepts no bytes and answers nothing: the call fails as a RedisError, which
    every caller already treats as Redis down, and the client works again once the server does."""
    r = async_redis_from_config(config_of(password_redis))
    try:
        await r.set("kd:probe", 1)
        assert password_redis.proc is not None
        os.kill(password_redis.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(RedisError, match=r"no answer from Redis in 0\.3 s"):
                async with redis_deadline(0.3):
                    await r.get("kd:probe")
        finally:
            os.kill(password_redis.proc.pid, signal.SIGCONT)
        async with redis_deadline():
            assert await r.get("kd:probe") == b"1"
    finally:
        await r.aclose()


def test_an_async_client_with_a_socket_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="no socket_timeout"):
        async_redis_from_config(RedisConfig(), socket_timeout=5)


async def test_the_deadline_leaves_other_timeouts_alone() -> None:
    """Only its own expiry becomes a Redis error; a cancel from outside stays a cancel."""
    task = asyncio.ensure_future(_sleep_in_deadline())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def _sleep_in_deadline() -> None:
    async with redis_deadline(60):
        await asyncio.sleep(60)
