"""Writes on Redis Cluster: several steps, each atomic in its own slot (docs/redis.md, "Cluster").

The event-id uniqueness rule, the run id -> session pointers and the list_sessions index
cannot live in a session's slot. An append first *claims* each event id with ``SET NX GET``
on a key of the id's own slot (the claim holds the whole row, so whoever finds a claim can
finish the write), then stores the winning rows with one write script per session, then
updates the list index. ``delete_session`` fences the session while it frees what lives
elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from ..codec import EncodedEvent, decode_event
from ..models import Event, Run, Session
from ..retry import Retry
from .limits import BUSY_TTL_MS, DONE_TTL_MS, WRITE_RETRY, gave_up
from .plan import WritePlan, WriteResult
from .rows import blob_session, unblob

if TYPE_CHECKING:
    from .store import RedisSessionStore

__all__ = ["Cluster"]

_PARALLEL_SESSIONS = 4  # write scripts in flight for one batch naming many sessions

_R = TypeVar("_R")


async def _bounded(calls: list[Coroutine[Any, Any, _R]], limit: int) -> list[_R]:
    """Like gather, with at most ``limit`` running: a batch may name many sessions."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Coroutine[Any, Any, _R]) -> _R:
        async with gate:
            return await call

    return await asyncio.gather(*(one(c) for c in calls))


class Cluster:
    """The cluster write paths of one store."""

    def __init__(self, store: RedisSessionStore) -> None:
        self._store = store

    async def store_rows(
        self,
        rows: list[EncodedEvent],
        blobs: list[str],
        session: tuple[Session, str] | None,
        run: tuple[Run, str] | None,
    ) -> list[Event]:
        store = self._store
        client, keys = store.client, store.keys
        old_run_session = ""
        if run is not None:
            old_run_session = (
                await client.set(keys.run(run[0].id), run[0].session_id, get=True) or ""
            )
        retry = Retry(WRITE_RETRY)
        while True:
            # step 1: claim every id on its own slot; a claim holds the winning row
            winners: list[str] = list(blobs)
            fresh = [True] * len(rows)
            if rows:
                pipe = client.pipeline(transaction=False)
                for row, text in zip(rows, blobs):
                    pipe.set(keys.claim(row.id), text, nx=True, get=True)
                for i, prior in enumerate(await pipe.execute()):
                    if prior is not None:
                        winners[i] = prior
                        fresh[i] = False
            # step 2: one atomic script per session (the flushed session's carries its records)
            groups: dict[str, list[int]] = {}
            for i, text in enumerate(winners):
                groups.setdefault(blob_session(text), []).append(i)
            flush_sid = session[0].id if session is not None else None
            run_sid = run[0].session_id if run is not None else None
            extra = {s for s in (flush_sid, run_sid) if s is not None and s not in groups}
            order = [*groups, *sorted(extra)]
            calls = []
            for sid in order:
                idx = groups.get(sid, [])
                plan = WritePlan(
                    keys,
                    cluster=True,
                    blobs=[winners[i] for i in idx],
                    claimed=[n for n, i in enumerate(idx) if not fresh[i]],
                )
                plan.session(sid)
                if session is not None and sid == flush_sid:
                    plan.save_session(*session)
                if run is not None and sid == run_sid:
                    plan.save_run(sid, run[0].id, run[1])
                calls.append(store.write(plan))
            results: list[WriteResult] = await _bounded(calls, _PARALLEL_SESSIONS)
            if any(res.status != "OK" for res in results):
                if not await retry.pause():
                    raise gave_up("write", retry, "the session stayed fenced by a delete")
                continue
            stored: list[Event | None] = [None] * len(rows)
            version = ""
            for sid, res in zip(order, results):
                if sid == flush_sid:
                    version = res.version
                for n, i in enumerate(groups.get(sid, [])):
                    seq, text = res.row(n)
                    if fresh[i] and text == "":
                        stored[i] = decode_event(rows[i], seq)
                    else:
                        stored[i] = unblob(text or winners[i], seq)
            # step 3: the list_sessions index, and the run's old session
            if session is not None:
                await store.index(session[0], session[1], version)
            if run is not None and old_run_session and old_run_session != run[0].session_id:
                plan = WritePlan(keys, cluster=True)
                plan.remove_run(old_run_session, run[0].id)
                await store.write(plan)
            return [e for e in stored if e is not None]

    async def delete_session(self, session_id: str) -> None:
        store = self._store
        client, keys = store.client, store.keys
        k = keys.session(session_id)
        retry = Retry(WRITE_RETRY)
        while True:
            res = await store.eval("delete_begin", k, [BUSY_TTL_MS])
            if res[0] == "OK":
                break
            if not await retry.pause():
                raise gave_up("delete_session", retry, "another delete kept the session fenced")
        _, ids, runs, version = res
        if ids:
            pipe = client.pipeline(transaction=False)
            for event_id in ids:
                pipe.delete(keys.claim(event_id))
            await pipe.execute()
        for run_id in runs:
            await store.eval("cad", [keys.run(run_id)], [session_id])
        await store.index(session_id, "", version)
        await store.eval("delete_end", k, [DONE_TTL_MS])

    async def run_session(self, run_id: str) -> str | None:
        sid: str | None = await self._store.client.get(self._store.keys.run(run_id))
        return sid
