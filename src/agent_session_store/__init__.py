"""Sessions, runs, a live append-only event log, and artifacts for AI agents.

Backends are imported on first use, so a missing optional driver only matters to code that
asks for that backend.
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
from .ports import ArtifactStat, ArtifactStore, KeyPage, SessionStore
from .transfer import ImportReport, SessionExport
from .urls import open_artifact_store, open_session_store, open_store

__version__ = "0.1.0"

_LAZY = {
    "InMemorySessionStore": "agent_session_store.memory",
    "SQLiteSessionStore": "agent_session_store.sqlite",
    "PostgresSessionStore": "agent_session_store.postgres",
    "RedisSessionStore": "agent_session_store.redis",
    "CompositeSessionStore": "agent_session_store.composite",
    "InMemoryArtifactStore": "agent_session_store.artifacts.memory",
    "FileArtifactStore": "agent_session_store.artifacts.files",
    "S3ArtifactStore": "agent_session_store.artifacts.s3",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agent_session_store' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "EVENT_FAMILIES",
    "AlreadyExistsError",
    "ArtifactStat",
    "ArtifactStore",
    "CompositeSessionStore",
    "CustomEventType",
    "DependencyNotAvailableError",
    "Event",
    "EventType",
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
    "NotFoundError",
    "PostgresSessionStore",
    "RedisSessionStore",
    "Run",
    "RunNotFoundError",
    "RunStatus",
    "S3ArtifactStore",
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
