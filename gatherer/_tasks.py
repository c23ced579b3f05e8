"""Stopping tasks for sure. On Python 3.11 a cancel can be lost: a timeout that expires as the cancel lands
turns it into a TimeoutError that a retry loop then survives, and asyncio.wait_for in a library swallows one
(redis-py's, until core.redisconn dropped its socket_timeout). A single lost cancel held a gatherer's shutdown
until its owner gave up (the end-to-end test, once in five runs)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)
RECANCEL_EVERY_S = 0.5


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], timeout_s: float) -> set[asyncio.Task[Any]]:
    """Cancel every task and wait for each to end, cancelling again every RECANCEL_EVERY_S one that goes
    on. Returns (and logs) the tasks still running after `timeout_s`. What the tasks raised is not asked for:
    a task that failed said so when it failed."""
    tasks = list(tasks)  # read twice: a generator would be empty the second time
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pending = {t for t in tasks if not t.done()}
    rounds = 0
    while pending:
        for t in pending:
            t.cancel()
        left = deadline - loop.time()
        if left <= 0:
            log.error(
                "tasks still running after %.0fs of cancels: %s", timeout_s, sorted(t.get_name() for t in pending)
            )
            break
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_EVERY_S, left))
        rounds += 1
        if pending and rounds == 1:
            log.warning("a cancel was lost; cancelling again: %s", sorted(t.get_name() for t in pending))
    for t in tasks:
        if t.done() and not t.cancelled():
            t.exception()  # retrieved: no "exception never retrieved" at exit
    return pending
