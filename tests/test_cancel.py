"""gatherer._tasks.cancel_and_wait: a task that survives a cancel (a cancel lost on Python 3.11) is cancelled
again until it ends; one that never ends is handed back after the timeout instead of holding the shutdown."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from gatherer._tasks import cancel_and_wait


async def survives_first_cancels(n: int, cancels_seen: list[int]) -> None:
    """Swallows its first n cancels, as a retry loop does when a timeout turns a cancel into a TimeoutError."""
    for _ in range(n):
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        cancels_seen.append(1)
    await asyncio.sleep(3600)


async def test_a_task_that_swallows_cancels_is_cancelled_again_until_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[int] = []
    stubborn = asyncio.create_task(survives_first_cancels(2, seen), name="stubborn")
    plain = asyncio.create_task(asyncio.sleep(3600), name="plain")
    await asyncio.sleep(0)
    left = await cancel_and_wait([stubborn, plain], timeout_s=10)
    assert left == set() and stubborn.cancelled() and plain.cancelled()
    assert len(seen) == 2  # it took three cancels
    assert any("cancel was lost" in r.getMessage() and "stubborn" in r.getMessage() for r in caplog.records)


async def test_a_task_that_never_ends_is_handed_back_after_the_timeout() -> None:
    released = asyncio.Event()
    seen: list[int] = []

    async def survives_every_cancel() -> None:
        while not released.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await released.wait()
            seen.append(1)

    endless = asyncio.create_task(survives_every_cancel(), name="endless")
    await asyncio.sleep(0)
    left = await cancel_and_wait([endless], timeout_s=1.2)
    assert left == {endless} and not endless.done() and len(seen) >= 2
    released.set()  # let it end, or the test's event loop could not close
    await endless


async def test_what_a_task_raised_is_retrieved_not_reraised() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    t = asyncio.create_task(fails())
    await asyncio.sleep(0)
    assert await cancel_and_wait([t], timeout_s=1) == set()
    assert isinstance(t.exception(), RuntimeError)
