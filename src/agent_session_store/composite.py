"""One handle that is both a SessionStore and an ArtifactStore (contract 5).

Each call goes straight to the backend that owns it: there is no lock, queue or task in
between, so a long-polling ``get_events`` delays nothing else, and a session call costs
what it costs on the session store. There is no transaction across the two backends:
deleting a session leaves its artifacts.

Errors: a ``StoreError`` from either backend passes through unchanged. Anything else the
artifact backend raises (a bug, a crash, a closed client) becomes ``storage_error`` naming
the operation, so a misbehaving artifact backend cannot take the session side down with it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, Literal, NoReturn, Self

from .errors import StorageError, StoreError, ValidationError, redact
from .lifecycle import OpenClose
from .models import Event, EventTypeLike, ExecutionResult, Run, RunStatus, Session, SessionStatus
from .ports import ArtifactData, ArtifactStat, ArtifactStore, EventPageJSON, KeyPage, SessionStore
from .query import CostSummary, Page, SessionStats, UsageSummary
from .querying import supports_query
from .retention import MaintenanceReport, RetentionPolicy
from .transfer import ImportReport, SessionExport

#: By convention a session's artifacts live under this prefix plus ``<session_id>/``.
SESSION_ARTIFACTS = "sessions/"

__all__ = ["CompositeSessionStore"]

_SESSION_METHODS = (
    "save_session",
    "get_session",
    "list_sessions",
    "delete_session",
    "save_run",
    "get_run",
    "list_runs",
    "get_active_run",
    "append_event",
    "append_event_with_sequence",
    "append_events",
    "flush",
    "get_events",
    "get_latest_sequence",
    "stream_events",
    "get_visible_events",
    "get_newest_payloads",
    "get_events_json",
    "iter_export",
    "export_session",
    "import_session",
    "import_records",
    "fork_session",
    "search_sessions",
    "get_session_stats",
    "search_runs",
    "get_usage_summary",
    "get_cost_summary",
    "search_events",
    "count_events",
    "soft_delete_expired_sessions",
    "prune_session_events",
    "health_check",
)


class CompositeSessionStore(OpenClose):
    """Session operations go to ``session_store``, artifact operations to
    ``artifact_store``; with ``owns=True`` (the default) closing this closes both."""

    def __init__(
        self, session_store: SessionStore, artifact_store: ArtifactStore, *, owns: bool = True
    ) -> None:
        self.session_store = session_store
        self.artifact_store = artifact_store
        self.owns = owns
        # Session calls need no translation, so bind them straight through: a call through
        # the composite then costs exactly what it costs on the session store. The methods
        # below define the same behaviour (and what type checkers see) for any backend
        # that lacks one of these names.
        for name in _SESSION_METHODS:
            method = getattr(session_store, name, None)
            if method is not None:
                setattr(self, name, method)

    def __repr__(self) -> str:
        return redact(
            f"CompositeSessionStore(session_store={self.session_store!r}, "
            f"artifact_store={self.artifact_store!r}, owns={self.owns})"
        )

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> Self:
        """Connect the owned backends now rather than on first use (fails fast). When one
        fails, both are closed again: ``async with`` never reaches ``close`` after a failed
        open, so what was already opened would leak (connections, threads)."""
        if self.owns:
            try:
                for backend in (self.session_store, self.artifact_store):
                    opener = getattr(backend, "open", None)
                    if opener is not None:
                        await opener()
            except BaseException:
                for backend in (self.session_store, self.artifact_store):
                    with contextlib.suppress(Exception):
                        await backend.close()
                raise
        return self

    async def close(self) -> None:
        """Close the owned backends; the artifact side is closed even if the session side
        fails to, and its own failure is reported like any artifact failure."""
        if not self.owns:
            return
        try:
            await self.session_store.close()
        finally:
            try:
                await self.artifact_store.close()
            except StoreError:
                raise
            except Exception as exc:
                self._artifact_failed(exc, "close")

    # ------------------------------------------------------------ sessions (delegated)

    @property
    def max_event_bytes(self) -> int:
        """The session store's event size limit, for callers that size payloads by it."""
        limit: int = self.session_store.max_event_bytes  # type: ignore[attr-defined]
        return limit

    async def save_session(self, session: Session) -> None:
        await self.session_store.save_session(session)

    async def get_session(self, session_id: str) -> Session:
        return await self.session_store.get_session(session_id)

    async def list_sessions(
        self,
        *,
        status: SessionStatus | str | None = None,
        agent_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Session]:
        return await self.session_store.list_sessions(
            status=status, agent_id=agent_id, limit=limit, offset=offset
        )

    async def delete_session(self, session_id: str) -> None:
        await self.session_store.delete_session(session_id)

    async def save_run(self, run: Run) -> None:
        await self.session_store.save_run(run)

    async def get_run(self, run_id: str) -> Run:
        return await self.session_store.get_run(run_id)

    async def list_runs(
        self, session_id: str, *, status: RunStatus | str | None = None, limit: int | None = None
    ) -> list[Run]:
        return await self.session_store.list_runs(session_id, status=status, limit=limit)

    async def get_active_run(self, session_id: str) -> Run | None:
        return await self.session_store.get_active_run(session_id)

    async def append_event(self, event: Event, *, expected_sequence: int | None = None) -> None:
        await self.session_store.append_event(event, expected_sequence=expected_sequence)

    async def append_event_with_sequence(
        self, event: Event, *, expected_sequence: int | None = None
    ) -> Event:
        return await self.session_store.append_event_with_sequence(
            event, expected_sequence=expected_sequence
        )

    async def append_events(
        self, events: list[Event], *, expected_sequence: int | None = None
    ) -> list[Event]:
        return await self.session_store.append_events(events, expected_sequence=expected_sequence)

    async def flush(
        self,
        session: Session | ExecutionResult,
        run: Run | None = None,
        events: list[Event] | None = None,
        *,
        expected_sequence: int | None = None,
    ) -> list[Event]:
        return await self.session_store.flush(
            session, run, events, expected_sequence=expected_sequence
        )

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
        return await self.session_store.get_events(
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

    async def get_latest_sequence(self, session_id: str) -> int:
        return await self.session_store.get_latest_sequence(session_id)

    def stream_events(
        self, session_id: str, *, after: int = 0, **filters: Any
    ) -> AsyncIterator[Event]:
        return self.session_store.stream_events(session_id, after=after, **filters)

    async def get_visible_events(self, session_id: str, *, limit: int | None = None) -> list[Event]:
        return await self.session_store.get_visible_events(session_id, limit=limit)

    async def get_newest_payloads(
        self, session_id: str, *, limit: int
    ) -> list[tuple[str, dict[str, Any]]]:
        """``SessionStoreBase.get_newest_payloads``, projected from ``get_events`` for a
        session store without it."""
        if type(limit) is not int or limit < 1:
            raise ValidationError("limit must be an int >= 1", details={"field": "limit"})
        found = await self.session_store.get_events(session_id, order="desc", limit=limit)
        return [(e.type.value, e.data) for e in found]

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
        """``ports.EventsJSON`` for a session store without it: None, use ``get_events``
        (a session store with it is called directly, bound in ``__init__``)."""
        return None

    def iter_export(
        self, session_id: str, *, after: int = 0, page_size: int = 1000
    ) -> AsyncIterator[dict[str, Any]]:
        return self.session_store.iter_export(session_id, after=after, page_size=page_size)

    async def export_session(self, session_id: str) -> SessionExport:
        return await self.session_store.export_session(session_id)

    async def import_session(self, export: SessionExport) -> ImportReport:
        return await self.session_store.import_session(export)

    async def import_records(
        self,
        records: AsyncIterable[Mapping[str, Any]] | Iterable[Mapping[str, Any]],
        *,
        chunk_size: int = 1000,
    ) -> ImportReport:
        return await self.session_store.import_records(records, chunk_size=chunk_size)

    async def fork_session(
        self,
        session_id: str,
        *,
        at_sequence: int | None = None,
        new_session_id: str | None = None,
        agent_id: str | None = None,
    ) -> Session:
        return await self.session_store.fork_session(
            session_id, at_sequence=at_sequence, new_session_id=new_session_id, agent_id=agent_id
        )

    # ------------------------------------------------------------ query and retention

    @property
    def implements_query(self) -> bool:
        """As its session store: the query methods below only pass calls through."""
        return supports_query(self.session_store)

    async def search_sessions(self, **filters: Any) -> Page[Session]:
        return await self.session_store.search_sessions(**filters)  # type: ignore[attr-defined, no-any-return]

    async def get_session_stats(self, session_id: str) -> SessionStats:
        return await self.session_store.get_session_stats(session_id)  # type: ignore[attr-defined, no-any-return]

    async def search_runs(self, **filters: Any) -> Page[Run]:
        return await self.session_store.search_runs(**filters)  # type: ignore[attr-defined, no-any-return]

    async def get_usage_summary(self, **filters: Any) -> UsageSummary:
        return await self.session_store.get_usage_summary(**filters)  # type: ignore[attr-defined, no-any-return]

    async def get_cost_summary(self, **filters: Any) -> CostSummary:
        return await self.session_store.get_cost_summary(**filters)  # type: ignore[attr-defined, no-any-return]

    async def search_events(self, **filters: Any) -> Page[Event]:
        return await self.session_store.search_events(**filters)  # type: ignore[attr-defined, no-any-return]

    async def count_events(self, **filters: Any) -> int:
        return await self.session_store.count_events(**filters)  # type: ignore[attr-defined, no-any-return]

    async def soft_delete_expired_sessions(
        self, policy: RetentionPolicy, *, now: datetime | None = None
    ) -> int:
        return await self.session_store.soft_delete_expired_sessions(policy, now=now)  # type: ignore[attr-defined, no-any-return]

    async def prune_session_events(self, session_id: str, policy: RetentionPolicy) -> int:
        return await self.session_store.prune_session_events(session_id, policy)  # type: ignore[attr-defined, no-any-return]

    async def health_check(self) -> list[str]:
        return await self.session_store.health_check()  # type: ignore[attr-defined, no-any-return]

    @staticmethod
    def session_artifact_key(session_id: str, name: str) -> str:
        """Where a session's artifacts live by convention: hard deletion removes them too."""
        return f"{SESSION_ARTIFACTS}{session_id}/{name}"

    async def _delete_session_artifacts(self, session_ids: list[str], dry_run: bool) -> int:
        count = 0
        for sid in session_ids:
            cursor: str | None = None
            while True:
                page = await self.list_keys(f"{SESSION_ARTIFACTS}{sid}/", cursor=cursor)
                count += len(page.keys)
                if not dry_run:
                    for key in page.keys:
                        await self.delete(key)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        return count

    async def hard_delete_expired_sessions(
        self, policy: RetentionPolicy, *, now: datetime | None = None
    ) -> int:
        """Hard-deletes sessions and, by the ``sessions/<id>/`` convention, their artifacts."""
        report = await self.run_maintenance(
            replace(policy, max_completed_session_age_days=None, max_events_per_session=None),
            now=now,
        )
        if report.errors:
            raise StorageError(report.errors[0])
        return report.sessions_hard_deleted

    async def run_maintenance(
        self, policy: RetentionPolicy, *, dry_run: bool = False, now: datetime | None = None
    ) -> MaintenanceReport:
        """As on the session store, plus the hard-deleted sessions' artifacts (8.2)."""
        report: MaintenanceReport = await self.session_store.run_maintenance(  # type: ignore[attr-defined]
            policy, dry_run=dry_run, now=now, _artifacts=self._delete_session_artifacts
        )
        return report

    # ------------------------------------------------------------ artifacts (isolated)

    def _artifact_failed(self, exc: Exception, operation: str) -> NoReturn:
        raise StorageError(
            f"artifact {operation} failed in {type(self.artifact_store).__name__}: "
            f"{type(exc).__name__}: {exc}",
            details={"operation": operation},
        ) from exc

    async def put(self, key: str, data: ArtifactData, **opts: Any) -> None:
        # An exception raised by the caller's own chunk iterator is the caller's, not a
        # backend crash: it passes through as raised.
        raised_by_caller: list[BaseException] = []
        if isinstance(data, AsyncIterable):
            data = _guard_async(data, raised_by_caller)
        elif isinstance(data, Iterable) and not isinstance(data, bytes | bytearray | memoryview):
            data = _guard_sync(data, raised_by_caller)
        try:
            await self.artifact_store.put(key, data, **opts)
        except StoreError:
            raise
        except Exception as exc:
            if any(exc is e for e in raised_by_caller):
                raise
            self._artifact_failed(exc, "put")

    async def get(self, key: str, **opts: Any) -> bytes:
        try:
            return await self.artifact_store.get(key, **opts)
        except StoreError:
            raise
        except Exception as exc:
            self._artifact_failed(exc, "get")

    async def get_stream(self, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        try:
            stream = self.artifact_store.get_stream(key, chunk_size=chunk_size)
        except StoreError:
            raise
        except Exception as exc:
            self._artifact_failed(exc, "get_stream")
        try:
            async for block in stream:
                yield block
        except StoreError:
            raise
        except Exception as exc:
            self._artifact_failed(exc, "get_stream")
        finally:
            closer = getattr(stream, "aclose", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()

    async def delete(self, key: str, **opts: Any) -> None:
        try:
            await self.artifact_store.delete(key, **opts)
        except StoreError:
            raise
        except Exception as exc:
            self._artifact_failed(exc, "delete")

    async def exists(self, key: str) -> bool:
        try:
            return await self.artifact_store.exists(key)
        except StoreError:
            raise
        except Exception as exc:
            self._artifact_failed(exc, "exists")

    async def stat(self, key: str) -> ArtifactStat:
        try:
            return await self.artifact_store.stat(key)
        except StoreError:
            raise
        except Exception as exc:
            self._artifact_failed(exc, "stat")

    async def list_keys(
        self, prefix: str = "", *, limit: int = 1000, cursor: str | None = None
    ) -> KeyPage:
        try:
            return await self.artifact_store.list_keys(prefix, limit=limit, cursor=cursor)
        except StoreError:
            raise
        except Exception as exc:
            self._artifact_failed(exc, "list_keys")


def _guard_sync(chunks: Iterable[Any], raised: list[BaseException]) -> Iterator[Any]:
    try:
        yield from chunks
    except BaseException as exc:
        raised.append(exc)
        raise


async def _guard_async(
    chunks: AsyncIterable[Any], raised: list[BaseException]
) -> AsyncIterator[Any]:
    try:
        async for chunk in chunks:
            yield chunk
    except BaseException as exc:
        raised.append(exc)
        raise
