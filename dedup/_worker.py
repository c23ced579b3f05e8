"""The RQ worker the dedup jobs run in: RQ's own, with a shutdown that cannot hang."""

from __future__ import annotations

import inspect

from rq import Worker


class DedupWorker(Worker):
    def unsubscribe(self) -> None:
        """RQ's unsubscribe with a bounded wait for its pubsub thread. redis-py 8.2's `stop()` waits for that
        thread without a bound, and RQ's thread can sit in `get_message` up to 60 s, waiting for a subscription
        the unsubscribe has just ended: a SIGTERM took a minute to end the worker (2 of 12 tries; devstack
        killed it after 30 s). The thread is a daemon: left waiting, it ends with the process."""
        thread, pubsub = self.pubsub_thread, self.pubsub
        if thread is None or pubsub is None:
            return
        pubsub.unsubscribe()
        if "timeout" in inspect.signature(thread.stop).parameters:
            thread.stop(timeout=1.0)
        else:  # an older redis-py: stop() does not wait
            thread.stop()
            thread.join(timeout=1.0)
        if not thread.is_alive():
            pubsub.close()
