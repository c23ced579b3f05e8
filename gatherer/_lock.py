"""One gatherer id, one capture: a lock in the host's Redis that a gatherer process holds while it captures.

Two processes capturing under one id would both write `{prefix}:{gid}:*` and the same gatherer database, and
production would read them as one source: a book rebuilt from one process's snapshot and the other's deltas
(the audit counted 67 mismatches on 34 markets when a killed gatherer's workers ran on beside its restart).

The lock is a Redis key holding the owner's token (`host pid random`), set with NX and a TTL and renewed
every third of it. A process that finds it taken waits: a holder that crashed is recognised at once when it
ran on this host and its pid is gone; otherwise the key expires after the TTL. A holder that finds its token
gone (the key expired while Redis or this process stalled, and another took it) stops capturing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core import keys
from core.redisconn import redis_deadline

log = logging.getLogger(__name__)

# Renew the key only if it still holds our token: a compare-and-set the server runs atomically.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LockHeld(Exception):
    """Another process is capturing under this gatherer id (the message names it)."""


class LockLost(Exception):
    """This process no longer holds its gatherer id's lock: another process took it over."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


@dataclass
class CaptureLock:
    redis: aioredis.Redis
    prefix: str
    gatherer_id: str
    ttl_s: float = 10.0
    token: str = field(default_factory=lambda: f"{socket.gethostname()} {os.getpid()} {secrets.token_hex(8)}")

    @property
    def key(self) -> str:
        return keys.capture_lock(self.prefix, self.gatherer_id)

    def _crashed_here(self, holder: str) -> bool:
        """The holder ran on this host and its process is gone (a kill -9): its lock can be taken at once."""
        parts = holder.split(" ")
        if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
            return False
        pid = int(parts[1])
        return pid != os.getpid() and not _pid_alive(pid)

    async def try_acquire(self) -> str | None:
        """Take the lock; None when taken, else the holder's token."""
        ttl_ms = int(self.ttl_s * 1000)
        async with redis_deadline():
            if await self.redis.set(self.key, self.token, nx=True, px=ttl_ms):
                return None
            holder_raw = await self.redis.get(self.key)
        holder = holder_raw.decode() if isinstance(holder_raw, bytes) else str(holder_raw or "")
        if holder == self.token:
            return None
        if holder and self._crashed_here(holder):
            async with redis_deadline():
                # replace only the dead holder's token, never a live one that took it meanwhile
                async with self.redis.pipeline(transaction=True) as pipe:
                    try:
                        await pipe.watch(self.key)
                        now = await pipe.get(self.key)
                        if (now.decode() if isinstance(now, bytes) else now) == holder:
                            pipe.multi()  # type: ignore[no-untyped-call]
                            pipe.set(self.key, self.token, px=ttl_ms)
                            await pipe.execute()
                            log.warning("capture lock of %s taken over from a process that died: %s",
                                        self.gatherer_id, holder)  # fmt: skip
                            return None
                    except aioredis.WatchError:
                        pass
        return holder or "?"

    async def acquire(self, wait_s: float | None = None) -> None:
        """Wait for the lock: up to `wait_s` (default: the TTL and a second, long enough for a crashed holder's
        key to expire), then LockHeld naming the holder."""
        deadline = time.monotonic() + (wait_s if wait_s is not None else self.ttl_s + 1.0)
        logged = False
        while True:
            holder = await self.try_acquire()
            if holder is None:
                return
            if time.monotonic() >= deadline:
                raise LockHeld(
                    f"gatherer id {self.gatherer_id} is capturing in another process ({holder}): give this one "
                    "another gatherer_id, or stop the other"
                )
            if not logged:
                log.warning("gatherer id %s is locked by %s; waiting for it to end", self.gatherer_id, holder)
                logged = True
            await asyncio.sleep(min(0.5, self.ttl_s / 4))

    async def hold(self) -> None:
        """Renew the lock until cancelled; LockLost if another process has it now. Redis errors are waited out
        (the key outlives a short outage; after a long one it is taken again if still free)."""
        ttl_ms = int(self.ttl_s * 1000)
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                async with redis_deadline():
                    renewed = await self.redis.eval(_RENEW, 1, self.key, self.token, ttl_ms)
                if renewed:
                    continue
                holder = await self.try_acquire()  # expired while Redis or we stalled: ours again if free
                if holder is not None:
                    raise LockLost(f"gatherer id {self.gatherer_id} was taken over by {holder}")
            except RedisError as exc:
                log.warning("capture lock not renewed (Redis: %s)", exc)

    async def release(self) -> None:
        try:
            async with redis_deadline(2.0):
                await self.redis.eval(_RELEASE, 1, self.key, self.token)
        except RedisError as exc:
            log.warning("capture lock not released (Redis: %s); it expires in %.0f s", exc, self.ttl_s)
