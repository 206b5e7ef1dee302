"""Writes on a single Redis node: every write is one script call, one atomic step.

The global indexes (event id -> session, run id -> session, list_sessions) are ordinary keys
on the same server, so the write script changes them together with the session's log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..codec import EncodedEvent, decode_event
from ..models import Event, Run, Session
from .keys import EV, IDS
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
        attempt = 0
        while True:
            plan = WritePlan(store.keys, cluster=False, blobs=blobs)
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
            if res.status != "OK":
                await store.backoff(attempt, "write")
                attempt += 1
                continue
            stored: list[Event] = []
            missing = False
            for i, row in enumerate(rows):
                seq, text = res.row(i)
                if seq == 0:  # the id lives in a session not named in this call
                    found = await self._lookup(text, row.id)
                    if found is None:
                        missing = True  # deleted meanwhile: the id is free again
                        break
                    stored.append(found)
                elif text == "":
                    stored.append(decode_event(row, seq))
                else:
                    stored.append(unblob(text, seq))
            if missing:
                attempt += 1
                continue
            return stored

    async def _lookup(self, session_id: str, event_id: str) -> Event | None:
        k = self._store.keys.session(session_id)
        client = self._store.client
        seq = await client.hget(k[IDS], event_id)
        if seq is None:
            return None
        text = await client.hget(k[EV], seq)
        return None if text is None else unblob(text, int(seq))

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
