"""Waking long-poll readers by polling, for a backend whose push channel does not work.

PostgreSQL behind a transaction pooler (pgbouncer ``pool_mode=transaction``) is the case:
``LISTEN`` registers on whichever server connection the pooler lent for that one statement,
so notifications never reach the store. Without a direct connection to listen on, the store
polls instead: one query per interval for all the sessions its readers wait on (the
sessions' latest sequence numbers), none while nobody waits. A reader then wakes within one
interval of a commit made elsewhere, instead of at its timeout; commits of the same store
object still wake its readers at once (``SessionStoreBase._notify``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping

from .errors import redact
from .wakes import Wake

__all__ = ["SequencePoller"]

log = logging.getLogger("agent_session_store.polling")

ReadLatest = Callable[[list[str]], Awaitable[dict[str, int]]]
#: What came in each moved session, (number seen, number now]: the wakes that let readers
#: whose filters the new events cannot satisfy sleep on (``wakes.py``).
Describe = Callable[[dict[str, tuple[int, int]]], Awaitable[Mapping[str, Wake | None]]]
Notify = Callable[[Iterable[str], Mapping[str, Wake | None] | None], None]


class SequencePoller:
    """Watches the latest sequence number of the sessions readers wait on.

    ``read(session_ids)`` returns the latest numbers it finds (a session with no events may
    be left out: 0). ``watch`` reads the baseline before it returns, and the reader queries
    only after, so any commit the reader's query misses moves the number past the baseline
    and is seen by a later poll: no wake-up is lost, at worst one is late by ``interval``.
    """

    def __init__(
        self,
        read: ReadLatest,
        notify: Notify,
        interval: float,
        describe: Describe | None = None,
    ) -> None:
        self._read = read
        self._notify = notify
        self._describe = describe
        self.interval = interval
        self._seen: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        #: polls run so far (tests and the docs' cost figures read it)
        self.polls = 0

    async def watch(self, session_id: str) -> None:
        latest = (await self._read([session_id])).get(session_id, 0)
        self._seen[session_id] = max(latest, self._seen.get(session_id, 0))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    def unwatch(self, session_id: str) -> None:
        self._seen.pop(session_id, None)

    async def close(self) -> None:
        task, self._task = self._task, None
        self._seen.clear()
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def _run(self) -> None:
        failing = False
        while self._seen:
            await asyncio.sleep(self.interval)
            if not self._seen:
                return
            try:
                latest = await self._read(list(self._seen))
            except Exception as exc:
                # The next poll tries again; nothing is lost meanwhile, since the numbers
                # are compared with the last ones seen, not with the last poll's.
                if not failing:
                    log.warning("long-poll polling failed: %s", redact(str(exc)))
                failing = True
                continue
            failing = False
            self.polls += 1
            moved: dict[str, tuple[int, int]] = {}
            for sid, seq in latest.items():
                seen = self._seen.get(sid)
                if seen is not None and seq > seen:
                    self._seen[sid] = seq
                    moved[sid] = (seen, seq)
            if moved:
                self._notify(list(moved), await self._wakes(moved))

    async def _wakes(self, moved: dict[str, tuple[int, int]]) -> Mapping[str, Wake | None] | None:
        """What came, when the backend can say; without it every reader wakes (and
        re-queries), which is never wrong, only dearer."""
        if self._describe is None:
            return None
        try:
            return await self._describe(moved)
        except Exception as exc:
            log.warning("long-poll polling could not read what came: %s", redact(str(exc)))
            return None
