"""Sessions, runs, a live append-only event log, and artifacts for AI agents.

The rules every store follows are in docs/contract.md. Backends are imported on first use, so
a missing optional driver only matters to code that asks for that backend: importing
``PostgresSessionStore``, ``RedisSessionStore`` or ``S3ArtifactStore`` without its extra raises
``dependency_not_available`` naming the extra, and ``from agent_session_store import *`` works
on a base install (those three are left out of ``__all__``; import them by name).
Blocking code uses ``agent_session_store.sync``; event builders are in
``agent_session_store.events``.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import (
    AlreadyExistsError,
    DependencyNotAvailableError,
    InvalidCursorError,
    InvalidEventTypeError,
    InvalidStatusError,
    MigrationRequiredError,
    NotFoundError,
    QueryNotImplementedError,
    RunNotFoundError,
    SequenceConflictError,
    SessionNotFoundError,
    StorageConnectionFailedError,
    StorageError,
    StoreError,
    ValidationError,
)
from .models import (
    EVENT_FAMILIES,
    CustomEventType,
    Event,
    EventType,
    ExecutionResult,
    Run,
    RunStatus,
    Session,
    SessionStatus,
)
from .ports import (
    ArtifactStat,
    ArtifactStore,
    EventPageJSON,
    EventsJSON,
    KeyPage,
    NewestPayloads,
    SessionStore,
)
from .transfer import ImportReport, SessionExport
from .urls import missing_extra, open_artifact_store, open_session_store, open_store

__version__ = "0.1.0"

# name -> (module, the extra its driver comes from, or None when a base install has it)
_LAZY: dict[str, tuple[str, str | None]] = {
    "InMemorySessionStore": ("agent_session_store.memory", None),
    "SQLiteSessionStore": ("agent_session_store.sqlite", None),
    "PostgresSessionStore": ("agent_session_store.postgres", "postgres"),
    "RedisSessionStore": ("agent_session_store.redis", "redis"),
    "CompositeSessionStore": ("agent_session_store.composite", None),
    "InMemoryArtifactStore": ("agent_session_store.artifacts.memory", None),
    "FileArtifactStore": ("agent_session_store.artifacts.files", None),
    "S3ArtifactStore": ("agent_session_store.artifacts.s3", "s3"),
}


def __getattr__(name: str) -> Any:
    found = _LAZY.get(name)
    if found is None:
        raise AttributeError(f"module 'agent_session_store' has no attribute {name!r}")
    module, extra = found
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, DependencyNotAvailableError) as exc:
        if extra is None:
            raise
        raise missing_extra(extra, name, exc) from exc


__all__ = [
    "EVENT_FAMILIES",
    "AlreadyExistsError",
    "ArtifactStat",
    "ArtifactStore",
    "CompositeSessionStore",
    "CustomEventType",
    "DependencyNotAvailableError",
    "Event",
    "EventPageJSON",
    "EventType",
    "EventsJSON",
    "ExecutionResult",
    "FileArtifactStore",
    "ImportReport",
    "InMemoryArtifactStore",
    "InMemorySessionStore",
    "InvalidCursorError",
    "InvalidEventTypeError",
    "InvalidStatusError",
    "KeyPage",
    "MigrationRequiredError",
    "NewestPayloads",
    "NotFoundError",
    "QueryNotImplementedError",
    "Run",
    "RunNotFoundError",
    "RunStatus",
    "SQLiteSessionStore",
    "SequenceConflictError",
    "Session",
    "SessionExport",
    "SessionNotFoundError",
    "SessionStatus",
    "SessionStore",
    "StorageConnectionFailedError",
    "StorageError",
    "StoreError",
    "ValidationError",
    "open_artifact_store",
    "open_session_store",
    "open_store",
]
