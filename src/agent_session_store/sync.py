"""Blocking access to any store, for Flask, Django, scripts and other code without an event loop.

Each sync store owns one background thread running one event loop, and its async store lives
on that loop for its whole life. That is what makes it work on every backend: asyncpg pools and
Redis connections belong to the loop that created them, so calling ``asyncio.run()`` per
operation (a new loop each time) cannot work on PostgreSQL or Redis. Any number of threads may
call one sync store at once; their calls run concurrently on the store's loop, so a thread
blocked in a long-poll ``get_events`` delays no other thread.

    from agent_session_store.sync import open_session_store

    with open_session_store("sqlite:///agent.db") as store:
        store.append_event(Event(type=EventType.MESSAGE_SENT, session_id="s1"))
        for event in store.get_events("s1"):
            ...

The methods take the same arguments, follow the same rules and raise the same ``StoreError``
codes as their async counterparts (docs/contract.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from . import urls
from .base import SessionStoreBase
from .composite import CompositeSessionStore
from .errors import StorageError
from .models import (
    Event,
    EventTypeLike,
    ExecutionResult,
    Run,
    RunStatus,
    Session,
    SessionStatus,
)
from .ports import ArtifactStat, ArtifactStore, KeyPage, SessionStore
from .query import CostSummary, Page, SessionStats, UsageSummary
from .querying import QueryAndMaintenance as _Q
from .retention import MaintenanceReport, RetentionPolicy
from .transfer import ImportReport, SessionExport

__all__ = [
    "SyncArtifactStore",
    "SyncCompositeStore",
    "SyncSessionStore",
    "open_artifact_store",
    "open_session_store",
    "open_store",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def _doc(original: Callable[..., Any]) -> Callable[[F], F]:
    """Give a blocking method the docstring of the async operation it runs: one text."""

    def give(method: F) -> F:
        method.__doc__ = original.__doc__
        return method

    return give


#: Sync ``put`` takes bytes-like data or a (sync) iterable of bytes-like chunks.
SyncArtifactData = bytes | bytearray | memoryview | Iterable[bytes | bytearray | memoryview]


async def _anext(agen: AsyncIterator[T]) -> T:
    return await agen.__anext__()


class _LoopThread:
    """One event loop on one daemon thread; coroutines are submitted from any other thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise StorageError(
                "a sync store was called from its own event loop thread (from async code it "
                "runs); async code should use the async store instead"
            )
        if self.loop.is_closed():
            coro.close()
            raise StorageError("the sync store is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise StorageError("the sync store was closed while this call was running") from None
        except BaseException:
            # KeyboardInterrupt or another interruption of the waiting thread: stop the work too.
            future.cancel()
            raise

    async def drain(self, seconds: float) -> None:
        """Let calls still running finish (a close just released the long-polls), then cancel
        what is left, so no calling thread waits on a loop that has stopped."""
        current = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not current]
        if not others:
            return
        _, pending = await asyncio.wait(others, timeout=seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=seconds)

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


class _SyncBridge:
    """Lifecycle shared by every sync store: ``with store:`` opens it and closes it."""

    def __init__(self, target: Any, name: str) -> None:
        self._target = target
        self._runner = _LoopThread(name)
        self._lock = threading.Lock()
        self._closed = False

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._runner.call(coro)

    def _iterate(self, agen: AsyncIterator[T]) -> Generator[T, None, None]:
        """Drive an async iterator on the store's loop, one item per blocking step."""
        try:
            while True:
                try:
                    yield self._call(_anext(agen))
                except StopAsyncIteration:
                    return
        finally:
            close = getattr(agen, "aclose", None)
            if close is not None and not self._closed:
                self._call(close())

    def open(self) -> Self:
        """Connect now (operations also connect on first use)."""
        self._call(self._target.open())
        return self

    def close(self) -> None:
        """Close the store (pending long-polls return ``[]``), then stop its loop thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._call(self._target.close())
        finally:
            try:
                self._call(self._runner.drain(5.0))
            finally:
                self._runner.stop()

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._target!r})"


class SyncSessionStore(_SyncBridge):
    """The SessionStore operations (docs/contract.md section 3), blocking and thread-safe."""

    def __init__(self, store: SessionStoreBase | CompositeSessionStore) -> None:
        _SyncBridge.__init__(self, store, f"agent-session-store:{type(store).__name__}")
        self._store = store

    @property
    def async_store(self) -> SessionStoreBase | CompositeSessionStore:
        """The wrapped async store; use it only through this object's loop."""
        return self._store

    @property
    def max_event_bytes(self) -> int:
        """The largest encoded event the store accepts, for callers that size payloads by it."""
        return self._store.max_event_bytes

    def migrate(self) -> None:
        """Create or upgrade the schema (backends without one have nothing to do)."""
        store = self._store
        target = store.session_store if isinstance(store, CompositeSessionStore) else store
        migrate = getattr(target, "migrate", None)
        if migrate is not None:
            self._call(migrate())

    @_doc(SessionStore.save_session)
    def save_session(self, session: Session) -> None:
        self._call(self._store.save_session(session))

    @_doc(SessionStore.get_session)
    def get_session(self, session_id: str) -> Session:
        return self._call(self._store.get_session(session_id))

    @_doc(SessionStore.list_sessions)
    def list_sessions(
        self,
        *,
        status: SessionStatus | str | None = None,
        agent_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Session]:
        return self._call(
            self._store.list_sessions(status=status, agent_id=agent_id, limit=limit, offset=offset)
        )

    @_doc(SessionStore.delete_session)
    def delete_session(self, session_id: str) -> None:
        self._call(self._store.delete_session(session_id))

    @_doc(SessionStore.save_run)
    def save_run(self, run: Run) -> None:
        self._call(self._store.save_run(run))

    @_doc(SessionStore.get_run)
    def get_run(self, run_id: str) -> Run:
        return self._call(self._store.get_run(run_id))

    @_doc(SessionStore.list_runs)
    def list_runs(
        self, session_id: str, *, status: RunStatus | str | None = None, limit: int | None = None
    ) -> list[Run]:
        return self._call(self._store.list_runs(session_id, status=status, limit=limit))

    @_doc(SessionStore.get_active_run)
    def get_active_run(self, session_id: str) -> Run | None:
        return self._call(self._store.get_active_run(session_id))

    @_doc(SessionStore.append_event)
    def append_event(self, event: Event, *, expected_sequence: int | None = None) -> None:
        self._call(self._store.append_event(event, expected_sequence=expected_sequence))

    @_doc(SessionStore.append_event_with_sequence)
    def append_event_with_sequence(
        self, event: Event, *, expected_sequence: int | None = None
    ) -> Event:
        return self._call(
            self._store.append_event_with_sequence(event, expected_sequence=expected_sequence)
        )

    @_doc(SessionStore.append_events)
    def append_events(
        self, events: list[Event], *, expected_sequence: int | None = None
    ) -> list[Event]:
        return self._call(self._store.append_events(events, expected_sequence=expected_sequence))

    @_doc(SessionStore.flush)
    def flush(
        self,
        session: Session | ExecutionResult,
        run: Run | None = None,
        events: list[Event] | None = None,
        *,
        expected_sequence: int | None = None,
    ) -> list[Event]:
        return self._call(
            self._store.flush(session, run, events, expected_sequence=expected_sequence)
        )

    @_doc(SessionStore.get_events)
    def get_events(
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
        # A long-poll blocks only the calling thread: other threads' calls go on meanwhile.
        return self._call(
            self._store.get_events(
                session_id,
                run_id=run_id,
                type=type,
                since=since,
                after=after,
                before=before,
                limit=limit,
                wait_timeout_ms=wait_timeout_ms,
                order=order,
            )
        )

    @_doc(SessionStore.get_latest_sequence)
    def get_latest_sequence(self, session_id: str) -> int:
        return self._call(self._store.get_latest_sequence(session_id))

    @_doc(SessionStore.stream_events)
    def stream_events(
        self, session_id: str, *, after: int = 0, **filters: Any
    ) -> Generator[Event, None, None]:
        return self._iterate(self._store.stream_events(session_id, after=after, **filters))

    @_doc(SessionStore.get_visible_events)
    def get_visible_events(self, session_id: str, *, limit: int | None = None) -> list[Event]:
        return self._call(self._store.get_visible_events(session_id, limit=limit))

    @_doc(SessionStoreBase.get_newest_payloads)
    def get_newest_payloads(
        self, session_id: str, *, limit: int
    ) -> list[tuple[str, dict[str, Any]]]:
        return self._call(self._store.get_newest_payloads(session_id, limit=limit))

    @_doc(SessionStore.iter_export)
    def iter_export(
        self, session_id: str, *, after: int = 0, page_size: int = 1000
    ) -> Generator[dict[str, Any], None, None]:
        return self._iterate(self._store.iter_export(session_id, after=after, page_size=page_size))

    @_doc(SessionStore.export_session)
    def export_session(self, session_id: str) -> SessionExport:
        return self._call(self._store.export_session(session_id))

    @_doc(SessionStore.import_session)
    def import_session(self, export: SessionExport) -> ImportReport:
        return self._call(self._store.import_session(export))

    @_doc(SessionStore.import_records)
    def import_records(
        self, records: Iterable[Mapping[str, Any]], *, chunk_size: int = 1000
    ) -> ImportReport:
        return self._call(self._store.import_records(records, chunk_size=chunk_size))

    @_doc(SessionStore.fork_session)
    def fork_session(
        self,
        session_id: str,
        *,
        at_sequence: int | None = None,
        new_session_id: str | None = None,
        agent_id: str | None = None,
    ) -> Session:
        return self._call(
            self._store.fork_session(
                session_id,
                at_sequence=at_sequence,
                new_session_id=new_session_id,
                agent_id=agent_id,
            )
        )

    # ------------------------------------------------------------ queries and retention

    @_doc(_Q.search_sessions)
    def search_sessions(
        self,
        *,
        agent_id: str | None = None,
        status: str | list[str] | None = None,
        tags: list[str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        include_deleted: bool = False,
        order_by: str = "updated_at_desc",
        limit: int = 50,
        cursor: str | None = None,
        include_total: bool = False,
    ) -> Page[Session]:
        return self._call(
            self._store.search_sessions(
                agent_id=agent_id,
                status=status,
                tags=tags,
                created_after=created_after,
                created_before=created_before,
                updated_after=updated_after,
                updated_before=updated_before,
                include_deleted=include_deleted,
                order_by=order_by,
                limit=limit,
                cursor=cursor,
                include_total=include_total,
            )
        )

    @_doc(_Q.get_session_stats)
    def get_session_stats(self, session_id: str) -> SessionStats:
        return self._call(self._store.get_session_stats(session_id))

    @_doc(_Q.search_runs)
    def search_runs(
        self,
        *,
        session_id: str | None = None,
        agent_id: str | None = None,
        provider: str | None = None,
        status: str | list[str] | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        min_tokens: int | None = None,
        order_by: str = "started_at_desc",
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Run]:
        return self._call(
            self._store.search_runs(
                session_id=session_id,
                agent_id=agent_id,
                provider=provider,
                status=status,
                started_after=started_after,
                started_before=started_before,
                min_tokens=min_tokens,
                order_by=order_by,
                limit=limit,
                cursor=cursor,
            )
        )

    @_doc(_Q.get_usage_summary)
    def get_usage_summary(
        self,
        *,
        session_id: str | None = None,
        agent_id: str | None = None,
        provider: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> UsageSummary:
        return self._call(
            self._store.get_usage_summary(
                session_id=session_id,
                agent_id=agent_id,
                provider=provider,
                since=since,
                until=until,
            )
        )

    @_doc(_Q.get_cost_summary)
    def get_cost_summary(
        self,
        *,
        session_id: str | None = None,
        agent_id: str | None = None,
        provider: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        pricing: dict[str, dict[str, dict[str, float]]] | None = None,
    ) -> CostSummary:
        return self._call(
            self._store.get_cost_summary(
                session_id=session_id,
                agent_id=agent_id,
                provider=provider,
                since=since,
                until=until,
                pricing=pricing,
            )
        )

    @_doc(_Q.search_events)
    def search_events(
        self,
        *,
        session_ids: str | list[str] | None = None,
        run_ids: str | list[str] | None = None,
        types: str | list[str] | None = None,
        providers: str | list[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        correlation_id: str | None = None,
        order_by: str = "timestamp_asc",
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[Event]:
        return self._call(
            self._store.search_events(
                session_ids=session_ids,
                run_ids=run_ids,
                types=types,
                providers=providers,
                since=since,
                until=until,
                correlation_id=correlation_id,
                order_by=order_by,
                limit=limit,
                cursor=cursor,
            )
        )

    @_doc(_Q.count_events)
    def count_events(
        self,
        *,
        session_ids: str | list[str] | None = None,
        run_ids: str | list[str] | None = None,
        types: str | list[str] | None = None,
        providers: str | list[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        correlation_id: str | None = None,
    ) -> int:
        return self._call(
            self._store.count_events(
                session_ids=session_ids,
                run_ids=run_ids,
                types=types,
                providers=providers,
                since=since,
                until=until,
                correlation_id=correlation_id,
            )
        )

    @_doc(_Q.soft_delete_expired_sessions)
    def soft_delete_expired_sessions(
        self, policy: RetentionPolicy, *, now: datetime | None = None
    ) -> int:
        return self._call(self._store.soft_delete_expired_sessions(policy, now=now))

    @_doc(_Q.hard_delete_expired_sessions)
    def hard_delete_expired_sessions(
        self, policy: RetentionPolicy, *, now: datetime | None = None
    ) -> int:
        return self._call(self._store.hard_delete_expired_sessions(policy, now=now))

    @_doc(_Q.prune_session_events)
    def prune_session_events(self, session_id: str, policy: RetentionPolicy) -> int:
        return self._call(self._store.prune_session_events(session_id, policy))

    @_doc(_Q.run_maintenance)
    def run_maintenance(
        self, policy: RetentionPolicy, *, dry_run: bool = False, now: datetime | None = None
    ) -> MaintenanceReport:
        return self._call(self._store.run_maintenance(policy, dry_run=dry_run, now=now))

    @_doc(_Q.health_check)
    def health_check(self) -> list[str]:
        return self._call(self._store.health_check())


class SyncArtifactStore(_SyncBridge):
    """The ArtifactStore operations (docs/contract.md section 4), blocking and thread-safe."""

    def __init__(self, store: ArtifactStore) -> None:
        _SyncBridge.__init__(self, store, f"agent-session-store:{type(store).__name__}")
        self._artifacts = store

    def put(self, key: str, data: SyncArtifactData, **opts: Any) -> None:
        """Store ``data`` under ``key``, replacing any old object atomically."""
        self._call(self._artifacts.put(key, data, **opts))

    def get(self, key: str, **opts: Any) -> bytes:
        """The whole object; ``not_found`` when absent."""
        return self._call(self._artifacts.get(key, **opts))

    def get_stream(self, key: str, *, chunk_size: int = 1 << 20) -> Generator[bytes, None, None]:
        """The object in chunks, never whole in memory; ``not_found`` when absent."""
        return self._iterate(self._artifacts.get_stream(key, chunk_size=chunk_size))

    def delete(self, key: str, **opts: Any) -> None:
        """Remove ``key``; an absent key is success."""
        self._call(self._artifacts.delete(key, **opts))

    def exists(self, key: str) -> bool:
        return self._call(self._artifacts.exists(key))

    def stat(self, key: str) -> ArtifactStat:
        """Size, SHA-256 and modification time; ``not_found`` when absent."""
        return self._call(self._artifacts.stat(key))

    def list_keys(
        self, prefix: str = "", *, limit: int = 1000, cursor: str | None = None
    ) -> KeyPage:
        """Keys starting with ``prefix`` in sorted order, one page at a time."""
        return self._call(self._artifacts.list_keys(prefix, limit=limit, cursor=cursor))


class SyncCompositeStore(SyncSessionStore, SyncArtifactStore):
    """Both sets of operations over one composite store (docs/contract.md section 5)."""

    def __init__(self, store: CompositeSessionStore) -> None:
        SyncSessionStore.__init__(self, store)
        self._artifacts = store


def open_session_store(url: str, **options: Any) -> SyncSessionStore:
    """A blocking session store for ``url``; ``with`` it, or call ``close()`` when done."""
    return SyncSessionStore(urls.open_session_store(url, **options))


def open_artifact_store(url: str, **options: Any) -> SyncArtifactStore:
    """A blocking artifact store for ``url``; ``with`` it, or call ``close()`` when done."""
    return SyncArtifactStore(urls.open_artifact_store(url, **options))


def open_store(session_url: str, artifact_url: str, **options: Any) -> SyncCompositeStore:
    """A blocking composite over a session store and an artifact store."""
    return SyncCompositeStore(urls.open_store(session_url, artifact_url, **options))
