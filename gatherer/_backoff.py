"""One backoff for every retry of the gatherer: exponential with full jitter (AWS's "full jitter": a uniform
draw between 0 and min(cap, base * 2^attempt)), so reconnecting hosts do not retry in step.

Not tenacity: its wait_random_exponential is the same formula, but the two loops here are not retried
function calls (the WebSocket one reconnects for ever and resets its attempt after a healthy session; the REST
one takes Retry-After from a 429 instead when the exchange sends one), so the library would wrap, not replace.
"""

from __future__ import annotations

import random


def full_jitter(attempt: int, base_s: float, cap_s: float) -> float:
    """Seconds to wait before retry number `attempt` (0 for the first)."""
    return random.uniform(0, min(cap_s, base_s * 2 ** min(attempt, 32)))
