"""What every session backend shares: argument checks, lifecycle, long-poll, streaming.

The public methods of ``SessionStoreBase`` validate every argument the same way for every
backend, then call a small set of ``_primitives`` the backend implements. That is how
"validation happens before anything is written, identically on every path and backend"
(contract 3.8.1) holds by construction rather than by care.

Long-poll (contract 3.9): a reader registers a waiter for its session *before* it queries,
so an append that lands between the query and the wait still wakes it. Backends call
``_notify(session_ids)`` after each commit of their own, and for commits made elsewhere
(another process, another store object) they watch the database while waiters exist, via
``_watch_start``/``_watch_stop``.
"""

from __future__ import annotations

import abc
import asyncio
import copy
import logging
import sys
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any, Literal, Self

from . import transfer
from .codec import (
    DEFAULT_MAX_EVENT_BYTES,
    EncodedEvent,
    OverBudget,
    encode_event,
    encode_run,
    encode_session,
)
from .errors import (
    RunNotFoundError,
    SessionNotFoundError,
    StorageError,
    StoreError,
    ValidationError,
)
from .lifecycle import OpenClose
from .models import (
    Event,
    EventType,
    EventTypeLike,
    ExecutionResult,
    Run,
    RunStatus,
    Session,
    SessionStatus,
    check_aware,
    check_id,
    to_event_type,
    to_micros,
    to_run_status,
    to_session_status,
    utcnow,
)
from .ports import EventPageJSON, SessionStore
from .querying import QueryAndMaintenance
from .redaction import RedactionConfig, redact_event
from .transfer import ImportReport, SessionExport
from .wakes import Wake

__all__ = ["EventQuery", "SessionStoreBase"]

log = logging.getLogger("agent_session_store")


@dataclass(frozen=True, slots=True)
class EventQuery:
    """A validated ``get_events`` query, as backends receive it."""

    session_id: str
    run_id: str | None = None
    type: str | None = None
    since_us: int | None = None
    after: int | None = None
    before: int | None = None
    limit: int | None = None
    #: ``order="desc"``: newest first, and ``limit`` keeps the newest N (contract 3.9).
    desc: bool = False


#: Events a backend's ``_import`` writes, each with the sequence number it keeps.
NumberedRow = tuple[EncodedEvent, int]

_IMPORT_CHUNK = 1000


def _opt_int(value: object, name: str, minimum: int) -> int | None:
    if value is None:
        return None
    if type(value) is not int:
        raise ValidationError(
            f"{name} must be an int or None, got {type(value).__name__}", details={"field": name}
        )
    if value < minimum:
        raise ValidationError(f"{name} must be >= {minimum}, got {value}", details={"field": name})
    return value


def _opt_id(value: object, name: str) -> str | None:
    return None if value is None else check_id(value, name)


def _clone(e: Event) -> Event:
    return Event._trusted(
        e.id,
        e.type,
        e.session_id,
        e.run_id,
        e.timestamp,
        e.sequence_number or 0,
        copy.deepcopy(e.data),
        copy.deepcopy(e.metadata),
        e.schema_version,
        e.provider,
        e.correlation_id,
    )


def _event_query(
    session_id: object,
    run_id: object,
    type: object,
    since: object,
    after: object,
    before: object,
    limit: object,
    order: object,
) -> EventQuery:
    """``get_events``' arguments checked and normalised (shared by ``get_events_json``)."""
    return EventQuery(
        check_id(session_id, "session_id"),
        _opt_id(run_id, "run_id"),
        None if type is None else to_event_type(type).value,
        None if since is None else to_micros(check_aware(since, "since")),
        _opt_int(after, "after", 0),
        _opt_int(before, "before", 0),
        _opt_int(limit, "limit", 1),
        _desc(order),
    )


def _desc(order: object) -> bool:
    if order == "asc" and type(order) is str:
        return False
    if order == "desc" and type(order) is str:
        return True
    raise ValidationError(
        f"order must be 'asc' or 'desc', got {order!r}", details={"field": "order"}
    )


def _one_session(rows: list[EncodedEvent], expected: int | None) -> None:
    """A conditional append checks one session's counter, so its events name one session."""
    if expected is None or not rows:
        return
    sid = rows[0].session_id
    for row in rows:
        if row.session_id != sid:
            raise ValidationError(
                "a conditional append (expected_sequence) must name one session; got events "
                f"of {sid!r} and {row.session_id!r}",
                details={"field": "expected_sequence"},
            )


#: Payload characters one call encodes on the event loop (about a millisecond of work); the
#: rest goes to a thread. Each event also counts ``_ROW_COST`` for its fixed work.
LOOP_BUDGET = 256 * 1024
_ROW_COST = 256


#: Decoding work (payload characters, plus ``_ROW_COST`` per event) a backend does on the
#: event loop when it builds results: a few milliseconds; past it, the rows go to a thread.
DECODE_BUDGET = 1 << 20


def heavy(rows: Sequence[Sequence[Any]], payloads: tuple[int, ...] = (5, 6)) -> bool:
    """Whether decoding (or re-encoding) these rows (in ``EncodedEvent`` column order: the
    payloads at 5 and 6, unless ``payloads`` says where) is past ``DECODE_BUDGET``: the
    backends then build their results in a thread (issue 13). Summed in C: a Python loop
    over a 1,000-row page cost a tenth of decoding it."""
    total = _ROW_COST * len(rows)
    for i in payloads:
        if total > DECODE_BUDGET:
            break
        total += sum(map(len, map(itemgetter(i), rows)))
    return total > DECODE_BUDGET


class _Encoding:
    """A batch being encoded, resumable: first on the event loop up to a budget, then the rest
    in a thread (``run`` again with no budget)."""

    __slots__ = ("done", "events", "first", "rows", "store", "where")

    def __init__(self, store: SessionStoreBase, events: list[Event]) -> None:
        self.store = store
        self.events = list(events)  # the caller's list may change while a thread encodes
        self.rows: list[EncodedEvent] = []
        self.where: list[int] = []
        self.first: dict[str, int] = {}
        self.done = 0

    def run(self, budget: int) -> int:
        """Encode on from where the last run stopped, until done or ``budget`` is spent;
        returns how many events are encoded."""
        events, rows, where, first = self.events, self.rows, self.where, self.first
        limit = self.store.max_event_bytes
        encode = self.store._encode
        i = self.done
        while i < len(events) and budget > 0:
            try:
                row = encode(events[i], limit, budget)
            except OverBudget:
                break
            except StoreError as err:
                if len(events) > 1:
                    err.message = f"events[{i}]: {err.message}"
                    err.args = (err.message,)
                    err.details.setdefault("index", i)
                raise
            budget -= _ROW_COST + len(row[5]) + len(row[6])
            pos = first.get(row[0])
            if pos is None:
                pos = first[row[0]] = len(rows)
                rows.append(row)
            where.append(pos)
            i += 1
        self.done = i
        return i


class _Waiters:
    """Long-poll readers by session; an append wakes only its own session's readers, and of
    those, given a ``Wake``, only the readers whose filters its events can pass.

    Each wake of a session bumps its generation. Readers woken together run one shared
    query per (query, generation): a query started after wake N sees every commit that wake
    announced, so sharing it loses nothing, and 1,000 readers of one filter cost one query.
    """

    __slots__ = ("_by_session", "asleep", "deliveries", "generation")

    def __init__(self) -> None:
        #: session -> query -> the flags of the readers waiting with it: a wake is tested
        #: once per distinct query, not once per reader
        self._by_session: dict[str, dict[EventQuery, set[asyncio.Event]]] = {}
        self.generation: dict[str, int] = {}
        #: wake-ups delivered per waited-on session, woken readers or not (tests wait on it)
        self.deliveries: dict[str, int] = {}
        #: readers per session asleep on their flag right now: tests wait for "the reader is
        #: waiting" on this, not for a fixed time
        self.asleep: dict[str, int] = {}

    def sleeping(self, session_id: str) -> int:
        return self.asleep.get(session_id, 0)

    def add(self, query: EventQuery) -> tuple[asyncio.Event, bool]:
        flag = asyncio.Event()
        sid = query.session_id
        bucket = self._by_session.get(sid)
        first = bucket is None
        if bucket is None:
            bucket = self._by_session[sid] = {}
        bucket.setdefault(query, set()).add(flag)
        return flag, first

    def remove(self, query: EventQuery, flag: asyncio.Event) -> bool:
        """Returns True when that was the session's last waiter."""
        sid = query.session_id
        bucket = self._by_session.get(sid)
        if bucket is None:
            return False
        flags = bucket.get(query)
        if flags is not None:
            flags.discard(flag)
            if not flags:
                del bucket[query]
        if bucket:
            return False
        del self._by_session[sid]
        self.generation.pop(sid, None)
        self.deliveries.pop(sid, None)
        return True

    def notify(
        self, session_ids: Iterable[str], wakes: Mapping[str, Wake | None] | None = None
    ) -> None:
        by_session = self._by_session
        for sid in session_ids:
            bucket = by_session.get(sid)
            if bucket:
                self.deliveries[sid] = self.deliveries.get(sid, 0) + 1
                wake = None if wakes is None else wakes.get(sid)
                woken = [f for q, f in bucket.items() if wake is None or wake.may_satisfy(q)]
                if woken:
                    self.generation[sid] = self.generation.get(sid, 0) + 1
                    for flags in woken:
                        for flag in flags:
                            flag.set()

    def notify_all(self) -> None:
        for bucket in self._by_session.values():
            for flags in bucket.values():
                for flag in flags:
                    flag.set()

    def sessions(self) -> list[str]:
        return list(self._by_session)

    def __bool__(self) -> bool:
        return bool(self._by_session)


class SessionStoreBase(QueryAndMaintenance, OpenClose, SessionStore, abc.ABC):
    """Implements the SessionStore port on top of a backend's primitives.

    The port is a base class here (not only a structural type) so that ``help()`` on any
    backend's method shows the port's docstring, and mypy checks every signature against it.
    """

    #: Name used in error messages ("sqlite", "postgres", ...).
    backend_name = "store"

    def __init__(
        self,
        *,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        redaction: RedactionConfig | None = None,
    ) -> None:
        if type(max_event_bytes) is not int or max_event_bytes < 1:
            raise ValidationError("max_event_bytes must be a positive int")
        if redaction is not None and not isinstance(redaction, RedactionConfig):
            raise ValidationError("redaction must be a RedactionConfig or None")
        self.max_event_bytes = max_event_bytes
        #: Applied to every event on every write path before anything is written (contract 9).
        self.redaction = redaction
        self._waiters = _Waiters()
        self._opened = False
        self._closed = False
        self._open_lock: asyncio.Lock | None = None
        self._watching: dict[str, asyncio.Future[None]] = {}
        self._bound_loop: asyncio.AbstractEventLoop | None = None
        self._shared: dict[tuple[EventQuery, int], asyncio.Future[list[Event]]] = {}

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> Self:
        if self._closed:
            raise StorageError(f"the {self.backend_name} store is closed")
        if self._opened:
            self._check_loop()
            return self
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if not self._opened and not self._closed:
                try:
                    await self._open()
                except StoreError:
                    raise
                except Exception as exc:
                    raise self._wrap(exc, "open") from exc
                self._bound_loop = asyncio.get_running_loop()
                self._opened = True
        if self._closed:  # close() came while this was opening; it closes what was opened
            raise StorageError(f"the {self.backend_name} store is closed")
        return self

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._waiters.notify_all()
        if self._open_lock is not None and self._open_lock.locked():
            async with self._open_lock:
                pass  # an open in progress finishes first, so nothing it starts is left behind
        if self._opened:
            try:
                await self._close()
            except StoreError:
                raise
            except Exception as exc:
                raise self._wrap(exc, "close") from exc

    async def migrate(self) -> None:
        """Bring the schema up to date; backends without a schema have nothing to do."""

    async def _ready(self) -> None:
        if not self._opened or self._closed:
            await self.open()
        elif self._bound_loop is not asyncio.get_running_loop():
            self._check_loop()

    def _check_loop(self) -> None:
        """Connections and futures belong to the loop the store was opened on; using them
        from another loop hangs or fails late inside the driver, so refuse at once."""
        if self._bound_loop is not None and self._bound_loop is not asyncio.get_running_loop():
            raise StorageError(
                f"this {self.backend_name} store was opened on another event loop (for example "
                "by an earlier asyncio.run()); a store works only on the loop it was opened on. "
                "Open one store per event loop, or use agent_session_store.sync from "
                "blocking code",
                details={"reason": "wrong_event_loop"},
            )

    def _wrap(self, exc: BaseException, operation: str) -> StoreError:
        """Turn a driver exception into a StoreError; backends refine this for their driver."""
        return StorageError(
            f"{self.backend_name} {operation} failed: {type(exc).__name__}: {exc}",
            details={"operation": operation},
        )

    # ------------------------------------------------------------ sessions

    async def save_session(self, session: Session) -> None:
        doc = encode_session(session)
        await self._ready()
        try:
            await self._save_session(session, doc)
        except StoreError:
            raise
        except Exception as exc:
            raise self._wrap(exc, "save_session") from exc

    async def get_session(self, session_id: str) -> Session:
        check_id(session_id, "session_id")
        await self._ready()
        try:
            found = await self._get_session(session_id)
        except StoreError:
            raise
        except Exception as exc:
            raise self._wrap(exc, "get_session") from exc
        if found is None:
            raise SessionNotFoundError(
                f"no session with id {session_id!r}", details={"session_id": session_id}
            )
        return found

    async def list_sessions(
        self,
        *,
        status: SessionStatus | str | None = None,
        agent_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Session]:
        st = None if status is None else to_session_status(status)
        agent = _opt_id(agent_id, "agent_id")
        lim = _opt_int(limit, "limit", 1)
        off = _opt_int(offset, "offset", 0)
        if off is None:
            raise ValidationError(
                "offset must be an int >= 0, got None", details={"field": "offset"}
            )
        await self._ready()
        try:
            return await self._list_sessions(st, agent, lim, off)
        except StoreError:
            raise
        except Exception as exc:
            raise self._wrap(exc, "list_sessions") from exc

    async def delete_session(self, session_id: str) -> None:
        check_id(session_id, "session_id")
        await self._ready()
        try:
            await self._delete_session(session_id)
        except StoreError:
            raise
        except Exception as exc:
            raise self._wrap(exc, "delete_session") from exc

    # ------------------------------------------------------------ runs

    async def save_run(self, run: Run) -> None:
        doc = encode_run(run)
        await self._ready()
        try:
            await self._save_run(run, doc)
        except StoreError:
            raise
        except Exception as exc:
            raise self._wrap(exc, "save_run") from exc

    async def get_run(self, run_id: str) -> Run:
        check_id(run_id, "run_id")
        await self._ready()
        try:
            found = await self._get_run(run_id)
        except StoreError:
            raise
        except Exception as exc:
            raise self._wrap(exc, "get_run") from exc
        if found is None:
            raise RunNotFoundError(f"no run with id {run_id!r}", details={"run_id": run_id})
        return found

    async def list_runs(
        self, session_id: str, *, status: RunStatus | str | None = None, limit: int | None = None
    ) -> list[Run]:
        check_id(session_id, "session_id")
        st = None if status is None else to_run_status(status)
        lim = _opt_int(limit, "limit", 1)
        await self._ready()
        try:
            return await self._list_runs(session_id, st, lim)
        except StoreError:
            raise
        except Exception as exc:
            raise self._wrap(exc, "list_runs") from exc

    async def get_active_run(self, session_id: str) -> Run | None:
        check_id(session_id, "session_id")
        await self._ready()
        try:
            return await self._get_active_run(session_id)
        except StoreError:
            raise
        except Exception as exc:
            raise self._wrap(exc, "get_active_run") from exc

    # ------------------------------------------------------------ events

    def _encode_batch(self, events: object) -> tuple[list[EncodedEvent], list[int]]:
        """Encode every event before anything is written; collapse in-batch duplicates.

        Returns the unique rows (first occurrence wins) and, for each input position, the
        index of its row, so the backend stores each id once and callers still get one
        result per input.
        """
        batch = self._encoding(events)
        batch.run(sys.maxsize)
        return batch.rows, batch.where

    async def _encode_rows(self, events: object) -> tuple[list[EncodedEvent], list[int]]:
        """``_encode_batch`` with the event loop encoding up to ``LOOP_BUDGET`` characters of
        payload and a thread the rest, in slices: however large the batch or a payload, the
        loop is never held for long (issue 13)."""
        batch = self._encoding(events)
        if batch.run(LOOP_BUDGET) < len(batch.events):
            await asyncio.to_thread(batch.run, sys.maxsize)
        return batch.rows, batch.where

    def _encoding(self, events: object) -> _Encoding:
        if not isinstance(events, list):
            raise ValidationError(f"events must be a list of Event, got {type(events).__name__}")
        return _Encoding(self, events)

    def _encode(self, event: Event, limit: int, budget: int = sys.maxsize) -> EncodedEvent:
        """The one place an event becomes a row: every write path redacts here."""
        config = self.redaction
        if config is not None and type(event) is Event:
            event = redact_event(event, config).event
        return encode_event(event, limit, budget)

    async def _encode_one(self, event: Event) -> EncodedEvent:
        """One event, in a thread if its payload is past the loop's budget."""
        try:
            return self._encode(event, self.max_event_bytes, LOOP_BUDGET)
        except OverBudget:
            return await asyncio.to_thread(self._encode, event, self.max_event_bytes)

    async def append_event(self, event: Event, *, expected_sequence: int | None = None) -> None:
        await self.append_event_with_sequence(event, expected_sequence=expected_sequence)

    async def append_event_with_sequence(
        self, event: Event, *, expected_sequence: int | None = None
    ) -> Event:
        row = await self._encode_one(event)
        expected = _opt_int(expected_sequence, "expected_sequence", 0)
        await self._ready()
        try:
            stored = await self._append([row], expected)
        except StoreError:
            raise
        except Exception as exc:
            raise self._wrap(exc, "append_event") from exc
        return stored[0]

    async def append_events(
        self, events: list[Event], *, expected_sequence: int | None = None
    ) -> list[Event]:
        rows, where = await self._encode_rows(events)
        expected = _opt_int(expected_sequence, "expected_sequence", 0)
        if not rows:
            return []
        _one_session(rows, expected)
        await self._ready()
        try:
            stored = await self._append(rows, expected)
        except StoreError:
            raise
        except Exception as exc:
            raise self._wrap(exc, "append_events") from exc
        return stored if len(where) == len(rows) else [stored[i] for i in where]

    async def flush(
        self,
        session: Session | ExecutionResult,
        run: Run | None = None,
        events: list[Event] | None = None,
        *,
        expected_sequence: int | None = None,
    ) -> list[Event]:
        if isinstance(session, ExecutionResult):
            if run is not None or events is not None:
                raise ValidationError(
                    "flush takes an ExecutionResult alone, or session, run and events"
                )
            result = session
            session, run, events = result.session, result.run, result.events
        if run is None:
            raise ValidationError("flush needs a run")
        if not isinstance(session, Session):
            raise ValidationError(f"expected a Session, got {type(session).__name__}")
        session_doc = encode_session(session)
        run_doc = encode_run(run)
        rows, where = await self._encode_rows([] if events is None else events)
        expected = _opt_int(expected_sequence, "expected_sequence", 0)
        if expected is not None:
            for row in rows:
                if row.session_id != session.id:
                    raise ValidationError(
                        "a conditional flush (expected_sequence) appends only to the flushed "
                        f"session {session.id!r}; an event names {row.session_id!r}",
                        details={"field": "expected_sequence"},
                    )
        await self._ready()
        try:
            stored = await self._flush(session, session_doc, run, run_doc, rows, expected)
        except StoreError:
            raise
        except Exception as exc:
            raise self._wrap(exc, "flush") from exc
        return stored if len(where) == len(rows) else [stored[i] for i in where]

    async def get_events(
        self,
        session_id: str,
        *,
        run_id: str | None = None,
        type: EventTypeLike | str | None = None,
        since: datetime | None = None,
        after: int | None = None,
        before: int | None = None,
        limit: int | None = None,
        wait_timeout_ms: int | None = None,
        order: Literal["asc", "desc"] = "asc",
    ) -> list[Event]:
        query = _event_query(session_id, run_id, type, since, after, before, limit, order)
        wait_ms = _opt_int(wait_timeout_ms, "wait_timeout_ms", 0)
        if not wait_ms:
            await self._ready()
            return await self._query_events(query)
        try:
            await self._ready()
            return await self._long_poll(query, wait_ms)
        except StoreError:
            if self._closed:
                return []  # a reader still starting when close() came is released like any
            raise

    async def get_events_json(
        self,
        session_id: str,
        *,
        run_id: str | None = None,
        type: EventTypeLike | str | None = None,
        since: datetime | None = None,
        after: int | None = None,
        before: int | None = None,
        limit: int,
        order: Literal["asc", "desc"] = "asc",
    ) -> EventPageJSON | None:
        """``ports.EventsJSON``: the page ``get_events`` (no long-poll) would return, as the
        JSON the HTTP API sends, or None where the backend cannot build it (use
        ``get_events``). Arguments are checked exactly as ``get_events`` checks them."""
        query = _event_query(session_id, run_id, type, since, after, before, limit, order)
        if query.limit is None:
            raise ValidationError("limit must be an int >= 1", details={"field": "limit"})
        await self._ready()
        try:
            return await self._events_json(query)
        except StoreError:
            raise
        except Exception as exc:
            raise self._wrap(exc, "get_events_json") from exc

    async def _events_json(self, query: EventQuery) -> EventPageJSON | None:
        """A backend that stores payloads as JSON text can build the page's JSON itself."""
        return None

    async def _query_events(self, query: EventQuery) -> list[Event]:
        try:
            return await self._get_events(query)
        except StoreError:
            raise
        except Exception as exc:
            raise self._wrap(exc, "get_events") from exc

    async def _long_poll(self, query: EventQuery, wait_ms: int) -> list[Event]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_ms / 1000
        sid = query.session_id
        flag, _ = self._waiters.add(query)
        try:
            # The watch must be live before the first query, or a commit made elsewhere
            # between the query and the wait would be missed; every waiter of the session
            # awaits the same start.
            started = self._watching.get(sid)
            if started is None:
                started = self._watching[sid] = asyncio.ensure_future(self._watch_start(sid))
            try:
                await asyncio.shield(started)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._watching.get(sid) is started:
                    del self._watching[sid]  # let the next reader try again
                if isinstance(exc, StoreError):
                    raise
                raise self._wrap(exc, "get_events") from exc
            while True:
                flag.clear()
                found = await self._shared_query(query)
                if found or self._closed:
                    return found
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return []
                asleep = self._waiters.asleep
                asleep[sid] = asleep.get(sid, 0) + 1
                try:
                    async with asyncio.timeout(remaining):
                        await flag.wait()
                    timed_out = False
                except TimeoutError:
                    timed_out = True
                finally:
                    if asleep[sid] > 1:
                        asleep[sid] -= 1
                    else:
                        del asleep[sid]
                if timed_out:
                    # One last look: an append may have committed just as time ran out.
                    return [] if self._closed else await self._query_events(query)
        finally:
            if self._waiters.remove(query, flag):
                started = self._watching.pop(sid, None)
                if started is not None and not self._closed:
                    if not started.done():
                        started.cancel()
                    elif not started.cancelled() and started.exception() is None:
                        await self._watch_stop(sid)

    async def _shared_query(self, query: EventQuery) -> list[Event]:
        """Run ``query`` once for every reader woken by the same wake of its session."""
        key = (query, self._waiters.generation.get(query.session_id, 0))
        shared = self._shared.get(key)
        if shared is None:
            shared = self._shared[key] = asyncio.ensure_future(self._query_events(query))

            def forget(done: asyncio.Future[list[Event]]) -> None:
                if self._shared.get(key) is done:
                    del self._shared[key]

            shared.add_done_callback(forget)
            return await asyncio.shield(shared)  # a cancelled reader leaves others' query
        # Joiners get their own payload dicts: callers may change what they are given.
        return [_clone(e) for e in await asyncio.shield(shared)]

    def _notify(
        self, session_ids: Iterable[str], wakes: Mapping[str, Wake | None] | None = None
    ) -> None:
        """Wake this process's readers of these sessions; call on the event loop thread.

        With ``wakes`` (what each session got), only readers those events can satisfy wake;
        a session without one wakes all its readers."""
        self._waiters.notify(session_ids, wakes)

    async def get_latest_sequence(self, session_id: str) -> int:
        check_id(session_id, "session_id")
        await self._ready()
        try:
            return await self._latest_sequence(session_id)
        except StoreError:
            raise
        except Exception as exc:
            raise self._wrap(exc, "get_latest_sequence") from exc

    async def stream_events(
        self, session_id: str, *, after: int = 0, page_size: int = 500, **filters: Any
    ) -> AsyncIterator[Event]:
        """Page through the log, then long-poll; stops only when cancelled or closed."""
        for banned in ("limit", "before", "wait_timeout_ms"):
            if banned in filters:
                raise ValidationError(f"stream_events does not take {banned!r}")
        cursor = _opt_int(after, "after", 0) or 0
        while not self._closed:
            page = await self.get_events(
                session_id, after=cursor, limit=page_size, wait_timeout_ms=30_000, **filters
            )
            for event in page:
                yield event
            if page:
                seq = page[-1].sequence_number
                assert seq is not None
                cursor = seq

    # ------------------------------------------------------------ visible history (2.3)

    async def get_visible_events(self, session_id: str, *, limit: int | None = None) -> list[Event]:
        """The session as it reads after its rewinds, oldest first; ``limit`` keeps the newest.

        Walks newest first: a ``history_rewound`` at S with ``to_sequence`` N hides (N, S), so
        the walk jumps below N + 1 with one indexed query and never reads what it skips. A
        rewind inside a hidden range is never met, which is what makes rewinds nest.
        """
        check_id(session_id, "session_id")
        lim = _opt_int(limit, "limit", 1)
        await self._ready()
        # First read just what a rewind-free tail needs; read more, growing, only when
        # rewinds hide part of what was read.
        page = 500 if lim is None else min(lim + 1, 1000)
        newest_first: list[Event] = []
        bound: int | None = None  # everything still to read is below this number
        rewind = EventType.HISTORY_REWOUND
        while lim is None or len(newest_first) < lim:
            found = await self._query_events(
                EventQuery(session_id, before=bound, limit=page, desc=True)
            )
            for event in found:
                seq = event.sequence_number
                assert seq is not None
                if bound is not None and seq >= bound:
                    continue  # hidden by a rewind met earlier in this page
                bound = seq
                if event.type is rewind:
                    to = event.data["to_sequence"]
                    if to + 1 < seq:
                        bound = to + 1
                    continue
                newest_first.append(event)
                if lim is not None and len(newest_first) >= lim:
                    break
            if len(found) < page or bound == 1:
                break
            page = min(page * 2, 1000)
        newest_first.reverse()
        return newest_first

    async def get_newest_payloads(
        self, session_id: str, *, limit: int
    ) -> list[tuple[str, dict[str, Any]]]:
        """``(type, data)`` of the session's newest ``limit`` events, newest first.

        What a framework adapter needs of a history's tail (is it all items, no rewind?
        then the items), without building whole Events: on SQLite that read is a third of
        ``get_events(order="desc")``'s CPU. Backends without a narrower read project
        ``get_events``."""
        check_id(session_id, "session_id")
        lim = _opt_int(limit, "limit", 1)
        if lim is None:
            raise ValidationError("limit must be an int >= 1", details={"field": "limit"})
        await self._ready()
        try:
            return await self._newest_payloads(session_id, lim)
        except StoreError:
            raise
        except Exception as exc:
            raise self._wrap(exc, "get_newest_payloads") from exc

    async def _newest_payloads(self, session_id: str, limit: int) -> list[tuple[str, Any]]:
        found = await self._get_events(EventQuery(session_id, limit=limit, desc=True))
        return [(e.type.value, e.data) for e in found]

    # ------------------------------------------------------------ export, import, fork (10)

    async def iter_export(
        self, session_id: str, *, after: int = 0, page_size: int = 1000
    ) -> AsyncIterator[dict[str, Any]]:
        """The session as export records (header, session, runs, events), a page at a time;
        ``after`` leaves out the events a resumed copy already has."""
        check_id(session_id, "session_id")
        start = _opt_int(after, "after", 0) or 0
        size = _opt_int(page_size, "page_size", 1) or 1000
        session = await self.get_session(session_id)
        latest = await self.get_latest_sequence(session_id)
        runs = await self.list_runs(session_id)
        yield transfer.header_record(session_id, latest)
        yield {"record": "session", "session": session.to_dict()}
        for run in runs:
            yield {"record": "run", "run": run.to_dict()}
        after = start
        while after < latest:
            page = await self._query_events(
                EventQuery(session_id, after=after, before=latest + 1, limit=size)
            )
            if not page:
                break
            for event in page:
                yield {"record": "event", "event": event.to_dict()}
            last = page[-1].sequence_number
            assert last is not None
            after = last
            # a store that answered without waiting (memory) must still let the loop run
            await asyncio.sleep(0)

    async def export_session(self, session_id: str) -> SessionExport:
        """The whole session as one value; ``iter_export`` is the bounded-memory form."""
        head: dict[str, Any] = {}
        session: Session | None = None
        runs: list[Run] = []
        events: list[Event] = []
        async for record in self.iter_export(session_id):
            kind = record["record"]
            if kind == "event":
                events.append(Event.from_dict(record["event"]))
            elif kind == "run":
                runs.append(Run.from_dict(record["run"]))
            elif kind == "session":
                session = Session.from_dict(record["session"])
            else:
                head = record
        assert session is not None
        return SessionExport(session, runs, events, head["latest_sequence"])

    async def import_session(self, export: SessionExport) -> ImportReport:
        """Write an export keeping ids, numbers and timestamps, atomically (contract 10)."""
        if isinstance(export, SessionExport) and len(export.events) * _ROW_COST > LOOP_BUDGET:
            await asyncio.to_thread(transfer.check_export, export)  # a check per event
        else:
            transfer.check_export(export)
        rows = await self._numbered_rows(export.events)
        return await self._import_unit(
            export.session, export.runs, rows, export.latest_sequence, "import_session"
        )

    async def import_records(
        self,
        records: AsyncIterable[Mapping[str, Any]] | Iterable[Mapping[str, Any]],
        *,
        chunk_size: int = _IMPORT_CHUNK,
    ) -> ImportReport:
        """Import a record stream a chunk at a time, so memory stays bounded by one chunk.

        Each chunk is atomic. The whole stream is not: a conflict found in a later chunk
        leaves the earlier chunks, an identical prefix of the export that a re-run skips
        (C11), which is what makes ``copy`` resumable.
        """
        size = _opt_int(chunk_size, "chunk_size", 1) or _IMPORT_CHUNK
        head, events = await transfer.read_export(records)
        imported = skipped = runs_imported = 0
        first = True
        chunk: list[Event] = []

        async def write(batch: list[Event]) -> None:
            nonlocal imported, skipped, runs_imported, first
            report = await self._import_unit(
                head.session if first else None,
                head.runs if first else [],
                await self._numbered_rows(batch),
                head.latest_sequence,
                "import_records",
            )
            imported += report.events_imported
            skipped += report.events_skipped
            runs_imported += report.runs_imported
            first = False
            # records from a list, into a store that need not wait: let the loop run a while
            await asyncio.sleep(0)

        async for event in events:
            chunk.append(event)
            if len(chunk) >= size:
                await write(chunk)
                chunk = []
        if chunk or first:
            await write(chunk)
        return ImportReport(head.session.id, imported, skipped, runs_imported)

    def _numbered(self, events: list[Event], budget: int = sys.maxsize) -> list[NumberedRow]:
        """Encode an import's events; past ``budget`` (as ``_Encoding``) raise ``OverBudget``."""
        rows: list[NumberedRow] = []
        seen: set[str] = set()
        limit = self.max_event_bytes
        for event in events:
            assert event.sequence_number is not None
            if event.id in seen:
                raise ValidationError(f"event id {event.id!r} appears twice in one import")
            seen.add(event.id)
            row = self._encode(event, limit, budget)
            budget -= _ROW_COST + len(row[5]) + len(row[6])
            if budget < 0:
                raise OverBudget
            rows.append((row, event.sequence_number))
        return rows

    async def _numbered_rows(self, events: list[Event]) -> list[NumberedRow]:
        """``_numbered`` on the event loop up to ``LOOP_BUDGET``, else all in a thread (the
        import path encoded on the loop, issue 13)."""
        if len(events) * _ROW_COST <= LOOP_BUDGET:
            try:
                return self._numbered(events, LOOP_BUDGET)
            except OverBudget:
                pass
        return await asyncio.to_thread(self._numbered, events)

    async def _import_unit(
        self,
        session: Session | None,
        runs: list[Run],
        rows: list[NumberedRow],
        latest_sequence: int,
        operation: str,
    ) -> ImportReport:
        session_id = session.id if session is not None else rows[0][0].session_id
        session_doc = None if session is None else encode_session(session)
        run_docs = [(run, encode_run(run)) for run in runs]
        await self._ready()
        try:
            imported, skipped = await self._import(
                session_id, session_doc, run_docs, rows, latest_sequence
            )
        except StoreError:
            raise
        except Exception as exc:
            raise self._wrap(exc, operation) from exc
        return ImportReport(session_id, imported, skipped, len(run_docs))

    async def fork_session(
        self,
        session_id: str,
        *,
        at_sequence: int | None = None,
        new_session_id: str | None = None,
        agent_id: str | None = None,
    ) -> Session:
        """A new session starting as a copy of the visible history up to ``at_sequence``.

        Ids of the new session (by default), its runs and its events derive from the request,
        so a retried fork writes nothing new and returns the same session (C12).
        """
        check_id(session_id, "session_id")
        cut = _opt_int(at_sequence, "at_sequence", 0)
        new_id = _opt_id(new_session_id, "new_session_id")
        agent = _opt_id(agent_id, "agent_id")
        source = await self.get_session(session_id)
        latest = await self.get_latest_sequence(session_id)
        if cut is None:
            cut = latest
        elif cut > latest:
            raise ValidationError(
                f"at_sequence {cut} is beyond session {session_id!r}'s latest sequence {latest}",
                details={"field": "at_sequence"},
            )
        target = new_id or transfer.fork_session_id(session_id, cut)
        if target == session_id:
            raise ValidationError("a fork needs a new session id, not the source's")
        visible = [
            e for e in await self.get_visible_events(session_id) if (e.sequence_number or 0) <= cut
        ]
        run_ids = {e.run_id for e in visible if e.run_id is not None}
        runs: list[Run] = []
        for run in await self.list_runs(session_id):
            if run.id in run_ids:
                runs.append(
                    run.replace(id=transfer.derived_id("run_", target, run.id), session_id=target)
                )
        now = utcnow()
        created = now
        try:
            earlier = await self.get_session(target)
        except SessionNotFoundError:
            earlier = None
        if earlier is not None and earlier.parent_session_id == session_id:
            created = earlier.created_at  # a retried fork keeps the first one's birth
        fork = Session(
            id=target,
            agent_id=agent or source.agent_id,
            status=source.status,
            parent_session_id=session_id,
            metadata={**source.metadata, "forked_at_sequence": cut},
            context=source.context,
            tags=source.tags,
            created_at=created,
            updated_at=now,
        )
        copies = [
            Event(
                id=transfer.derived_id("evt_", target, e.id),
                type=e.type,
                session_id=target,
                run_id=None if e.run_id is None else transfer.derived_id("run_", target, e.run_id),
                timestamp=e.timestamp,
                sequence_number=n,
                data=e.data,
                metadata={**e.metadata, "forked_from": e.id},
                schema_version=e.schema_version,
                provider=e.provider,
                correlation_id=e.correlation_id,
            )
            for n, e in enumerate(visible, start=1)
        ]
        await self._import_unit(fork, runs, self._numbered(copies), len(copies), "fork_session")
        return fork

    # ------------------------------------------------------------ backend primitives

    @abc.abstractmethod
    async def _open(self) -> None: ...

    @abc.abstractmethod
    async def _close(self) -> None: ...

    @abc.abstractmethod
    async def _save_session(self, session: Session, doc: str) -> None: ...

    @abc.abstractmethod
    async def _get_session(self, session_id: str) -> Session | None: ...

    @abc.abstractmethod
    async def _list_sessions(
        self,
        status: SessionStatus | None,
        agent_id: str | None,
        limit: int | None,
        offset: int,
    ) -> list[Session]: ...

    @abc.abstractmethod
    async def _delete_session(self, session_id: str) -> None: ...

    @abc.abstractmethod
    async def _save_run(self, run: Run, doc: str) -> None: ...

    @abc.abstractmethod
    async def _get_run(self, run_id: str) -> Run | None: ...

    @abc.abstractmethod
    async def _list_runs(
        self, session_id: str, status: RunStatus | None, limit: int | None
    ) -> list[Run]: ...

    @abc.abstractmethod
    async def _get_active_run(self, session_id: str) -> Run | None: ...

    @abc.abstractmethod
    async def _append(self, rows: list[EncodedEvent], expected: int | None = None) -> list[Event]:
        """Store rows (ids unique within the list) atomically; return one stored event per row,
        the original for ids already stored. Must call ``_notify`` for sessions it wrote.

        With ``expected`` (all rows name one session): when every id is already stored,
        return the stored events; otherwise raise ``sequence_conflict`` unless the session's
        counter equals ``expected``, checked in the same atomic unit as the write. Storing a
        new event touches its session record's ``updated_at`` (C5)."""

    @abc.abstractmethod
    async def _flush(
        self,
        session: Session,
        session_doc: str,
        run: Run,
        run_doc: str,
        rows: list[EncodedEvent],
        expected: int | None = None,
    ) -> list[Event]:
        """Upsert session and run and append rows in one atomic unit; ``expected`` as for
        ``_append``, checked against the flushed session even with no rows."""

    @abc.abstractmethod
    async def _import(
        self,
        session_id: str,
        session_doc: str | None,
        runs: list[tuple[Run, str]],
        rows: list[NumberedRow],
        latest_sequence: int,
    ) -> tuple[int, int]:
        """Write rows at their own sequence numbers, atomically; return (imported, skipped).

        An id already at that number in this session is skipped; an id stored anywhere else,
        or a number holding another id, is ``sequence_conflict`` and nothing is written. The
        session doc and runs are upserted as given (no ``updated_at`` touch) and the counter
        becomes max(counter, latest_sequence, highest number written)."""

    @abc.abstractmethod
    async def _get_events(self, query: EventQuery) -> list[Event]: ...

    @abc.abstractmethod
    async def _latest_sequence(self, session_id: str) -> int: ...

    async def _watch_start(self, session_id: str) -> None:
        """Start noticing commits to this session made outside this store object."""

    async def _watch_stop(self, session_id: str) -> None:
        """The session has no waiters left in this store object."""
