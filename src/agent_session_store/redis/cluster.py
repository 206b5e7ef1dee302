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
from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import redis.exceptions as rexc

from ..codec import EncodedEvent, decode_event, decode_session
from ..errors import StorageConnectionFailedError, sequence_conflict
from ..models import Event, Run, Session
from ..retry import Retry
from .keys import FENCE, IDS
from .limits import BUSY_TTL_MS, DONE_TTL_MS, GC_BATCH, WRITE_RETRY, gave_up
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


def lapsed() -> StorageConnectionFailedError:
    return StorageConnectionFailedError(
        "redis delete_session: the session's delete fence expired between two steps (a slow "
        "server or client); the session was not deleted, call delete_session again",
        details={"operation": "delete_session", "reason": "busy"},
    )


class Cluster:
    """The cluster write paths of one store."""

    def __init__(self, store: RedisSessionStore) -> None:
        self._store = store

    async def _claim(self, rows: list[EncodedEvent], blobs: list[str]) -> list[str | None]:
        """Step 1: claim every id on its own slot; per row, the claim that was there first."""
        if not rows:
            return []
        pipe = self._store.client.pipeline(transaction=False)
        for row, text in zip(rows, blobs):
            pipe.set(self._store.keys.claim(row.id), text, nx=True, get=True)
        found: list[str | None] = await pipe.execute()
        return found

    async def _release(
        self, session_id: str, rows: list[EncodedEvent], blobs: list[str], mine: list[int]
    ) -> None:
        """Undo the claims of a refused call, each only while it still holds our row.

        Another call appending the same id may have completed our claim in between (stored
        our row in the session); such a claim is put back, so the id stays taken.
        """
        store = self._store
        keys = store.keys
        await _bounded(
            [store.eval("cad", [keys.claim(rows[i].id)], [blobs[i]]) for i in mine],
            _PARALLEL_SESSIONS,
        )
        if not mine:
            return
        again: list[int] = []
        by_session: dict[str, list[int]] = {}
        for i in mine:  # each row is held, if at all, in its own session
            by_session.setdefault(rows[i].session_id or session_id, []).append(i)
        for sid, idx in by_session.items():
            held = await store.client.hmget(keys.session(sid)[IDS], [rows[i].id for i in idx])
            again += [i for i, seq in zip(idx, held) if seq is not None]
        if again:
            pipe = store.client.pipeline(transaction=False)
            for i in again:
                pipe.set(keys.claim(rows[i].id), blobs[i], nx=True)
            await pipe.execute()

    async def store_rows(
        self,
        rows: list[EncodedEvent],
        blobs: list[str],
        session: tuple[Session, str] | None,
        run: tuple[Run, str] | None,
        expected: int | None,
        touch: Iterable[str],
    ) -> list[Event]:
        store = self._store
        client, keys = store.client, store.keys
        target = session[0].id if session is not None else rows[0].session_id if rows else ""
        touched = set(touch)
        ours: set[int] = set()  # rows whose claim this call took (released if refused)
        old_run_session = ""
        if run is not None:
            old_run_session = (
                await client.set(keys.run(run[0].id), run[0].session_id, get=True) or ""
            )
        try:
            retry = Retry(WRITE_RETRY)
            while True:
                winners: list[str] = list(blobs)
                fresh = [True] * len(rows)
                for i, prior in enumerate(await self._claim(rows, blobs)):
                    if prior is not None and i not in ours:
                        winners[i] = prior
                        fresh[i] = False
                    else:
                        ours.add(i)
                # step 2: one atomic script per session (the flushed session's carries its records)
                groups: dict[str, list[int]] = {}
                for i, text in enumerate(winners):
                    groups.setdefault(blob_session(text), []).append(i)
                flush_sid = session[0].id if session is not None else None
                run_sid = run[0].session_id if run is not None else None
                wanted = {s for s in (flush_sid, run_sid, *touched) if s is not None}
                order = [*groups, *sorted(wanted - set(groups))]
                plans: list[WritePlan] = []
                for sid in order:
                    idx = groups.get(sid, [])
                    plan = WritePlan(
                        keys,
                        cluster=True,
                        blobs=[winners[i] for i in idx],
                        claimed=[n for n, i in enumerate(idx) if not fresh[i]],
                    )
                    plan.session(sid)
                    if expected is not None and sid == target:
                        plan.expect(sid, expected, shortcut=bool(rows))
                    if session is not None and sid == flush_sid:
                        plan.save_session(*session)
                    if run is not None and sid == run_sid:
                        plan.save_run(sid, run[0].id, run[1])
                    plan.touch_new()
                    if sid in touched:
                        plan.touch(sid)
                    plans.append(plan)
                # the checked session first: if it refuses, nothing else may be written
                results: dict[str, WriteResult] = {}
                if expected is not None and target in order:
                    results[target] = res = await store.write(plans[order.index(target)])
                    if res.status == "CONFLICT":
                        await self._release(target, rows, blobs, sorted(ours))
                        raise sequence_conflict(target, int(res.out[0]), int(res.out[1]))
                rest = [(sid, p) for sid, p in zip(order, plans) if sid not in results]
                done = await _bounded([store.write(p) for _, p in rest], _PARALLEL_SESSIONS)
                results.update((sid, res) for (sid, _), res in zip(rest, done))
                if any(res.status != "OK" for res in results.values()):
                    if not await retry.pause():
                        raise gave_up("write", retry, "the session stayed fenced by a delete")
                    continue
                stored: list[Event | None] = [None] * len(rows)
                for sid in order:
                    res = results[sid]
                    for n, i in enumerate(groups.get(sid, [])):
                        seq, text = res.row(n)
                        if fresh[i] and text == "":
                            stored[i] = decode_event(rows[i], seq)
                        else:
                            stored[i] = unblob(text or winners[i], seq)
                # step 3: the list_sessions index, and the run's old session
                if session is not None:
                    await store.index(session[0], session[1], results[session[0].id].version)
                if run is not None and old_run_session and old_run_session != run[0].session_id:
                    plan = WritePlan(keys, cluster=True)
                    plan.remove_run(old_run_session, run[0].id)
                    await store.write(plan)
                return [e for e in stored if e is not None]
        except rexc.ResponseError:
            # The server refused a write script (it checks before its first write, so that
            # session got nothing): take back this call's claims and run pointer, or they
            # would outlive a flush that left nothing else.
            await self._release(target, rows, blobs, sorted(ours))
            if run is not None:
                pointer = keys.run(run[0].id)
                if old_run_session:
                    await client.set(pointer, old_run_session)
                else:
                    await store.eval("cad", [pointer], [run[0].session_id])
            raise

    async def import_rows(
        self,
        session_id: str,
        session_doc: str | None,
        runs: list[tuple[Run, str]],
        rows: list[EncodedEvent],
        blobs: list[str],
        seqs: list[int],
        latest: int,
    ) -> tuple[int, int]:
        store = self._store
        keys = store.keys
        retry = Retry(WRITE_RETRY)
        session = None if session_doc is None else decode_session(session_doc)
        ours: set[int] = set()  # rows whose claim this call took (released if refused)
        while True:
            prior = await self._claim(rows, blobs)
            for i, p in enumerate(prior):
                if p is None or i in ours:
                    ours.add(i)
                    prior[i] = None
            for i, p in enumerate(prior):
                if p is not None and blob_session(p) != session_id:
                    await self._release(session_id, rows, blobs, sorted(ours))
                    raise sequence_conflict(
                        session_id,
                        seqs[i],
                        -1,
                        f"event {rows[i].id!r} is already stored in session {blob_session(p)!r}",
                    )
            plan = WritePlan(
                keys,
                cluster=True,
                blobs=blobs,
                claimed=[i for i, p in enumerate(prior) if p is not None],
            )
            plan.session(session_id)
            plan.numbered(seqs, latest)
            if session is not None and session_doc is not None:
                plan.save_session(session, session_doc)
            for run, doc in runs:
                plan.save_run(session_id, run.id, doc)
            res = await store.write(plan)
            if res.status == "CONFLICT":
                await self._release(session_id, rows, blobs, sorted(ours))
                expected, actual, *reason = res.out
                raise sequence_conflict(session_id, int(expected), int(actual), *reason)
            if res.status == "OK":
                break
            if not await retry.pause():
                raise gave_up("import", retry, "the session stayed fenced by a delete")
        if session is not None and session_doc is not None:
            await store.index(session, session_doc, res.version)
        for run, _ in runs:  # the run id -> session pointers, and runs moved here
            old = await store.client.set(keys.run(run.id), session_id, get=True) or ""
            if old and old != session_id:
                moved = WritePlan(keys, cluster=True)
                moved.remove_run(old, run.id)
                await store.write(moved)
        return int(res.out[0]), int(res.out[1])

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
        _, runs, version = res

        async def renew() -> None:
            """Keep the fence up between steps; a lapsed one may have let writers in."""
            if not await store.eval("fence", [k[FENCE]], [BUSY_TTL_MS]):
                raise lapsed()

        # the fence holds writers off: walk the ids hash a batch at a time, dropping claims
        cursor = 0
        while True:
            cursor, page = await client.hscan(k[IDS], cursor, count=GC_BATCH)
            if page:
                pipe = client.pipeline(transaction=False)
                for event_id in page:
                    pipe.delete(keys.claim(event_id))  # (a cluster pipeline drops UNLINK)
                await pipe.execute()
            await renew()
            if not cursor:
                break
        for run_id in runs:
            await store.eval("cad", [keys.run(run_id)], [session_id])
        await renew()
        await store.index(session_id, "", version)
        if await store.eval("delete_end", k, [DONE_TTL_MS]) != "OK":
            raise lapsed()

    async def run_session(self, run_id: str) -> str | None:
        sid: str | None = await self._store.client.get(self._store.keys.run(run_id))
        return sid
