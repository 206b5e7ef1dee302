"""One bounded retry loop for the whole code base.

A retry loop without a bound turns a persistent condition (a dangling pointer, a lock that
is never released, a server that keeps refusing) into a call that never returns and that
``wait_for`` cannot always stop. Every loop that tries again therefore runs under a
``RetryPolicy``: at most ``attempts`` tries and/or ``timeout`` seconds, with exponential
backoff and jitter between tries (jitter keeps competing writers from retrying in lockstep).

Two ways to use it::

    # the body decides what "failed" means
    retry = Retry(POLICY)
    while True:
        if try_once():
            break
        if not await retry.pause():
            raise StorageError("... gave up after %d tries" % retry.attempt)

    # an exception decides
    value = await retrying(work, POLICY, retryable=lambda exc: ...)
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from .errors import StorageConnectionFailedError

__all__ = ["Retry", "RetryPolicy", "gave_up", "retrying", "retrying_sync"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to try. ``attempts`` counts every try, the first included;
    ``timeout`` is measured from the first try. Pauses grow from ``first_delay`` by
    ``factor`` up to ``max_delay``; each is drawn from ``[(1 - jitter) * d, d]``.

    With neither bound the loop is bounded only by its caller (a background reconnect loop
    that ends when nobody needs it); every request path names a bound.
    """

    attempts: int | None = None
    timeout: float | None = None
    first_delay: float = 0.001
    max_delay: float = 0.05
    factor: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.attempts is not None and (type(self.attempts) is not int or self.attempts < 1):
            raise ValueError("attempts must be a positive int or None")
        if self.timeout is not None and not self.timeout >= 0:
            raise ValueError("timeout must be >= 0 seconds or None")
        if not 0 <= self.first_delay <= self.max_delay or self.factor < 1:
            raise ValueError("need 0 <= first_delay <= max_delay and factor >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be within [0, 1]")


class Retry:
    """The state of one retry loop; create it just before the first try."""

    __slots__ = ("_clock", "_deadline", "_delay", "_rng", "attempt", "policy", "started")

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._rng = rng
        self.started = clock()
        self._deadline = None if policy.timeout is None else self.started + policy.timeout
        self._delay = policy.first_delay
        self.attempt = 1  # the try about to be made, or just made

    @property
    def elapsed(self) -> float:
        return self._clock() - self.started

    def next_pause(self) -> float | None:
        """Seconds to wait before the next try, or None when the budget is spent.

        Counts the next try; a pause never runs past the deadline (the last try happens at it).
        """
        p = self.policy
        if p.attempts is not None and self.attempt >= p.attempts:
            return None
        pause = self._delay * (1 - p.jitter * self._rng())
        if self._deadline is not None:
            left = self._deadline - self._clock()
            if left <= 0:
                return None
            pause = min(pause, left)
        self._delay = min(self._delay * p.factor, p.max_delay)
        self.attempt += 1
        return pause

    async def pause(self) -> bool:
        """Wait before the next try; False (at once) when no try is left."""
        pause = self.next_pause()
        if pause is None:
            return False
        await asyncio.sleep(pause)
        return True

    def pause_sync(self) -> bool:
        """``pause`` for code running in a worker thread."""
        pause = self.next_pause()
        if pause is None:
            return False
        time.sleep(pause)
        return True

    def reset(self) -> None:
        """Start over after a success, in a loop that lives on (a reconnect loop)."""
        self.started = self._clock()
        p = self.policy
        self._deadline = None if p.timeout is None else self.started + p.timeout
        self._delay = p.first_delay
        self.attempt = 1


def gave_up(
    backend: str, operation: str, retry: Retry, why: str, **details: object
) -> StorageConnectionFailedError:
    """The error a loop raises once its budget is spent: ``storage_connection_failed``
    (the contract's "retrying may succeed" code, ``reason`` ``busy``), because what it waited
    out (a lock, a competing writer, a conflicting request) is passing, only slower than the
    budget; ``attempts`` says how many tries were made."""
    return StorageConnectionFailedError(
        f"{backend} {operation}: gave up after {retry.attempt} tries in {retry.elapsed:.1f} s: "
        f"{why}; retry later",
        details={"operation": operation, "attempts": retry.attempt, "reason": "busy", **details},
    )


async def retrying(
    work: Callable[[], Awaitable[_T]],
    policy: RetryPolicy,
    *,
    retryable: Callable[[BaseException], bool],
) -> _T:
    """Run ``work`` until it returns; re-run it after an exception ``retryable`` accepts,
    within the policy. The last exception propagates once the budget is spent."""
    retry = Retry(policy)
    while True:
        try:
            return await work()
        except Exception as exc:
            if not retryable(exc) or not await retry.pause():
                raise


def retrying_sync(
    work: Callable[[], _T],
    policy: RetryPolicy,
    *,
    retryable: Callable[[BaseException], bool],
) -> _T:
    """``retrying`` for blocking code running in a worker thread."""
    retry = Retry(policy)
    while True:
        try:
            return work()
        except Exception as exc:
            if not retryable(exc) or not retry.pause_sync():
                raise
