"""The two ports every backend implements: SessionStore and ArtifactStore.

These are the whole contract callers program against (../shared/spec/contract.md, cited
as "contract N.N"). A backend that passes ``agent_session_store.testing`` meets them.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, NamedTuple, Protocol, Self, runtime_checkable

from .models import Event, EventTypeLike, ExecutionResult, Run, RunStatus, Session, SessionStatus
from .query import CostSummary, Page, SessionStats, UsageSummary
from .retention import MaintenanceReport, RetentionPolicy
from .transfer import ImportReport, SessionExport

__all__ = [
    "ArtifactData",
    "ArtifactStat",
    "ArtifactStore",
    "EventPageJSON",
    "EventsJSON",
    "KeyPage",
    "NewestPayloads",
    "SessionMaintenance",
    "SessionQuery",
    "SessionStore",
]


@runtime_checkable
class SessionStore(Protocol):
    """Sessions, runs and an append-only, per-session event log.

    Guarantees (contract 3): the log is append-only and immutable; writes are idempotent;
    a read sees every write that returned before it; every operation is safe under concurrent
    callers, tasks in one process and, for durable backends, processes sharing one database.
    Failures raise ``StoreError`` subclasses; driver exceptions never escape.
    """

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def close(self) -> None:
        """Release resources; pending long-poll readers return ``[]`` at once (contract 1)."""

    async def save_session(self, session: Session) -> None:
        """Upsert by id with full replacement (3.1)."""

    async def get_session(self, session_id: str) -> Session:
        """Raise ``session_not_found`` for an unknown id; soft-deleted ones are returned (3.2)."""
        ...

    async def list_sessions(
        self,
        *,
        status: SessionStatus | str | None = None,
        agent_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Session]:
        """Filters AND together; ordered by ``created_at`` then ``id`` (3.3)."""
        ...

    async def delete_session(self, session_id: str) -> None:
        """Remove the session, its runs, events and counter atomically; idempotent (3.4)."""

    async def save_run(self, run: Run) -> None:
        """Upsert by id with full replacement (3.5)."""

    async def get_run(self, run_id: str) -> Run:
        """Raise ``run_not_found`` for an unknown id (3.5)."""
        ...

    async def list_runs(
        self, session_id: str, *, status: RunStatus | str | None = None, limit: int | None = None
    ) -> list[Run]:
        """Ordered by ``started_at`` then ``id``; unknown session gives ``[]`` (3.6)."""
        ...

    async def get_active_run(self, session_id: str) -> Run | None:
        """The ``running`` run with the latest ``started_at`` (ties: greatest id), or None (3.7)."""
        ...

    async def append_event(self, event: Event, *, expected_sequence: int | None = None) -> None:
        """Append one event; idempotent by event id (3.8)."""

    async def append_event_with_sequence(
        self, event: Event, *, expected_sequence: int | None = None
    ) -> Event:
        """Append one event and return its stored form, sequence number set (3.8).

        With ``expected_sequence`` the write happens only if the session's latest sequence
        is that number, else ``sequence_conflict`` and nothing is written; a retry of an
        already stored event succeeds whatever the counter says (3.12)."""
        ...

    async def append_events(
        self, events: list[Event], *, expected_sequence: int | None = None
    ) -> list[Event]:
        """Append a batch atomically; one contiguous sequence block per session, in input
        order; duplicates (stored or earlier in the batch) map to the stored event (3.8).
        ``expected_sequence`` as for ``append_event_with_sequence``; the batch must then
        name one session."""
        ...

    async def flush(
        self,
        session: Session | ExecutionResult,
        run: Run | None = None,
        events: list[Event] | None = None,
        *,
        expected_sequence: int | None = None,
    ) -> list[Event]:
        """Upsert session and run and append events as one atomic unit (3.8.7);
        ``expected_sequence`` checks the flushed session's counter, even with no events."""
        ...

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
        """Filtered events in sequence order (``order="desc"``: newest first, ``limit`` keeps
        the newest N); with ``wait_timeout_ms``, long-poll until the same query is non-empty
        or the timeout passes (3.9)."""
        ...

    async def get_visible_events(self, session_id: str, *, limit: int | None = None) -> list[Event]:
        """The history left after ``history_rewound`` events, oldest first; ``limit`` keeps
        the newest N of it (2.3)."""
        ...

    def iter_export(
        self, session_id: str, *, after: int = 0, page_size: int = 1000
    ) -> AsyncIterator[dict[str, Any]]:
        """The session as export records (header, session, runs, events), a page at a time;
        ``after`` leaves out events numbered up to it (10)."""
        ...

    async def export_session(self, session_id: str) -> SessionExport:
        """The whole session, runs and events (gaps kept); ``session_not_found`` if unknown (10)."""
        ...

    async def import_session(self, export: SessionExport) -> ImportReport:
        """Write an export keeping ids, numbers and timestamps, atomically; idempotent;
        other events at those numbers or ids stored elsewhere: ``sequence_conflict`` (10)."""
        ...

    async def import_records(
        self,
        records: AsyncIterable[Mapping[str, Any]] | Iterable[Mapping[str, Any]],
        *,
        chunk_size: int = 1000,
    ) -> ImportReport:
        """Import an export record stream a chunk at a time (bounded memory, resumable)."""
        ...

    async def fork_session(
        self,
        session_id: str,
        *,
        at_sequence: int | None = None,
        new_session_id: str | None = None,
        agent_id: str | None = None,
    ) -> Session:
        """A new session whose log is a copy of the source's visible history up to
        ``at_sequence``, numbered from 1, with deterministic ids: a retry is a no-op (10)."""
        ...

    async def get_latest_sequence(self, session_id: str) -> int:
        """The highest sequence ever assigned in the session, 0 when none (3.10)."""
        ...

    def stream_events(
        self, session_id: str, *, after: int = 0, **filters: Any
    ) -> AsyncIterator[Event]:
        """Yield events in order, forever, long-polling when caught up (3.11)."""
        ...


@runtime_checkable
class SessionQuery(Protocol):
    """Read-only questions across sessions (contract 7). Every built-in store implements
    it; a third-party backend may implement it apart from ``SessionStore``."""

    async def search_sessions(
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
        """Keyset pages of sessions; ``updated_at_desc`` (default), ``created_at_asc`` or
        ``created_at_desc``; soft-deleted ones only with ``include_deleted`` (7.2)."""
        ...

    async def get_session_stats(self, session_id: str) -> SessionStats:
        """Event and run counts, tokens, cost, providers, time span (7.3)."""
        ...

    async def search_runs(
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
        """Keyset pages of runs across sessions (7.4)."""
        ...

    async def get_usage_summary(
        self,
        *,
        session_id: str | None = None,
        agent_id: str | None = None,
        provider: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> UsageSummary:
        """Token totals of runs started within [since, until], by provider (7.5)."""
        ...

    async def get_cost_summary(
        self,
        *,
        session_id: str | None = None,
        agent_id: str | None = None,
        provider: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        pricing: dict[str, dict[str, dict[str, float]]] | None = None,
    ) -> CostSummary:
        """Cost by provider and model; runs neither costed nor priced are ``unmapped`` (7.6)."""
        ...

    async def search_events(
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
        """Keyset pages of events across sessions (7.7)."""
        ...

    async def count_events(
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
        """How many events ``search_events`` would page through (7.7)."""
        ...


@runtime_checkable
class NewestPayloads(Protocol):
    """An optional narrow read (every built-in store has it): ``(type, data)`` of a session's
    newest ``limit`` events, newest first, rewinds included. Framework adapters use it for a
    history's tail when the store offers it, and ``get_events(order="desc")`` otherwise."""

    async def get_newest_payloads(
        self, session_id: str, *, limit: int
    ) -> list[tuple[str, dict[str, Any]]]: ...


class EventPageJSON(NamedTuple):
    """A page of events already encoded: ``items`` is the JSON array of the events, each as
    the HTTP API writes ``Event.to_dict()`` (compact UTF-8), byte for byte."""

    items: bytes
    size: int  # how many events
    #: The last event's sequence number (None for an empty page): where the next page starts.
    last_sequence: int | None


@runtime_checkable
class EventsJSON(Protocol):
    """An optional read (SQLite has it): a bounded ``get_events`` page as the JSON the HTTP
    API sends, built by the backend from what it stores, without decoding the events and
    encoding them again (most of a page's server CPU). ``None`` means this page cannot be
    served that way (a payload whose text differs from its re-encoding, a long-poll, a
    backend without it): the caller uses ``get_events``, whose result it would encode."""

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
    ) -> EventPageJSON | None: ...


@runtime_checkable
class SessionMaintenance(Protocol):
    """Retention, run when the caller chooses; nothing runs on a timer (contract 8)."""

    async def soft_delete_expired_sessions(
        self, policy: RetentionPolicy, *, now: datetime | None = None
    ) -> int: ...

    async def hard_delete_expired_sessions(
        self, policy: RetentionPolicy, *, now: datetime | None = None
    ) -> int: ...

    async def prune_session_events(self, session_id: str, policy: RetentionPolicy) -> int: ...

    async def run_maintenance(
        self, policy: RetentionPolicy, *, dry_run: bool = False, now: datetime | None = None
    ) -> MaintenanceReport:
        """Soft delete, hard delete, prune, each step isolated; ``dry_run`` changes nothing."""
        ...

    async def health_check(self) -> list[str]:
        """Problems found in the stored data; empty means healthy."""
        ...


#: What ``ArtifactStore.put`` accepts: bytes-like, or chunks of them (sync or async).
ArtifactData = (
    bytes
    | bytearray
    | memoryview
    | Iterable[bytes | bytearray | memoryview]
    | AsyncIterable[bytes | bytearray | memoryview]
)


@dataclass(frozen=True, slots=True)
class ArtifactStat:
    key: str
    size: int
    sha256: str
    modified_at: datetime


@dataclass(frozen=True, slots=True)
class KeyPage:
    """One page of ``list_keys``; pass ``next_cursor`` back for the next, None at the end."""

    keys: list[str]
    next_cursor: str | None


@runtime_checkable
class ArtifactStore(Protocol):
    """Key → bytes for large blobs (contract 4).

    Keys are non-empty str, at most 1024 UTF-8 bytes, no NUL (else ``validation_error``); every
    other key is stored faithfully. Puts are atomic: readers see the old or the new object,
    never a part. ``get`` of an unknown key raises ``not_found``; ``delete`` is idempotent.
    """

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def close(self) -> None: ...

    async def put(
        self, key: str, data: ArtifactData, *, if_absent: bool = False, **opts: Any
    ) -> None:
        """Store ``data`` under ``key``, replacing any old object atomically.

        With ``if_absent=True`` the put only creates: when ``key`` is already stored it
        raises ``already_exists`` and changes nothing, and of several writers racing to
        create one key (in any number of processes) exactly one succeeds."""

    async def get(self, key: str, **opts: Any) -> bytes:
        """The whole object; ``not_found`` when absent."""
        ...

    def get_stream(self, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """The object in chunks of ``chunk_size`` bytes (the last may be shorter), never whole
        in memory; ``not_found`` when absent."""
        ...

    async def delete(self, key: str, **opts: Any) -> None:
        """Remove ``key``; an absent key is success."""

    async def exists(self, key: str) -> bool: ...

    async def stat(self, key: str) -> ArtifactStat:
        """Size, SHA-256 and modification time; ``not_found`` when absent."""
        ...

    async def list_keys(
        self, prefix: str = "", *, limit: int = 1000, cursor: str | None = None
    ) -> KeyPage:
        """Keys starting with ``prefix`` in sorted order, one page at a time."""
        ...
