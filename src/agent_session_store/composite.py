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
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from datetime import datetime
from typing import Any, NoReturn, Self

from .errors import StorageError, StoreError, redact
from .lifecycle import OpenClose
from .models import Event, EventType, ExecutionResult, Run, RunStatus, Session, SessionStatus
from .ports import ArtifactData, ArtifactStat, ArtifactStore, KeyPage, SessionStore

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

    async def append_event(self, event: Event) -> None:
        await self.session_store.append_event(event)

    async def append_event_with_sequence(self, event: Event) -> Event:
        return await self.session_store.append_event_with_sequence(event)

    async def append_events(self, events: list[Event]) -> list[Event]:
        return await self.session_store.append_events(events)

    async def flush(
        self,
        session: Session | ExecutionResult,
        run: Run | None = None,
        events: list[Event] | None = None,
    ) -> list[Event]:
        return await self.session_store.flush(session, run, events)

    async def get_events(
        self,
        session_id: str,
        *,
        run_id: str | None = None,
        type: EventType | str | None = None,
        since: datetime | None = None,
        after: int | None = None,
        before: int | None = None,
        limit: int | None = None,
        wait_timeout_ms: int | None = None,
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
        )

    async def get_latest_sequence(self, session_id: str) -> int:
        return await self.session_store.get_latest_sequence(session_id)

    def stream_events(
        self, session_id: str, *, after: int = 0, **filters: Any
    ) -> AsyncIterator[Event]:
        return self.session_store.stream_events(session_id, after=after, **filters)

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
