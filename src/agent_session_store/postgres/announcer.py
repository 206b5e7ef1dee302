"""Wake-ups for appends that overlap: all that are due in one ``wake()`` call.

A lone append commits and notifies in one ``CALL`` (one round trip; see ``store.py``). When a
store's appends overlap, every NOTIFYing transaction would queue on the server's one notify
lock (issue 13: 64 concurrent appenders ran at 0.62-0.74x the same appends without NOTIFY).
Those appends commit without notifying and hand their wakes here instead; one task sends
every wake that is due in a single ``wake()`` call, holding one pooled connection while any
are due. An append still returns only once its wake has gone out, as the ``CALL``'s does, so
an append that returned has been announced even if its process is killed right after.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..errors import StorageError, StoreError
from . import faults

__all__ = ["Announcer", "NewRow"]

#: What a wake says of one new row: session id, type, run id, timestamp (µs), sequence.
NewRow = tuple[str, str, str | None, int, int]

_Due = tuple[list[NewRow], "asyncio.Future[None]"]


class Announcer:
    """Sends the wakes of quiet commits, many per call, on one held pooled connection."""

    def __init__(
        self,
        acquire: Callable[[], Any],
        sql: str,
        wrap: Callable[[BaseException], StoreError],
    ) -> None:
        """``sql`` runs ``wake()`` with its five arrays as $1..$5; ``wrap`` names a failure
        for the appends whose wake it stopped."""
        self._acquire = acquire
        self._sql = sql
        self._wrap = wrap
        self._due: list[_Due] = []
        self._task: asyncio.Task[None] | None = None
        self.calls = 0  #: wake() calls sent: how many appends shared one shows in tests/benches

    async def announce(self, new: list[NewRow]) -> None:
        """Return once a ``wake()`` carrying ``new`` has been sent (or raise why it was not).

        The caller being cancelled does not stop the wake: others share its call."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._due.append((new, done))
        if self._task is None:
            self._task = asyncio.create_task(self._send())
        await asyncio.shield(done)

    async def drain(self) -> None:
        """Wait until every wake handed in so far is sent or failed (before closing)."""
        task = self._task
        if task is not None:
            await asyncio.shield(task)

    async def _send(self) -> None:
        """Send what is due until nothing is. Every failure settles what it stopped, so
        each wake is tried on at most two connections (the first one may have been ended
        by the server while idle, which the driver finds out before sending anything)."""
        retry_left = 1
        try:
            while self._due:
                batch: list[_Due] = []
                try:
                    async with self._acquire() as conn:
                        while self._due:
                            batch, self._due = self._due, []
                            with faults.statement(conn):
                                await conn.execute(self._sql, *_columns(batch))
                            self.calls += 1
                            _sent(batch)
                            batch = []
                except faults.NotSent:
                    if retry_left:  # nothing went out: once more, on a fresh connection
                        retry_left -= 1
                        self._due = batch + self._due
                        continue
                    self._fail(batch, faults.NotSent("the wake-up could not be sent"))
                except Exception as exc:
                    self._fail(batch, exc)
        except BaseException:  # cancelled: nothing more goes out from here
            self._fail([], StorageError("the postgres store closed before a wake-up was sent"))
            raise
        finally:
            self._task = None

    def _fail(self, batch: list[_Due], exc: BaseException) -> None:
        """Fail the wakes ``exc`` stopped and those queued meanwhile: no endless retrying."""
        stopped, self._due = batch + self._due, []
        for _, done in stopped:
            if not done.done():
                done.set_exception(self._wrap(exc))


def _columns(batch: list[_Due]) -> list[list[Any]]:
    """``wake()``'s arrays: sessions, sequences, types, runs, timestamps."""
    rows = [row for new, _ in batch for row in new]
    return [
        [r[0] for r in rows],
        [r[4] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
    ]


def _sent(batch: list[_Due]) -> None:
    for _, done in batch:
        if not done.done():
            done.set_result(None)
