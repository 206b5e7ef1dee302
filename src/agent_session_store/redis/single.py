"""Writes on a single Redis node: every write is one script call, one atomic step.

The global indexes (event id -> session, run id -> session, list_sessions) are ordinary keys
on the same server, so the write script changes them together with the session's log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..codec import EncodedEvent, decode_event
from ..models import Event, Run, Session
from ..retry import Retry
from .limits import WRITE_RETRY, gave_up
from .plan import WritePlan
from .rows import unblob

if TYPE_CHECKING:
    from .store import RedisSessionStore

__all__ = ["SingleNode"]


class SingleNode:
    """The single-node write paths of one store."""

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
        owners: set[str] = set()  # sessions holding ids of this call, found by the script
        retry = Retry(WRITE_RETRY)
        while True:
            plan = WritePlan(store.keys, cluster=False, blobs=blobs)
            for sid in sorted(owners):
                plan.session(sid)
            if session is not None:
                plan.save_session(*session)
            if run is not None:
                r, doc = run
                # a run re-saved under another session moves: the script re-checks the owner
                old = await store.client.hget(store.keys.run_index, r.id) or ""
                plan.save_run(r.session_id, r.id, doc)
                plan.set_run_owner(r.id, r.session_id)
                plan.check_run_owner(r.id, old)
                if old and old != r.session_id:
                    plan.remove_run(old, r.id)
            res = await store.write(plan)
            if res.status == "OK":
                break
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
        stored: list[Event] = []
        for i, row in enumerate(rows):
            seq, text = res.row(i)
            stored.append(decode_event(row, seq) if text == "" else unblob(text, seq))
        return stored

    async def delete_session(self, session_id: str) -> None:
        keys = self._store.keys
        await self._store.eval(
            "delete",
            [*keys.session(session_id), keys.event_index, keys.run_index, *keys.list_index],
            [session_id],
        )

    async def run_session(self, run_id: str) -> str | None:
        sid: str | None = await self._store.client.hget(self._store.keys.run_index, run_id)
        return sid
