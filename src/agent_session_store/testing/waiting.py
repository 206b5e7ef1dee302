"""Waiting for a long-poll reader's state in tests: events with a deadline, never a fixed time.

The base class counts the readers asleep on each session and the wake-ups delivered to it
(``_Waiters.sleeping``, ``_Waiters.deliveries``); a test waits on those instead of sleeping
"long enough" before it asserts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..base import EventQuery, SessionStoreBase
from ..models import Event

__all__ = [
    "QueryCount",
    "asleep",
    "deliveries",
    "elsewhere",
    "inner",
    "settled",
    "until",
    "wake_unsure",
]


async def until(check: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    """Wait for a condition with a deadline, yielding to the loop (and to store threads)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)


def inner(store: Any) -> SessionStoreBase:
    """The session backend itself, also behind a composite: tests watch its internals."""
    found: SessionStoreBase = getattr(store, "session_store", store)
    return found


class QueryCount:
    """Counts the event queries a store's backend runs from now on (``_get_events``): how a
    test tells readers that re-queried from readers that stayed asleep."""

    def __init__(self, backend: SessionStoreBase) -> None:
        self.calls = 0
        real = backend._get_events

        async def counting(query: EventQuery) -> list[Event]:
            self.calls += 1
            return await real(query)

        backend._get_events = counting  # type: ignore[method-assign]


def elsewhere(store: Any) -> bool:
    """The store runs on another event loop (the blocking facade gives it a thread of its
    own, and each waiting call a thread from a pool)."""
    loop = inner(store)._bound_loop
    return loop is not None and loop is not asyncio.get_running_loop()


def wake_unsure(store: Any, session_id: str) -> None:
    """A wake-up that cannot say what came (as after a lost notification), delivered on
    the store's own loop."""
    base = inner(store)
    if elsewhere(store):
        assert base._bound_loop is not None
        base._bound_loop.call_soon_threadsafe(base._notify, [session_id])
    else:
        base._notify([session_id])


async def asleep(store: Any, session_id: str, readers: int = 1) -> None:
    """Until ``readers`` long-poll readers of the session are waiting for a wake-up."""
    waiters = inner(store)._waiters
    await until(
        lambda: waiters.sleeping(session_id) >= readers,
        f"{readers} reader(s) of {session_id[:40]!r} waiting",
    )


def deliveries(store: Any, session_id: str) -> int:
    """Wake-ups delivered to the session's readers so far (woken or not)."""
    return inner(store)._waiters.deliveries.get(session_id, 0)


async def settled(
    store: Any, session_id: str, before: int, tasks: Iterable[asyncio.Future[Any]]
) -> None:
    """Until a wake-up after ``before`` deliveries reached the session and every reader in
    ``tasks`` that it woke has either finished or gone back to sleep."""
    base = inner(store)
    readers = list(tasks)
    await until(lambda: deliveries(store, session_id) > before, f"a wake-up of {session_id[:40]!r}")
    # The readers it woke resume on the store's loop, each leaving the sleeping count as it
    # does: let that loop turn once after the wake-up (here sleep(0) would turn only this
    # loop, and under load "everyone still asleep, no query yet" passed for settled).
    if elsewhere(store):
        assert base._bound_loop is not None
        await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), base._bound_loop)
        )
    else:
        await asyncio.sleep(0)  # readers it woke run now

    def quiet() -> bool:
        waiting = sum(not t.done() for t in readers)
        return base._waiters.sleeping(session_id) >= waiting and not base._shared

    await until(quiet, f"the readers of {session_id[:40]!r} to settle")
