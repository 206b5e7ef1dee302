"""In-memory session store: for tests, notebooks and single-process tools.

Everything lives in this process and is gone when it exits. Each operation runs to completion
on the event loop without awaiting, so operations are atomic with respect to each other
without any lock. Use one store from one event loop.

Costs: an append is O(1) (plus the payload's JSON encoding); ``get_events`` slices the
session's own log by sequence, and uses per-run and per-type position lists for those
filters, so a page costs what it returns, however large the store.

Memory: an event is held as its JSON text in a short tuple (``_Held``), its time and number in
arrays, one packed int in the id index: about 360 B of RSS for a small event (issue 13's bar:
500 B). Reads decode from that form, so every caller gets payload dicts of its own.
"""

from __future__ import annotations

import asyncio
import operator
from array import array
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from itertools import count, islice, repeat
from typing import Any, cast

from .base import EventQuery, NumberedRow, SessionStoreBase
from .codec import (
    EncodedEvent,
    decode_event,
    decode_held,
    decode_run,
    decode_session,
    encode_session,
)
from .errors import ValidationError, sequence_conflict
from .models import Event, Run, RunStatus, Session, SessionStatus, to_micros, utcnow
from .query import (
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
from .urls import number_options, query_options
from .wakes import MAX_RUNS, Wake, wakes_of_rows

__all__ = ["InMemorySessionStore"]

_SessionKey = tuple[int, str]  # (created_at in µs, id): the list_sessions order


#: A held event, compact (issue 13: <= 500 B a held event): ``(id, type, run_id, data)``, and
#: ``metadata, schema_version, provider, correlation_id`` after them only when one is not
#: the default. The session id, time and number are not in it: the log holds them once, or
#: in arrays (8 bytes where an int object is 32). ``codec.decode_held`` reads it back.
_Held = tuple[Any, ...]

#: ``_event_ids`` values: ``log number << _SEQ_BITS | sequence``, one int (32 bytes, not a
#: tuple and an int: 88); a number past the bits (an import's) keeps a ``(log, seq)`` tuple.
_SEQ_BITS = 40
_SEQ_LIMIT = 1 << _SEQ_BITS
_Place = int | tuple[int, int]


def _place(num: int, seq: int) -> _Place:
    return (num << _SEQ_BITS) | seq if 0 <= seq < _SEQ_LIMIT else (num, seq)


def _unplace(place: _Place) -> tuple[int, int]:
    """``(log number, sequence)`` of an ``_event_ids`` value."""
    return divmod(place, _SEQ_LIMIT) if isinstance(place, int) else place


def _hold(row: EncodedEvent, names: dict[str, str]) -> _Held:
    """The compact form of a row; ``names`` gives one shared object per type, run and
    provider text (callers often pass a new equal string with every event)."""
    kind = names.setdefault(row.type, row.type)
    run = row.run_id
    if run is not None:
        run = names.setdefault(run, run)
    provider = row.provider
    if (
        provider is None
        and row.correlation_id is None
        and row.schema_version == 1
        and row.metadata == "{}"
    ):
        return (row.id, kind, run, row.data)
    if provider is not None:
        provider = names.setdefault(provider, provider)
    return (
        row.id,
        kind,
        run,
        row.data,
        row.metadata,
        row.schema_version,
        provider,
        row.correlation_id,
    )


def _payload_chars(held: _Held) -> int:
    return len(held[3]) + len(held[4]) if len(held) > 4 else len(held[3])


class _Log:
    """One session's events in sequence order, and the session's counter.

    ``rows``, ``stamps`` (µs) and ``seqs`` run in parallel. Numbers are dense (n at index
    n - 1) until an import brings gaps; only then does a lookup pay for a bisect.
    """

    __slots__ = ("by_run", "by_type", "last", "names", "num", "rows", "seqs", "sid", "stamps")

    def __init__(self, sid: str, num: int) -> None:
        self.sid = sid
        self.num = num  # the log's number in ``_event_ids`` values
        self.rows: list[_Held] = []
        self.stamps: array[int] = array("q")
        self.seqs: array[int] = array("q")
        self.last = 0
        self.by_run: dict[str, array[int]] = {}
        self.by_type: dict[str, array[int]] = {}
        self.names: dict[str, str] = {}

    @property
    def dense(self) -> bool:
        return len(self.rows) == self.last

    def index(self, seq: int) -> int:
        """The position of ``seq`` in ``rows``, or -1 when that number holds no event."""
        if self.dense:
            return seq - 1 if 0 < seq <= self.last else -1
        i = bisect_left(self.seqs, seq)
        return i if i < len(self.seqs) and self.seqs[i] == seq else -1

    def row(self, seq: int) -> EncodedEvent:
        """The stored row at ``seq`` in the codec's full form (a retry's answer)."""
        i = self.index(seq)
        if i < 0:
            raise IndexError(seq)
        held, stamp = self.rows[i], self.stamps[i]
        if len(held) == 4:
            return EncodedEvent(
                held[0], self.sid, held[1], held[2], stamp, held[3], "{}", 1, None, None
            )
        return EncodedEvent(held[0], self.sid, held[1], held[2], stamp, *held[3:])

    def event(self, i: int) -> Event:
        """The event at position ``i``, decoded."""
        return decode_held(self.rows[i], self.sid, self.stamps[i], self.seqs[i])

    def add(self, row: EncodedEvent) -> int:
        """Store a new row under the next number: ``put``, inline (the append path), and
        always at the end (``last`` is never below a held number)."""
        seq = self.last = self.last + 1
        names = self.names
        kind = row[2]
        kind = names.setdefault(kind, kind)
        run = row[3]
        if run is not None:
            run = names.setdefault(run, run)
            positions = self.by_run.get(run)
            if positions is None:
                positions = self.by_run[run] = array("q")
            positions.append(seq)
        positions = self.by_type.get(kind)
        if positions is None:
            positions = self.by_type[kind] = array("q")
        positions.append(seq)
        self.rows.append(
            (row[0], kind, run, row[5])
            if row[8] is None and row[9] is None and row[7] == 1 and row[6] == "{}"
            else _hold(row, names)
        )
        self.stamps.append(row[4])
        self.seqs.append(seq)
        return seq

    def put(self, row: EncodedEvent, seq: int) -> None:
        self.put_held(_hold(row, self.names), row.timestamp_us, seq)

    def put_held(self, held: _Held, stamp: int, seq: int) -> None:
        """Place a row at its number (an import may fill a number below the counter)."""
        if seq > (self.seqs[-1] if self.seqs else 0):
            self.rows.append(held)
            self.stamps.append(stamp)
            self.seqs.append(seq)
        else:
            i = bisect_left(self.seqs, seq)
            self.rows.insert(i, held)
            self.stamps.insert(i, stamp)
            self.seqs.insert(i, seq)
        self.last = max(self.last, seq)
        run = held[2]
        if run is not None:
            positions = self.by_run.get(run)
            if positions is None:
                positions = self.by_run[run] = array("q")
            _add_sorted(positions, seq)
        positions = self.by_type.get(held[1])
        if positions is None:
            positions = self.by_type[held[1]] = array("q")
        _add_sorted(positions, seq)


def _add_sorted(positions: array[int], seq: int) -> None:
    if not positions or positions[-1] < seq:
        positions.append(seq)
    else:
        positions.insert(bisect_left(positions, seq), seq)


class _SessionRecord:
    __slots__ = ("agent_id", "deleted_us", "doc", "key", "status", "tags", "touched", "updated_us")

    def __init__(self, key: _SessionKey, session: Session, doc: str) -> None:
        self.key = key
        self.status = session.status.value
        self.agent_id = session.agent_id
        self.tags = frozenset(session.tags)
        self.deleted_us = None if session.deleted_at is None else to_micros(session.deleted_at)
        self.updated_us = to_micros(session.updated_at)
        self.doc = doc
        #: ``updated_at`` set by activity since the doc was saved (C5); applied on read.
        self.touched: datetime | None = None

    def session(self) -> Session:
        touched = self.touched
        return decode_session(self.doc, None if touched is None else to_micros(touched))


class _RunRecord:
    __slots__ = ("doc", "facts", "key", "session_id", "status")

    def __init__(self, run: Run, doc: str) -> None:
        self.session_id = run.session_id
        self.key = (to_micros(run.started_at), run.id)
        self.status = run.status.value
        self.facts = run_facts(run)
        self.doc = doc


class InMemorySessionStore(SessionStoreBase):
    backend_name = "memory"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._sessions: dict[str, _SessionRecord] = {}
        self._order: list[_SessionKey] = []
        self._by_status: dict[str, list[_SessionKey]] = {}
        self._by_agent: dict[str, list[_SessionKey]] = {}
        self._runs: dict[str, _RunRecord] = {}
        self._runs_of: dict[str, dict[str, _RunRecord]] = {}
        self._logs: dict[str, _Log] = {}
        self._log_by_num: dict[int, _Log] = {}  # by ``_Log.num``
        self._log_nums = count(1)  # ``next`` is atomic: a ``_Plan`` thread may draw one too
        #: event id -> where it is stored (``_place``): every id, to refuse a duplicate
        self._event_ids: dict[str, _Place] = {}

    def _new_log(self, sid: str, num: int | None = None) -> _Log:
        log = self._logs[sid] = _Log(sid, next(self._log_nums) if num is None else num)
        self._log_by_num[log.num] = log
        return log

    def _where(self, event_id: str) -> tuple[str, int] | None:
        """``(session id, sequence)`` of a stored event."""
        place = self._event_ids.get(event_id)
        if place is None:
            return None
        num, seq = _unplace(place)
        return self._log_by_num[num].sid, seq

    @classmethod
    def from_url(cls, url: str, **options: Any) -> InMemorySessionStore:
        """``memory://`` (optionally ``?max_event_bytes=N``): a new, empty store every time."""
        opts = query_options(url)
        number_options(opts, options, {"max_event_bytes": int})
        opts.pop("auto_migrate", None)  # nothing to migrate; accepted so URLs stay portable
        if opts:
            raise ValidationError(f"unknown memory:// option(s): {', '.join(sorted(opts))}")
        return cls(**options)

    def __repr__(self) -> str:
        return (
            f"InMemorySessionStore({len(self._sessions)} sessions, {len(self._event_ids)} events)"
        )

    async def _open(self) -> None:
        pass

    async def _close(self) -> None:
        pass

    # ------------------------------------------------------------ sessions

    def _put_session(self, session: Session, doc: str) -> None:
        old = self._sessions.get(session.id)
        if old is not None:
            self._unindex_session(old)
        key = (to_micros(session.created_at), session.id)
        record = _SessionRecord(key, session, doc)
        self._sessions[session.id] = record
        insort(self._order, key)
        insort(self._by_status.setdefault(record.status, []), key)
        insort(self._by_agent.setdefault(record.agent_id, []), key)

    def _unindex_session(self, record: _SessionRecord) -> None:
        _remove_sorted(self._order, record.key)
        _remove_sorted(self._by_status[record.status], record.key)
        _remove_sorted(self._by_agent[record.agent_id], record.key)
        if not self._by_agent[record.agent_id]:
            del self._by_agent[record.agent_id]

    async def _save_session(self, session: Session, doc: str) -> None:
        self._put_session(session, doc)

    async def _get_session(self, session_id: str) -> Session | None:
        record = self._sessions.get(session_id)
        return None if record is None else record.session()

    def _touch(self, session_ids: Iterable[str]) -> None:
        """Activity moves a session's ``updated_at`` (C5)."""
        now: datetime | None = None
        for sid in session_ids:
            record = self._sessions.get(sid)
            if record is not None:
                record.touched = now = now or utcnow()
                record.updated_us = to_micros(now)

    async def _list_sessions(
        self,
        status: SessionStatus | None,
        agent_id: str | None,
        limit: int | None,
        offset: int,
    ) -> list[Session]:
        # Walk the smallest index that answers a filter; check any other filter per row.
        indexes: list[list[_SessionKey]] = []
        if status is not None:
            indexes.append(self._by_status.get(status.value, []))
        if agent_id is not None:
            indexes.append(self._by_agent.get(agent_id, []))
        keys = min(indexes, key=len) if indexes else self._order
        end = None if limit is None else offset + limit
        records = (self._sessions[k[1]] for k in keys)
        if len(indexes) < 2:
            chosen = [self._sessions[k[1]] for k in keys[offset:end]]
        else:
            wanted = (None if status is None else status.value, agent_id)
            matching = (r for r in records if (r.status, r.agent_id) == wanted)
            chosen = list(islice(matching, offset, end))
        return [r.session() for r in chosen]

    async def _delete_session(self, session_id: str) -> None:
        record = self._sessions.pop(session_id, None)
        if record is not None:
            self._unindex_session(record)
        for run_id in self._runs_of.pop(session_id, {}):
            del self._runs[run_id]
        log = self._logs.pop(session_id, None)
        if log is not None:
            del self._log_by_num[log.num]
            for held in log.rows:
                del self._event_ids[held[0]]

    # ------------------------------------------------------------ runs

    def _put_run(self, run: Run, doc: str) -> None:
        old = self._runs.get(run.id)
        if old is not None and old.session_id != run.session_id:
            del self._runs_of[old.session_id][run.id]
        record = _RunRecord(run, doc)
        self._runs[run.id] = record
        self._runs_of.setdefault(run.session_id, {})[run.id] = record

    async def _save_run(self, run: Run, doc: str) -> None:
        self._put_run(run, doc)
        self._touch((run.session_id,))

    async def _get_run(self, run_id: str) -> Run | None:
        record = self._runs.get(run_id)
        return None if record is None else decode_run(record.doc)

    async def _list_runs(
        self, session_id: str, status: RunStatus | None, limit: int | None
    ) -> list[Run]:
        records = sorted(self._runs_of.get(session_id, {}).values(), key=lambda r: r.key)
        if status is not None:
            records = [r for r in records if r.status == status.value]
        return [decode_run(r.doc) for r in records[:limit]]

    async def _get_active_run(self, session_id: str) -> Run | None:
        running = [
            r for r in self._runs_of.get(session_id, {}).values() if r.status == RunStatus.RUNNING
        ]
        return decode_run(max(running, key=lambda r: r.key).doc) if running else None

    # ------------------------------------------------------------ events

    def _store_rows(self, rows: list[EncodedEvent]) -> list[tuple[EncodedEvent, int]]:
        """Store; return each row as stored, with its number (decoded by ``_decoded``)."""
        stored: list[tuple[EncodedEvent, int]] = []
        ids = self._event_ids
        logs = self._logs
        touched: set[str] = set()
        # what came, for the wakes: only gathered while someone waits (the append hot path)
        new: list[tuple[str, str, str | None, int, int]] | None = [] if self._waiters else None
        for row in rows:
            known = ids.get(row.id)
            if known is not None:
                num, seq = _unplace(known)
                stored.append((self._log_by_num[num].row(seq), seq))
                continue
            log = logs.get(row.session_id)
            if log is None:
                log = self._new_log(row.session_id)
            seq = log.add(row)
            ids[row.id] = (log.num << _SEQ_BITS) | seq if seq < _SEQ_LIMIT else (log.num, seq)
            touched.add(row.session_id)
            if new is not None:
                new.append((row.session_id, row.type, row.run_id, row.timestamp_us, seq))
            stored.append((row, seq))
        if touched:
            self._touch(touched)
            if new is not None:
                self._notify(touched, wakes_of_rows(new))
        return stored

    def _check_expected(self, session_id: str, rows: list[EncodedEvent], expected: int) -> None:
        if rows and all(row.id in self._event_ids for row in rows):
            return  # a retry of a stored call succeeds whatever the counter says (3.12)
        log = self._logs.get(session_id)
        actual = 0 if log is None else log.last
        if actual != expected:
            raise sequence_conflict(session_id, expected, actual)

    async def _append(self, rows: list[EncodedEvent], expected: int | None = None) -> list[Event]:
        if len(rows) > _PREPARE_ROWS:
            plan = await asyncio.to_thread(_Plan, rows, self)
            if expected is not None:  # checked with the commit, no await between them
                self._check_expected(rows[0].session_id, rows, expected)
            return await self._commit_plan(plan)
        if expected is not None:
            self._check_expected(rows[0].session_id, rows, expected)
        return await _decoded(self._store_rows(rows))

    async def _commit_plan(self, plan: _Plan) -> list[Event]:
        """Apply a batch prepared in a thread, in one step on the event loop (readers never
        see part of it), then number and decode the results in a thread."""
        if not plan.apply(self):  # something changed under it: store the plain way
            return await _decoded(self._store_rows(plan.rows))
        return await asyncio.to_thread(plan.results)

    async def _flush(
        self,
        session: Session,
        session_doc: str,
        run: Run,
        run_doc: str,
        rows: list[EncodedEvent],
        expected: int | None = None,
    ) -> list[Event]:
        plan = None
        if len(rows) > _PREPARE_ROWS:
            plan = await asyncio.to_thread(_Plan, rows, self)
        if expected is not None:
            self._check_expected(session.id, rows, expected)
        # Everything was validated before this point; should a write still fail midway (out
        # of memory), what it changed is put back: a flush is all or nothing (3.8.7).
        undo = self._undo_point({session.id, *(r.session_id for r in rows)}, run.id)
        try:
            self._put_session(session, session_doc)
            self._put_run(run, run_doc)
            self._touch((session.id,))
            if plan is not None and plan.apply(self):
                done = plan
            else:
                stored = self._store_rows(rows)
                done = None
        except BaseException:
            undo()
            raise
        if done is not None:
            return await asyncio.to_thread(done.results)
        return await _decoded(stored)

    def _undo_point(self, session_ids: set[str], run_id: str) -> Callable[[], None]:
        """What these sessions and that run hold now, and a function that restores it.

        Appends only add at the end of a log and of its indexes, so lengths are enough."""
        logs = {
            sid: None
            if log is None
            else (
                len(log.rows),
                log.last,
                {k: len(v) for k, v in log.by_run.items()},
                {k: len(v) for k, v in log.by_type.items()},
            )
            for sid, log in ((sid, self._logs.get(sid)) for sid in session_ids)
        }
        records = {
            sid: None if rec is None else (rec, rec.touched, rec.updated_us)
            for sid, rec in ((sid, self._sessions.get(sid)) for sid in session_ids)
        }
        old_run = self._runs.get(run_id)

        def restore() -> None:
            for sid, mark in logs.items():
                log = self._logs.get(sid)
                if log is None:
                    continue
                kept = 0 if mark is None else mark[0]
                for held in log.rows[kept:]:
                    self._event_ids.pop(held[0], None)
                if mark is None:
                    del self._logs[sid]
                    del self._log_by_num[log.num]
                    continue
                del log.rows[kept:]
                del log.stamps[kept:]
                del log.seqs[kept:]
                log.last = mark[1]
                for index, lengths in ((log.by_run, mark[2]), (log.by_type, mark[3])):
                    for key in list(index):
                        if key in lengths:
                            del index[key][lengths[key] :]
                        else:
                            del index[key]
            for sid, saved in records.items():
                current = self._sessions.get(sid)
                if current is not None and (saved is None or current is not saved[0]):
                    self._unindex_session(current)
                    del self._sessions[sid]
                if saved is not None:
                    rec = saved[0]
                    rec.touched, rec.updated_us = saved[1], saved[2]
                    if self._sessions.get(sid) is not rec:
                        self._sessions[sid] = rec
                        insort(self._order, rec.key)
                        insort(self._by_status.setdefault(rec.status, []), rec.key)
                        insort(self._by_agent.setdefault(rec.agent_id, []), rec.key)
            current_run = self._runs.get(run_id)
            if current_run is not None and current_run is not old_run:
                del self._runs[run_id]
                self._runs_of.get(current_run.session_id, {}).pop(run_id, None)
            if old_run is not None:
                self._runs[run_id] = old_run
                self._runs_of.setdefault(old_run.session_id, {})[run_id] = old_run

        return restore

    async def _import(
        self,
        session_id: str,
        session_doc: str | None,
        runs: list[tuple[Run, str]],
        rows: list[NumberedRow],
        latest_sequence: int,
    ) -> tuple[int, int]:
        log = self._logs.get(session_id)
        fresh: list[NumberedRow] = []
        for row, seq in rows:  # check everything before writing anything
            known = self._where(row.id)
            if known == (session_id, seq):
                continue
            if known is not None:
                raise sequence_conflict(
                    session_id,
                    seq,
                    known[1],
                    f"event {row.id!r} is already stored in session {known[0]!r} at "
                    f"sequence {known[1]}, not at {seq} in {session_id!r}",
                )
            if log is not None and log.index(seq) >= 0:
                raise sequence_conflict(
                    session_id,
                    seq,
                    seq,
                    f"session {session_id!r} holds another event at sequence {seq}",
                )
            fresh.append((row, seq))
        if session_doc is not None:
            self._put_session(decode_session(session_doc), session_doc)
        for run, doc in runs:
            self._put_run(run, doc)
        if log is None:
            log = self._new_log(session_id)
        for row, seq in fresh:
            log.put(row, seq)
            self._event_ids[row.id] = _place(log.num, seq)
        log.last = max(log.last, latest_sequence)
        if fresh and self._waiters:
            self._notify(
                (session_id,),
                wakes_of_rows((session_id, r.type, r.run_id, r.timestamp_us, n) for r, n in fresh),
            )
        return len(fresh), len(rows) - len(fresh)

    async def _get_events(self, q: EventQuery) -> list[Event]:
        log = self._logs.get(q.session_id)
        if log is None:
            return []
        lo = q.after or 0  # candidates are numbered lo + 1 ..= hi
        hi = log.last if q.before is None else min(log.last, q.before - 1)
        if hi <= lo:
            return []
        indexes: list[array[int]] = []
        for index, value in ((log.by_run, q.run_id), (log.by_type, q.type)):
            if value is not None:
                found = index.get(value)
                if found is None:
                    return []
                indexes.append(found)
        positions = min(indexes, key=len) if indexes else None
        if positions is None and log.dense and q.since_us is None:
            # numbers are positions: the page is a slice, at C speed (a 20,000-event page
            # would otherwise cost the loop a Python step per row)
            stop = hi if q.limit is None else min(hi, lo + q.limit)
            if q.desc:
                start = lo if q.limit is None else max(lo, hi - q.limit)
                return await _decoded_page(
                    log.sid,
                    log.rows[start:hi][::-1],
                    log.stamps[start:hi][::-1],
                    range(hi, start, -1),
                )
            return await _decoded_page(
                log.sid, log.rows[lo:stop], log.stamps[lo:stop], range(lo + 1, stop + 1)
            )
        if positions is None and not log.dense:
            positions = log.seqs
        candidates: Sequence[int]
        if positions is None:
            candidates = range(lo + 1, hi + 1)
        else:
            candidates = positions[bisect_right(positions, lo) : bisect_right(positions, hi)]
        if q.desc:
            candidates = candidates[::-1]
        held: list[_Held] = []
        stamps: list[int] = []
        seqs: list[int] = []
        limit = q.limit
        rows, times = log.rows, log.stamps
        for seq in candidates:
            i = log.index(seq)
            row = rows[i]
            if q.run_id is not None and row[2] != q.run_id:
                continue
            if q.type is not None and row[1] != q.type:
                continue
            if q.since_us is not None and times[i] < q.since_us:
                continue
            held.append(row)
            stamps.append(times[i])
            seqs.append(seq)
            if limit is not None and len(held) >= limit:
                break
        return await _decoded_page(log.sid, held, stamps, seqs)

    async def _latest_sequence(self, session_id: str) -> int:
        log = self._logs.get(session_id)
        return 0 if log is None else log.last

    # ------------------------------------------------------------ query (scans: contract 7.8)

    def _session_matches(self, r: _SessionRecord, q: SessionSearch) -> bool:
        return q.matches(
            agent_id=r.agent_id,
            status=r.status,
            tags=r.tags,
            created_us=r.key[0],
            updated_us=r.updated_us,
            deleted_us=r.deleted_us,
        )

    async def _search_sessions(
        self, q: SessionSearch, after: Position | None, limit: int
    ) -> list[Session]:
        by_updated = q.order_by.startswith("updated")
        keyed: list[tuple[Position, Any]] = [
            (((r.updated_us if by_updated else r.key[0]), r.key[1]), r)
            for r in self._sessions.values()
            if self._session_matches(r, q)
        ]
        return [r.session() for r in page_sorted(keyed, q.order_by, after, limit)]

    async def _count_sessions(self, q: SessionSearch) -> int:
        return sum(1 for r in self._sessions.values() if self._session_matches(r, q))

    def _agent_of(self, session_id: str) -> str | None:
        record = self._sessions.get(session_id)
        return None if record is None else record.agent_id

    async def _search_runs(self, q: RunSearch, after: Position | None, limit: int) -> list[Run]:
        keyed: list[tuple[Position, Any]] = [
            (q.position(r.key[1], r.key[0], r.facts), r)
            for r in self._runs.values()
            if q.matches(
                session_id=r.session_id,
                agent_id=self._agent_of(r.session_id),
                status=r.status,
                started_us=r.key[0],
                facts=r.facts,
            )
        ]
        return [decode_run(r.doc) for r in page_sorted(keyed, q.order_by, after, limit)]

    async def _run_groups(self, f: RunFilter) -> list[RunGroup]:
        runs = (
            self._runs_of.get(f.session_id, {}).values()
            if f.session_id is not None
            else self._runs.values()
        )
        return group_runs(
            (r.status, r.facts)
            for r in runs
            if f.matches(
                agent_id=self._agent_of(r.session_id),
                provider=r.facts.provider,
                started_us=r.key[0],
            )
        )

    async def _event_stats(self, session_id: str) -> tuple[int, int | None, int | None]:
        log = self._logs.get(session_id)
        if log is None or not log.rows:
            return 0, None, None
        return len(log.stamps), min(log.stamps), max(log.stamps)

    def _event_rows(self, q: EventSearch) -> Iterable[tuple[_Log, int]]:
        """``(log, position)`` of each event that matches."""
        logs = (
            [self._logs[s] for s in q.session_ids if s in self._logs]
            if q.session_ids is not None
            else list(self._logs.values())
        )
        for log in logs:
            for i, (row, stamp) in enumerate(zip(log.rows, log.stamps)):
                long = len(row) > 4
                if q.matches(
                    run_id=row[2],
                    type=row[1],
                    provider=row[6] if long else None,
                    timestamp_us=stamp,
                    correlation_id=row[7] if long else None,
                ):
                    yield log, i

    async def _search_events(
        self, q: EventSearch, after: Position | None, limit: int
    ) -> list[Event]:
        by_seq = q.order_by == "sequence_asc"
        keyed: list[tuple[Position, Any]] = [
            (((log.seqs[i] if by_seq else log.stamps[i]), log.rows[i][0]), (log, i))
            for log, i in self._event_rows(q)
        ]
        return [log.event(i) for log, i in page_sorted(keyed, q.order_by, after, limit)]

    async def _count_events(self, q: EventSearch) -> int:
        return sum(1 for _ in self._event_rows(q))

    # ------------------------------------------------------------ retention (contract 8)

    async def _soft_delete(
        self,
        cutoff_us: int,
        exempt_statuses: tuple[str, ...],
        exempt_tags: tuple[str, ...],
        now: datetime,
        dry_run: bool,
    ) -> int:
        due = [
            r
            for r in self._sessions.values()
            if r.deleted_us is None
            and r.status not in exempt_statuses
            and r.tags.isdisjoint(exempt_tags)
            and r.updated_us < cutoff_us
        ]
        if not dry_run:
            for r in due:
                touched = r.touched
                session = r.session().replace(deleted_at=now)
                self._put_session(session, encode_session(session))
                self._sessions[session.id].touched = touched
        return len(due)

    async def _deleted_before(self, cutoff_us: int) -> list[str]:
        return sorted(
            sid
            for sid, r in self._sessions.items()
            if r.deleted_us is not None and r.deleted_us < cutoff_us
        )

    async def _sessions_over(self, max_events: int) -> list[str]:
        return sorted(
            sid
            for sid in self._sessions
            if (log := self._logs.get(sid)) is not None and len(log.rows) > max_events
        )

    async def _prune(
        self,
        session_id: str,
        max_events: int,
        first_types: tuple[str, ...],
        protected: frozenset[str],
        dry_run: bool,
    ) -> int:
        log = self._logs.get(session_id)
        if log is None or len(log.rows) <= max_events:
            return 0
        excess = len(log.rows) - max_events
        victims: list[int] = []  # positions in log.rows, oldest first within each pass
        first = [i for i, r in enumerate(log.rows) if r[1] in first_types and r[1] not in protected]
        victims += first[:excess]
        if len(victims) < excess:
            taken = set(victims)
            rest = [
                i
                for i, r in enumerate(log.rows)
                if i not in taken and r[1] not in protected and r[1] not in first_types
            ]
            victims += rest[: excess - len(victims)]
        if not dry_run and victims:
            gone = set(victims)
            for i in victims:
                del self._event_ids[log.rows[i][0]]
            fresh = _Log(log.sid, log.num)  # same number: the kept events' places still hold
            fresh.names = log.names
            for i, kept in enumerate(zip(log.rows, log.stamps, log.seqs)):
                if i not in gone:
                    fresh.put_held(*kept)
            fresh.last = log.last
            self._logs[session_id] = self._log_by_num[log.num] = fresh
        return len(victims)

    async def _health(self) -> list[str]:
        problems = [
            f"run {rid!r} belongs to session {r.session_id!r}, which has no record"
            for rid, r in sorted(self._runs.items())
            if r.session_id not in self._sessions
        ]
        for sid, log in sorted(self._logs.items()):
            if log.seqs and log.seqs[-1] > log.last:
                problems.append(
                    f"session {sid!r}: counter {log.last} is below event {log.seqs[-1]}"
                )
        return problems


#: Above this many rows, an append is prepared in a thread (``_Plan``) and applied in one
#: cheap step; below it, the plain loop costs less than the hand-off (about 1 µs a row).
_PREPARE_ROWS = 1024


class _Part:
    """The new rows of one session in a batch, with their index entries as offsets (1 is the
    first new row) so the numbers are only fixed when the batch is applied."""

    __slots__ = (
        "base",
        "by_run",
        "by_type",
        "held",
        "ids",
        "names",
        "newest",
        "num",
        "places",
        "positions",
        "rows",
        "sid",
        "stamps",
    )

    def __init__(self, sid: str, base: int, num: int) -> None:
        self.sid = sid
        self.base = base  # the counter when prepared; fixed again by ``apply``
        self.num = num  # the log's number, or one drawn for a log still to be made
        #: id -> place at ``base``: built here, the loop's share is one update
        self.places: dict[str, _Place] = {}
        self.positions: list[int] = []  # the input position of each new row
        self.rows: list[EncodedEvent] = []  # as given: the results are decoded from them
        self.held: list[_Held] = []  # as the log will hold them
        self.stamps: array[int] = array("q")
        self.names: dict[str, str] = {}
        self.ids: list[str] = []
        self.by_type: dict[str, array[int]] = {}
        self.by_run: dict[str | None, array[int]] = {}
        self.newest = 0


_first = operator.itemgetter(0)


def _places(num: int, numbers: range) -> Iterable[_Place]:
    """The ``_event_ids`` values of ``numbers`` in log ``num``: a range, at C speed."""
    if numbers and numbers[-1] < _SEQ_LIMIT:
        key = num << _SEQ_BITS
        return range(key + numbers.start, key + numbers.stop)
    return [_place(num, seq) for seq in numbers]


class _Plan:
    """A large batch prepared off the event loop (issue 13): rows sorted into sessions, made
    compact, index entries built, stored duplicates looked up. ``apply`` then stores it on
    the loop with a few C-speed extends, checking first that nothing it relied on changed
    meanwhile."""

    __slots__ = ("known", "known_ids", "known_rows", "parts", "rows")

    def __init__(self, rows: list[EncodedEvent], store: InMemorySessionStore) -> None:
        self.rows = rows
        self.known: list[tuple[int, _Place]] = []  # (input position, where stored)
        self.known_ids: list[str] = []
        self.known_rows: list[EncodedEvent | None] = []
        parts: dict[str, _Part] = {}
        logs, numbered = store._logs, store._log_by_num
        get = store._event_ids.get
        for i, row in enumerate(rows):
            where = get(row.id)
            if where is not None:
                num, seq = _unplace(where)
                log = numbered.get(num)
                try:
                    stored = None if log is None else log.row(seq)
                except IndexError:  # changing under us: ``apply`` will see it
                    stored = None
                self.known.append((i, where))
                self.known_ids.append(row.id)
                self.known_rows.append(stored)
                continue
            part = parts.get(row.session_id)
            if part is None:
                log = logs.get(row.session_id)
                part = parts[row.session_id] = (
                    _Part(row.session_id, 0, next(store._log_nums))
                    if log is None
                    else _Part(row.session_id, log.last, log.num)
                )
            names = part.names  # ``_hold``, inline for the common form (as ``_Log.add``)
            kind, run = names.setdefault(row[2], row[2]), row[3]
            if run is not None:
                run = names.setdefault(run, run)
            held = (
                (row[0], kind, run, row[5])
                if row[8] is None and row[9] is None and row[7] == 1 and row[6] == "{}"
                else _hold(row, names)
            )
            part.positions.append(i)
            part.rows.append(row)
            part.held.append(held)
            part.stamps.append(row.timestamp_us)
            part.ids.append(row.id)
            offset = len(part.rows)
            part.places[row.id] = _place(part.num, part.base + offset)
            found = part.by_type.get(held[1])
            if found is None:
                found = part.by_type[held[1]] = array("q")
            found.append(offset)
            found = part.by_run.get(held[2])
            if found is None:
                found = part.by_run[held[2]] = array("q")
            found.append(offset)
            if row.timestamp_us > part.newest:
                part.newest = row.timestamp_us
        self.parts = list(parts.values())

    def apply(self, store: InMemorySessionStore) -> bool:
        """Store the batch, with no await (atomic for readers); False, having changed
        nothing, when an id it counted on changed meanwhile."""
        ids, logs = store._event_ids, store._logs
        if (
            None in self.known_rows
            or not all(map(operator.eq, map(ids.get, self.known_ids), (w for _, w in self.known)))
            # a row read while an import moved rows along is not the one asked for
            or list(map(_first, cast(list[EncodedEvent], self.known_rows))) != self.known_ids
        ):
            return False
        if not all(ids.keys().isdisjoint(part.ids) for part in self.parts):
            return False
        wakes: dict[str, Wake] | None = {} if store._waiters else None
        for part in self.parts:
            log = logs.get(part.sid)
            if log is None:
                log = store._new_log(part.sid, part.num)
            base = log.last
            numbers = range(base + 1, base + len(part.rows) + 1)
            if base != part.base or log.num != part.num:  # another append came first: renumber
                part.base = base
                part.num = log.num
                part.places = dict(zip(part.ids, _places(log.num, numbers)))
            log.rows.extend(part.held)
            log.stamps.extend(part.stamps)
            log.seqs.extend(numbers)
            log.last = numbers[-1]
            for name in part.names:
                log.names.setdefault(name, name)
            for index, entries in ((log.by_type, part.by_type), (log.by_run, part.by_run)):
                for key, offsets in entries.items():
                    if key is None:
                        continue
                    positions = index.get(key)
                    if positions is None:
                        positions = index[key] = array("q")
                    positions.extend(offsets if base == 0 else map(base.__add__, offsets))
            ids.update(part.places)
            if wakes is not None:
                runs = frozenset(part.by_run)
                wakes[part.sid] = Wake(
                    numbers[0],
                    numbers[-1],
                    frozenset(part.by_type),
                    runs if len(runs) <= MAX_RUNS else None,
                    part.newest,
                )
        touched = [part.sid for part in self.parts]
        if touched:
            store._touch(touched)
            if wakes is not None:
                store._notify(touched, wakes)
        return True

    def results(self) -> list[Event]:
        """One stored event per input row (run in a thread, after ``apply``)."""
        out: list[Event] = [None] * len(self.rows)  # type: ignore[list-item]
        for part in self.parts:
            for seq, (i, row) in enumerate(zip(part.positions, part.rows), part.base + 1):
                out[i] = decode_event(row, seq)
        for (i, where), stored in zip(self.known, self.known_rows):
            assert stored is not None
            out[i] = decode_event(stored, _unplace(where)[1])
        return out


def _decode_all(rows: list[tuple[EncodedEvent, int]]) -> list[Event]:
    return [decode_event(row, seq) for row, seq in rows]


def _decode_page(
    sid: str, held: Sequence[_Held], stamps: Sequence[int], seqs: Sequence[int]
) -> list[Event]:
    return list(map(decode_held, held, repeat(sid), stamps, seqs))


#: Decoding work (payload characters, plus ``_ROW_COST`` per event) done on the event loop:
#: a few milliseconds, 1,000 typical events; past it the rows are decoded in a thread.
_DECODE_BUDGET = 1 << 20
_ROW_COST = 256


async def _decoded(rows: list[tuple[EncodedEvent, int]]) -> list[Event]:
    """Events from rows as written; past ``_DECODE_BUDGET`` they are decoded in a thread (in
    slices), so a large write never holds the event loop for long (issue 13)."""
    total = _ROW_COST * len(rows)
    if total <= _DECODE_BUDGET:
        for row, _ in rows:
            total += len(row[5]) + len(row[6])
            if total > _DECODE_BUDGET:
                break
    if total > _DECODE_BUDGET:
        return await asyncio.to_thread(_decode_all, rows)
    return _decode_all(rows)


async def _decoded_page(
    sid: str, held: Sequence[_Held], stamps: Sequence[int], seqs: Sequence[int]
) -> list[Event]:
    """A read's events from held rows (copies taken on the loop: the log may grow while a
    thread decodes); past ``_DECODE_BUDGET``, decoded in a thread, as ``_decoded``."""
    total = _ROW_COST * len(held)
    if total <= _DECODE_BUDGET:
        for row in held:
            total += _payload_chars(row)
            if total > _DECODE_BUDGET:
                break
    if total > _DECODE_BUDGET:
        return await asyncio.to_thread(_decode_page, sid, held, stamps, seqs)
    return _decode_page(sid, held, stamps, seqs)


def _remove_sorted(keys: list[_SessionKey], key: _SessionKey) -> None:
    i = bisect_left(keys, key)
    if i < len(keys) and keys[i] == key:
        del keys[i]
