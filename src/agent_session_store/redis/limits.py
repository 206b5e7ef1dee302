"""Time bounds of the Redis backend: fences, and the retry policies of every loop in it."""

from __future__ import annotations

from ..errors import StorageConnectionFailedError
from ..retry import Retry, RetryPolicy
from ..retry import gave_up as shared_gave_up

__all__ = [
    "BUSY_TTL_MS",
    "DONE_TTL_MS",
    "GC_BATCH",
    "READ_BUDGET",
    "READ_RETRY",
    "RECONNECT",
    "WRITE_RETRY",
    "gave_up",
]

# get_events: candidates one read script examines at most (a few ms of server time); a read
# needing more continues in another call, so other clients are served in between.
READ_BUDGET = 2048

# delete_session: ids cleaned per script call (single node) or per pipeline (cluster claims).
GC_BATCH = 500

# cluster: a delete's fence lives this long unless the delete renews it between its steps,
# so a delete whose client died (or was cancelled) holds writers off for at most this long
BUSY_TTL_MS = 5_000
DONE_TTL_MS = 10_000  # cluster: "just deleted"; old claims found now must be claimed afresh

# A write waits out a delete fence (a live delete renews it) and plans again after losing a
# race; past this the session is stuck and the caller hears so (retryable), instead of waiting
# for ever.
WRITE_RETRY = RetryPolicy(timeout=10.0, first_delay=0.001, max_delay=0.05)
# get_run: a run moving between sessions is briefly in neither.
READ_RETRY = RetryPolicy(attempts=3, first_delay=0.001, max_delay=0.005)
# The subscriber's reconnect loop: ends when no reader needs it (or the store closes).
RECONNECT = RetryPolicy(first_delay=0.02, max_delay=0.5)


def gave_up(what: str, retry: Retry, why: str) -> StorageConnectionFailedError:
    """A lock (a delete fence) or a race that outlasted its deadline: nothing was written
    and the condition is passing, so the caller may retry (``retry.gave_up``)."""
    return shared_gave_up("redis", what, retry, f"{why}; nothing was written")
