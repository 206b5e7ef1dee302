"""Writes on a single Redis node: every write is one script call, one atomic step.

The global indexes (event id -> session, run id -> session, list_sessions) are ordinary keys
on the same server, so the write script changes them together with the session's log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from ..base import heavy
from ..codec import EncodedEvent, decode_event, decode_session
from ..errors import sequence_conflict
from ..models import Event, Run, Session
from ..retry import Retry
from .keys import EV, IDS
from .limits import GC_BATCH, WRITE_RETRY, gave_up
from .plan import WritePlan, WriteResult
from .rows import unblob

if TYPE_CHECKING:
    from .store import RedisSessionStore

__all__ = ["SingleNode"]


class SingleNode:
    """The single-node write paths of one store."""

    def __init__(self, store: RedisSessionStore) -> None:
        self._store = store

    async def _run(
        self, build: Callable[[Iterable[str]], Awaitable[WritePlan]], conflict_sid: str
    ) -> WriteResult:
        """Run the plan ``build`` makes until the script accepts it, within WRITE_RETRY."""
        owners: set[str] = set()  # sessions holding ids of this call, found by the script
        retry = Retry(WRITE_RETRY)
        while True:
            res = await self._store.write(await build(sorted(owners)))
            if res.status == "OK":
                return res
            if res.status == "CONFLICT":
                expected, actual, *reason = res.out
                raise sequence_conflict(conflict_sid, int(expected), int(actual), *reason)
            if res.status == "OWNERS":
                # name those sessions: the script then checks them in the same atomic step
                # (the first time at once; again only if they changed meanwhile)
                first_time = not owners
                owners.update(res.out)
                if first_time:
                    continue
            if not await retry.pause():
                why = {"OWNERS": "the sessions holding its ids kept changing"}.get(
                    res.status, "another writer kept moving the run"
                )
                raise gave_up("write", retry, why)

    async def _add_runs(self, plan: WritePlan, runs: Iterable[tuple[Run, str]]) -> None:
        """A run re-saved under another session moves; the script re-checks its owner."""
        for r, doc in runs:
            old = await self._store.client.hget(self._store.keys.run_index, r.id) or ""
            plan.save_run(r.session_id, r.id, doc)
            plan.set_run_owner(r.id, r.session_id)
            plan.check_run_owner(r.id, old)
            if old and old != r.session_id:
                plan.remove_run(old, r.id)

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
        target = session[0].id if session is not None else rows[0].session_id if rows else ""

        named = list(dict.fromkeys([row.session_id for row in rows]))

        async def build(owners: Iterable[str]) -> WritePlan:
            plan = WritePlan(store.keys, cluster=False, blobs=blobs, owners=named)
            for sid in owners:
                plan.session(sid)
            if expected is not None:
                plan.expect(target, expected, shortcut=bool(rows))
            if session is not None:
                plan.save_session(*session)
            await self._add_runs(plan, [] if run is None else [run])
            plan.touch_new()
            for sid in touch:
                plan.touch(sid)
            return plan

        res = await self._run(build, target)
        if heavy(rows):  # many or large rows: decoded in a thread (issue 13)
            return await asyncio.to_thread(_stored, rows, res)
        return _stored(rows, res)

    async def import_rows(
        self,
        session_id: str,
        session_doc: str | None,
        runs: list[tuple[Run, str]],
        blobs: list[str],
        seqs: list[int],
        latest: int,
    ) -> tuple[int, int]:
        store = self._store

        async def build(owners: Iterable[str]) -> WritePlan:
            plan = WritePlan(store.keys, cluster=False, blobs=blobs)
            plan.session(session_id)
            for sid in owners:
                plan.session(sid)
            plan.numbered(seqs, latest)
            if session_doc is not None:
                plan.save_session(decode_session(session_doc), session_doc)
            await self._add_runs(plan, runs)
            return plan

        res = await self._run(build, session_id)
        return int(res.out[0]), int(res.out[1])

    async def delete_session(self, session_id: str) -> None:
        """One atomic step, then the id index clean-up in bounded batches (lua/delete.lua);
        and one clean-up an interrupted delete left, if any."""
        store = self._store
        keys = store.keys
        garbage = keys.garbage(session_id)
        left = await store.eval(
            "delete",
            [
                *keys.session(session_id),
                keys.event_index,
                keys.run_index,
                *keys.list_index,
                keys.gc,
                garbage,
                keys.touched_index,
            ],
            [session_id, GC_BATCH],
        )
        if left:
            await self.collect(session_id, garbage)
        leftover = await store.client.hrandfield(keys.gc, 1, withvalues=True)
        if leftover and leftover[0] != garbage:
            await self.collect(leftover[1], leftover[0])

    async def collect(self, session_id: str, garbage: str) -> None:
        """Remove the id index entries a deleted session left: one HSCAN pass over its
        garbage key (its events), GC_BATCH per script call (a pass always ends)."""
        store = self._store
        keys = store.keys
        live = keys.session(session_id)
        cursor = "0"
        while True:
            cursor = await store.eval(
                "gc",
                [keys.event_index, live[IDS], garbage, keys.gc, live[EV]],
                [session_id, cursor, GC_BATCH],
            )
            if cursor == "0":
                return

    async def run_session(self, run_id: str) -> str | None:
        sid: str | None = await self._store.client.hget(self._store.keys.run_index, run_id)
        return sid


def _stored(rows: list[EncodedEvent], res: WriteResult) -> list[Event]:
    """One event per row: ours decoded from what we sent, an earlier one from its blob."""
    stored: list[Event] = []
    for i, row in enumerate(rows):
        seq, text = res.row(i)
        stored.append(decode_event(row, seq) if text == "" else unblob(text, seq))
    return stored
