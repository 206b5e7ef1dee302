"""What a driver or server failure means for the caller: one classification for the store.

Callers branch on the code: ``storage_connection_failed`` says "the database is unreachable
right now, retry later"; ``migration_required`` names the command that fixes it; anything else
is ``storage_error``. The driver's exception stays as ``__cause__``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import asyncpg
from asyncpg.exceptions import PostgresError

from ..errors import StorageConnectionFailedError, StorageError, StoreError, sequence_conflict

__all__ = ["RETRYABLE_SQLSTATES", "is_connection_error", "sequence_conflicts", "wrap"]

RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock, serialization failure
_CONNECTION_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})  # + class 08
MISSING_SQLSTATES = frozenset({"42P01", "3F000", "42883"})  # table, schema, function
SEQUENCE_CONFLICT = "AS409"  # raised by our functions, DETAIL 'expected actual'


@contextlib.contextmanager
def sequence_conflicts(session_id: str) -> Iterator[None]:
    """Turn the functions' AS409 into ``sequence_conflict`` for ``session_id``."""
    try:
        yield
    except PostgresError as exc:
        if exc.sqlstate != SEQUENCE_CONFLICT:
            raise
        expected, actual = (int(part) for part in str(exc.detail).split())
        reason = None if exc.message == "sequence conflict" else exc.message
        raise sequence_conflict(session_id, expected, actual, reason) from None


def is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, asyncpg.PostgresConnectionError | OSError | TimeoutError):
        return True
    if isinstance(exc, PostgresError):
        state = exc.sqlstate or ""
        return state.startswith("08") or state in _CONNECTION_SQLSTATES
    if isinstance(exc, asyncpg.InterfaceError):
        text = str(exc).lower()
        return "connection" in text and ("closed" in text or "lost" in text)
    return False


def wrap(exc: BaseException, operation: str) -> StoreError:
    """The StoreError for a failure that is not about a missing schema (see the store)."""
    if isinstance(exc, StoreError):
        return exc
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    details = {"operation": operation}
    if is_connection_error(exc):
        return StorageConnectionFailedError(
            f"postgres {operation} failed: cannot reach the database ({text})",
            details=details,
        )
    return StorageError(f"postgres {operation} failed: {text}", details=details)
