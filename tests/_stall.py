"""A test that stalls says where: after STALL_DUMP_S the main thread's stack and every asyncio task's stack go to
stderr (a hung test in CI otherwise shows only that the run timed out). pytest-timeout then fails the test."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import traceback
from types import FrameType

# pytest-timeout fails a test after [tool.pytest.ini_options] timeout; the dump comes a minute before it.
DUMP_BEFORE_TIMEOUT_S = 60.0
STALL_DUMP_S = 240.0


def dump_stacks(signum: int, frame: FrameType | None) -> None:
    """Runs in the main thread (a signal handler), so the running loop, if any, is this thread's."""
    out = sys.stderr
    print(f"\n===== test stalled for {STALL_DUMP_S:.0f}s: main thread =====", file=out)
    traceback.print_stack(frame, file=out)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    for task in asyncio.all_tasks(loop):
        print(f"----- {task!r}", file=out)
        task.print_stack(limit=30, file=out)
    out.flush()


def install(timeout_s: float) -> None:
    """`timeout_s`: pytest-timeout's; KD_TEST_STALL_DUMP_S overrides when the dump comes (to chase a hang)."""
    global STALL_DUMP_S
    STALL_DUMP_S = float(os.environ.get("KD_TEST_STALL_DUMP_S", max(1.0, timeout_s - DUMP_BEFORE_TIMEOUT_S)))
    signal.signal(signal.SIGUSR1, dump_stacks)


def arm() -> threading.Timer:
    """A timer that, unless cancelled, signals this process so the main thread dumps its stacks."""
    timer = threading.Timer(STALL_DUMP_S, os.kill, (os.getpid(), signal.SIGUSR1))
    timer.daemon = True
    timer.start()
    return timer
