"""Time bounds of the Redis backend: fences, and the retry policies of every loop in it."""

from __future__ import annotations

from ..errors import StorageError
from ..retry import Retry, RetryPolicy

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

BUSY_TTL_MS = 30_000  # cluster: a delete's fence, should its client die before lifting it
DONE_TTL_MS = 10_000  # cluster: "just deleted"; old claims found now must be claimed afresh

# A write waits out a delete fence (at most BUSY_TTL_MS) and plans again after losing a race;
# past this the session is stuck and the caller hears so, instead of waiting for ever.
WRITE_RETRY = RetryPolicy(timeout=BUSY_TTL_MS / 1000 + 2, first_delay=0.001, max_delay=0.05)
# get_run: a run moving between sessions is briefly in neither.
READ_RETRY = RetryPolicy(attempts=3, first_delay=0.001, max_delay=0.005)
# The subscriber's reconnect loop: ends when no reader needs it (or the store closes).
RECONNECT = RetryPolicy(first_delay=0.02, max_delay=0.5)


def gave_up(what: str, retry: Retry, why: str) -> StorageError:
    return StorageError(
        f"redis {what}: gave up after {retry.attempt} tries in {retry.elapsed:.1f} s: {why}",
        details={"operation": what, "attempts": retry.attempt},
    )
