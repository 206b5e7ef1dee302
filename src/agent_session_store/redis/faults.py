"""The one classification of redis-py errors, for the single node and the cluster alike.

Two questions are answered here and nowhere else:

* which ``StoreError`` a driver error becomes (``classify``): anything that says "the
  server or the slot cannot serve this call right now" (a lost or refused connection, a
  timeout, a stopped or killed node, CLUSTERDOWN, a slot being moved: TRYAGAIN, ASK/MOVED
  redirects past the driver's budget, LOADING, BUSY, READONLY after a failover) is
  ``storage_connection_failed``, the retryable code of the contract; the rest is
  ``storage_error``. redis-py also breaks its own state when a node dies under concurrent
  calls (one call finds the connection another call just dropped: ``AttributeError:
  'NoneType' object has no attribute 'writelines'`` from inside the driver); such an error
  raised by the driver's own code is a lost connection too, while the same error from this
  package stays ``storage_error`` (a bug must not pass for an outage).
* which errors prove that the server did *not* run the command (``not_run``): a
  redirect or TRYAGAIN is answered before anything executes, so the call may be repeated
  (within a deadline) whatever it does. A lost connection proves nothing and is never
  repeated here: the caller hears ``storage_connection_failed`` and retries; events carry
  ids, so a repeated append stores nothing twice.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TypeVar

import redis
import redis.exceptions as rexc

from ..errors import StorageConnectionFailedError, StorageError, StoreError
from ..retry import RetryPolicy, retrying

__all__ = ["MOVE_RETRY", "classify", "not_run", "while_moving"]

_T = TypeVar("_T")

_DRIVER_DIR = os.path.dirname(os.path.abspath(redis.__file__)) + os.sep

# A slot being migrated answers TRYAGAIN to every multi-key call naming a missing key until
# the move ends (CLUSTER SETSLOT ... NODE); redis-py gives up after ~0.4 s. A script call
# is tried again for this long: a move of one slot takes milliseconds to seconds.
MOVE_RETRY = RetryPolicy(timeout=10.0, first_delay=0.01, max_delay=0.2)

# Server replies meaning "not now": the call did not run, later it may.
_BUSY_REPLIES = ("LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY")


def _from_driver(exc: BaseException) -> bool:
    """True when the innermost frame of ``exc`` is redis-py's own code."""
    tb: TracebackType | None = exc.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    return last is not None and os.path.abspath(last.tb_frame.f_code.co_filename).startswith(
        _DRIVER_DIR
    )


def not_run(exc: BaseException) -> bool:
    """The server refused the call before running it because its slot is moving."""
    if isinstance(exc, rexc.TryAgainError | rexc.AskError):  # MovedError is an AskError
        return True
    # redis-py's "TTL exhausted": too many TRYAGAIN / ASK / MOVED answers in a row
    return type(exc) is rexc.ClusterError


def _reason(exc: BaseException) -> str | None:
    """Why ``exc`` is retryable, or None when it is not."""
    if isinstance(exc, rexc.AuthenticationError | rexc.AuthorizationError):
        return None  # wrong credentials do not heal by retrying
    if not_run(exc):
        return "slot_moving"
    if isinstance(exc, rexc.ClusterDownError | rexc.SlotNotCoveredError):
        return "cluster_down"
    if isinstance(exc, rexc.RedisClusterException):
        return "cluster_unreachable"  # e.g. no startup node answers
    if isinstance(exc, rexc.BusyLoadingError | rexc.ReadOnlyError):
        return "server_busy"
    if isinstance(exc, rexc.ResponseError):
        return "server_busy" if str(exc).startswith(_BUSY_REPLIES) else None
    if isinstance(exc, rexc.TimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, rexc.ConnectionError | OSError | ConnectionError):
        return "connection_lost"
    if isinstance(exc, AttributeError) and _from_driver(exc):
        return "connection_lost"  # the driver tripped over a connection dropped under it
    return None


def classify(exc: BaseException, operation: str) -> StoreError:
    """The StoreError for a driver error raised by ``operation``; ``exc`` becomes its cause."""
    if isinstance(exc, StoreError):
        return exc
    text = f"redis {operation} failed: {type(exc).__name__}: {exc}"
    reason = _reason(exc)
    if reason is None:
        return StorageError(text, details={"operation": operation})
    return StorageConnectionFailedError(
        f"{text} (retryable)", details={"operation": operation, "reason": reason}
    )


async def while_moving(work: Callable[[], Awaitable[_T]]) -> _T:
    """Run ``work`` again while the server says it did not run it (a slot on the move),
    within MOVE_RETRY; past that the last refusal propagates (and ``classify`` makes it
    retryable)."""
    return await retrying(work, MOVE_RETRY, retryable=not_run)
