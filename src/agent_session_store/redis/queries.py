"""Query and retention primitives on Redis (contract 7 and 8), single node and Cluster.

Contract 7.8 lets Redis scan: the records are read in bounded batches (SCAN over the
session keys, pipelined reads, HSCAN over a session's events), then filtered and ordered
here exactly as the memory store does, and paged by the keyset position. Only the writes
run as scripts: a soft delete is an ordinary session save refused if the record changed
since it was read, a prune is one script in the session's slot (lua/prune.lua).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..codec import decode_run, decode_session, encode_session
from ..models import Event, Run, Session, from_micros, parse_iso, to_micros
from ..query import (
    EventSearch,
    Position,
    RunFilter,
    RunGroup,
    RunSearch,
    SessionSearch,
    group_runs,
    page_sorted,
    run_facts,
)
from .cluster import _bounded
from .keys import EV, RECORD, RUNS, SEQ, SESSION_KEYS
from .plan import WritePlan
from .rows import unblob

if TYPE_CHECKING:
    from .store import RedisSessionStore

__all__ = ["Queries"]

BATCH = 1000  # keys per SCAN step and reads per pipeline: each server call stays small
MARK_TRIES = 5  # a soft delete re-reads a session this often while writers keep moving it
MARKS_IN_FLIGHT = 16  # soft-delete saves sent at once (each one small script call)

_UNESCAPE = re.compile("%(25|7B|7D)")
_GLOB = re.compile(r"([*?\[\]\\])")


def _unescape(text: str) -> str:
    return _UNESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


@dataclass(frozen=True, slots=True)
class _Record:
    """A session record read for a retention mark: the row and the version it had."""

    row: _Row
    version: str
    touched: str


@dataclass(frozen=True, slots=True)
class _Row:
    """A session as the list index holds it, decoded only as far as filters need; the full
    ``Session`` is built for the items of a page only."""

    id: str
    agent_id: str
    status: str
    tags: frozenset[str]
    created_us: int
    updated_us: int
    deleted_us: int | None
    doc: str
    touched: str | None

    @classmethod
    def parse(cls, doc: str, touched: str | None) -> _Row:
        d = json.loads(doc)
        deleted = d.get("deleted_at")
        return cls(
            d["id"],
            d["agent_id"],
            d["status"],
            frozenset(d.get("tags") or ()),
            _iso_us(d["created_at"]),
            int(touched) if touched else _iso_us(d["updated_at"]),
            None if deleted is None else _iso_us(deleted),
            doc,
            touched,
        )

    def session(self) -> Session:
        s = decode_session(self.doc)
        return s if not self.touched else s.replace(updated_at=from_micros(int(self.touched)))


def _iso_us(text: str) -> int:
    return to_micros(parse_iso(text, "session timestamp"))


def _matches(r: _Row, q: SessionSearch) -> bool:
    return q.matches(
        agent_id=r.agent_id,
        status=r.status,
        tags=r.tags,
        created_us=r.created_us,
        updated_us=r.updated_us,
        deleted_us=r.deleted_us,
    )


def _due(r: _Row, cutoff_us: int, statuses: tuple[str, ...], tags: tuple[str, ...]) -> bool:
    return (
        r.deleted_us is None
        and r.status not in statuses
        and r.tags.isdisjoint(tags)
        and r.updated_us < cutoff_us
    )


class Queries:
    """The scans of one store."""

    def __init__(self, store: RedisSessionStore) -> None:
        self._store = store

    # ------------------------------------------------------------ reading in batches

    async def _session_ids(self, key: int) -> AsyncIterator[list[str]]:
        """Ids of the sessions that have their ``SESSION_KEYS[key]`` key, a batch at a time
        (SCAN visits every node of a cluster)."""
        store = self._store
        head = f"{store.prefix}:{{"
        tail = f"}}:{SESSION_KEYS[key]}"
        pattern = _GLOB.sub(r"\\\1", store.prefix) + ":{*" + tail
        batch: list[str] = []
        seen: set[str] = set()  # SCAN may return a key twice
        async for name in store.client.scan_iter(match=pattern, count=BATCH):
            if not (name.startswith(head) and name.endswith(tail)):
                continue
            sid = _unescape(name[len(head) : -len(tail)])
            if "}" in name[len(head) : -len(tail)] or sid in seen:
                continue
            seen.add(sid)
            batch.append(sid)
            if len(batch) >= BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    async def _pipelined(self, calls: Iterable[tuple[str, str, tuple[Any, ...]]]) -> list[Any]:
        pipe = self._store.client.pipeline(transaction=False)
        for command, key, args in calls:
            getattr(pipe, command)(key, *args)
        return list(await pipe.execute())

    async def _records_of(self, ids: list[str]) -> list[_Record]:
        """The sessions' own records (the truth the list index follows), with versions."""
        keys = self._store.keys
        got = await self._pipelined(
            ("hmget", keys.session(sid)[RECORD], (["doc", "touched", "v"],)) for sid in ids
        )
        return [
            _Record(_Row.parse(doc, touched), version or "", touched or "")
            for doc, touched, version in got
            if doc is not None
        ]

    async def _rows(self) -> AsyncIterator[_Row]:
        """Every session with a record, from the list index's documents: one HSCAN batch at a
        time, plus each batch's touched values (C5)."""
        store = self._store
        client = store.client
        cursor = 0
        while True:
            cursor, page = await client.hscan(store.keys.list_index[5], cursor, count=BATCH)
            if page:
                ids = list(page)
                if store.cluster:  # touched lives in each session's record
                    touched = await self._pipelined(
                        ("hget", store.keys.session(sid)[RECORD], ("touched",)) for sid in ids
                    )
                else:
                    touched = await client.hmget(store.keys.touched_index, ids)
                for sid, t in zip(ids, touched):
                    yield _Row.parse(page[sid], t)
            if not cursor:
                return

    async def _runs(self, session_id: str | None = None) -> list[Run]:
        keys = self._store.keys
        if session_id is not None:
            docs = await self._store.client.hvals(keys.session(session_id)[RUNS])
            return [decode_run(d) for d in docs]
        runs: list[Run] = []
        async for ids in self._session_ids(RUNS):
            for docs in await self._pipelined(("hvals", keys.session(s)[RUNS], ()) for s in ids):
                runs += [decode_run(d) for d in docs]
        return runs

    async def _agents(self, session_ids: Iterable[str]) -> dict[str, str]:
        ids = sorted(set(session_ids))
        agents: dict[str, str] = {}
        for start in range(0, len(ids), BATCH):
            for r in await self._records_of(ids[start : start + BATCH]):
                agents[r.row.id] = r.row.agent_id
        return agents

    async def _events(self, session_id: str) -> AsyncIterator[list[Event]]:
        """One session's events, a HSCAN batch at a time, in no particular order."""
        key = self._store.keys.session(session_id)[EV]
        cursor = 0
        while True:
            cursor, page = await self._store.client.hscan(key, cursor, count=BATCH)
            if page:
                yield [unblob(text, int(seq)) for seq, text in page.items()]
            if not cursor:
                return

    async def _event_sessions(self, q: EventSearch) -> AsyncIterator[str]:
        if q.session_ids is not None:
            for sid in q.session_ids:
                yield sid
            return
        async for ids in self._session_ids(EV):
            for sid in ids:
                yield sid

    # ------------------------------------------------------------ sessions

    async def search_sessions(
        self, q: SessionSearch, after: Position | None, limit: int
    ) -> list[Session]:
        by_updated = q.order_by.startswith("updated")
        keyed: list[tuple[Position, Any]] = [
            (((r.updated_us if by_updated else r.created_us), r.id), r)
            async for r in self._rows()
            if _matches(r, q)
        ]
        return [r.session() for r in page_sorted(keyed, q.order_by, after, limit)]

    async def count_sessions(self, q: SessionSearch) -> int:
        return sum([1 async for r in self._rows() if _matches(r, q)])

    # ------------------------------------------------------------ runs

    async def search_runs(self, q: RunSearch, after: Position | None, limit: int) -> list[Run]:
        runs = await self._runs(q.session_id)
        agents = await self._agents(r.session_id for r in runs) if q.agent_id is not None else {}
        keyed: list[tuple[Position, Any]] = []
        for r in runs:
            facts = run_facts(r)
            started = to_micros(r.started_at)
            if q.matches(
                session_id=r.session_id,
                agent_id=agents.get(r.session_id),
                status=r.status.value,
                started_us=started,
                facts=facts,
            ):
                keyed.append((q.position(r.id, started, facts), r))
        return page_sorted(keyed, q.order_by, after, limit)

    async def run_groups(self, f: RunFilter) -> list[RunGroup]:
        runs = await self._runs(f.session_id)
        agents = await self._agents(r.session_id for r in runs) if f.agent_id is not None else {}
        picked = []
        for r in runs:
            facts = run_facts(r)
            if f.matches(
                agent_id=agents.get(r.session_id),
                provider=facts.provider,
                started_us=to_micros(r.started_at),
            ):
                picked.append((r.status.value, facts))
        return group_runs(picked)

    # ------------------------------------------------------------ events

    async def event_stats(self, session_id: str) -> tuple[int, int | None, int | None]:
        count, low, high = 0, None, None
        async for events in self._events(session_id):
            stamps = [to_micros(e.timestamp) for e in events]
            count += len(stamps)
            low = min(stamps) if low is None else min(low, *stamps)
            high = max(stamps) if high is None else max(high, *stamps)
        return count, low, high

    async def _matching_events(self, q: EventSearch) -> AsyncIterator[Event]:
        async for sid in self._event_sessions(q):
            async for events in self._events(sid):
                for e in events:
                    if q.matches(
                        run_id=e.run_id,
                        type=e.type.value,
                        provider=e.provider,
                        timestamp_us=to_micros(e.timestamp),
                        correlation_id=e.correlation_id,
                    ):
                        yield e

    async def search_events(
        self, q: EventSearch, after: Position | None, limit: int
    ) -> list[Event]:
        by_seq = q.order_by == "sequence_asc"
        keyed: list[tuple[Position, Any]] = [
            (((e.sequence_number or 0) if by_seq else to_micros(e.timestamp), e.id), e)
            async for e in self._matching_events(q)
        ]
        return page_sorted(keyed, q.order_by, after, limit)

    async def count_events(self, q: EventSearch) -> int:
        return sum([1 async for _ in self._matching_events(q)])

    # ------------------------------------------------------------ retention

    async def soft_delete(
        self,
        cutoff_us: int,
        exempt_statuses: tuple[str, ...],
        exempt_tags: tuple[str, ...],
        now: datetime,
        dry_run: bool,
    ) -> int:
        due = [r.id async for r in self._rows() if _due(r, cutoff_us, exempt_statuses, exempt_tags)]
        if dry_run:
            return len(due)
        marked = 0
        for start in range(0, len(due), BATCH):
            records = await self._records_of(due[start : start + BATCH])
            calls = [
                self._mark(r, cutoff_us, exempt_statuses, exempt_tags, now)
                for r in records
                if _due(r.row, cutoff_us, exempt_statuses, exempt_tags)
            ]
            marked += sum(await _bounded(calls, MARKS_IN_FLIGHT))
        return marked

    async def _mark(
        self,
        r: _Record,
        cutoff_us: int,
        statuses: tuple[str, ...],
        tags: tuple[str, ...],
        now: datetime,
    ) -> int:
        """Save the session with ``deleted_at = now`` and its current ``updated_at``, refused
        by the script if the record moved since it was read; then read it again and re-check."""
        store = self._store
        for _ in range(MARK_TRIES):
            session = r.row.session().replace(deleted_at=now)
            doc = encode_session(session)
            plan = WritePlan(store.keys, cluster=store.cluster)
            plan.save_session(session, doc)
            plan.unless_changed(session.id, r.version, r.touched)
            res = await store.write(plan)
            if res.status == "OK":
                if store.cluster:
                    await store.index(session, doc, res.version)
                return 1
            if res.status == "BUSY":
                return 0  # being deleted
            again = await self._records_of([session.id])
            if not again or not _due(again[0].row, cutoff_us, statuses, tags):
                return 0
            r = again[0]
        return 0

    async def deleted_before(self, cutoff_us: int) -> list[str]:
        return sorted(
            [
                r.id
                async for r in self._rows()
                if r.deleted_us is not None and r.deleted_us < cutoff_us
            ]
        )

    async def sessions_over(self, max_events: int) -> list[str]:
        keys = self._store.keys
        ids = [r.id async for r in self._rows()]
        over: list[str] = []
        for start in range(0, len(ids), BATCH):
            batch = ids[start : start + BATCH]
            counts = await self._pipelined(("hlen", keys.session(s)[EV], ()) for s in batch)
            over += [s for s, n in zip(batch, counts) if n > max_events]
        return sorted(over)

    async def prune(
        self,
        session_id: str,
        max_events: int,
        first_types: tuple[str, ...],
        protected: frozenset[str],
        dry_run: bool,
    ) -> int:
        store = self._store
        keys = store.keys
        script_keys = keys.session(session_id)
        if not store.cluster:
            script_keys.append(keys.event_index)
        out = await store.eval(
            "prune",
            script_keys,
            [
                session_id,
                max_events,
                1 if dry_run else 0,
                json.dumps(list(first_types)),
                json.dumps(sorted(protected)),
            ],
        )
        count = int(out[0])
        if count < 0:
            return 0  # a delete fences the session: nothing of it is left to prune
        if store.cluster:  # the pruned ids' claims, each only while it still holds our row
            for i in range(1, len(out), 2):
                await store.eval("cad", [keys.claim(out[i])], [out[i + 1]])
        return count

    async def health(self) -> list[str]:
        store = self._store
        keys = store.keys
        problems: list[str] = []
        async for ids in self._session_ids(RUNS):
            has = await self._pipelined(("hexists", keys.session(s)[RECORD], ("doc",)) for s in ids)
            lonely = [s for s, ok in zip(ids, has) if not ok]
            for sid in sorted(lonely):
                for run_id in sorted(await store.client.hkeys(keys.session(sid)[RUNS])):
                    problems.append(
                        f"run {run_id!r} belongs to session {sid!r}, which has no record"
                    )
        async for ids in self._session_ids(EV):
            counters = await self._pipelined(("get", keys.session(s)[SEQ], ()) for s in ids)
            for sid, counter in zip(ids, counters):
                top = 0
                async for events in self._events(sid):
                    top = max(top, *(e.sequence_number or 0 for e in events))
                last = int(counter or 0)
                if top > last:
                    problems.append(f"session {sid!r}: counter {last} is below event {top}")
        problems += await self._index_problems()
        return problems

    async def _index_problems(self) -> list[str]:
        """The list_sessions index against the session records."""
        store = self._store
        docs_key = store.keys.list_index[5]
        indexed: set[str] = set()
        async for sid, _ in store.client.hscan_iter(docs_key, count=BATCH):
            indexed.add(sid)
        recorded: set[str] = set()
        async for ids in self._session_ids(RECORD):
            recorded.update(r.row.id for r in await self._records_of(ids))
        return [
            f"session {sid!r} is in the list index but has no record"
            for sid in sorted(indexed - recorded)
        ] + [
            f"session {sid!r} has a record but is missing from the list index"
            for sid in sorted(recorded - indexed)
        ]
