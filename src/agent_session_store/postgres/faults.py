"""What a driver or server failure means for the caller: one classification for the store.

Callers branch on the code: ``storage_connection_failed`` says "the database cannot be
reached or the connection broke: retry later" (appends are idempotent by id, so retrying one
whose reply was lost is safe); ``migration_required`` names the command that fixes it;
``validation_error`` is a setting the server refused; ``sequence_conflict`` comes from a
conditional append or import. Everything else, including wrong credentials and a statement
that outlived ``command_timeout``, is ``storage_error`` with a message that says what to fix.
The driver's exception stays as ``__cause__``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
from asyncpg.exceptions import PostgresError

from ..errors import (
    StorageConnectionFailedError,
    StorageError,
    StoreError,
    ValidationError,
    sequence_conflict,
)

__all__ = [
    "MISSING_SQLSTATES",
    "RETRYABLE_SQLSTATES",
    "is_connection_error",
    "sequence_conflicts",
    "statement",
    "wrap",
]

RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock, serialization failure
# admin/crash shutdown, cannot connect now, too many connections (+ class 08, connection)
_CONNECTION_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})
MISSING_SQLSTATES = frozenset({"42P01", "3F000", "42883"})  # table, schema, function
SEQUENCE_CONFLICT = "AS409"  # raised by our functions, DETAIL 'expected actual'


class ConnectionLost(Exception):
    """A statement failed and its connection is gone: whatever the driver said, the cause is
    the connection (asyncpg reports some of these as ``InternalClientError``)."""


class NotSent(ConnectionLost):
    """The driver refused to start a statement on a connection the server had ended: nothing
    was sent, so the statement can run on another connection."""


class CommandTimeout(Exception):
    """A statement ran longer than ``command_timeout``; the driver cancelled it."""


@contextlib.contextmanager
def statement(conn: Any) -> Iterator[None]:
    """Around one statement on ``conn``: name the two failures the driver's type hides."""
    try:
        yield
    except StoreError:
        raise
    except TimeoutError as exc:
        raise CommandTimeout(str(exc)) from exc
    except asyncpg.InternalClientError as exc:
        # The driver's protocol state is broken, typically by a server-side termination it
        # has read only half of. The connection is unusable: close it so the pool opens a
        # fresh one instead of handing this one out again.
        conn.terminate()
        if str(exc).startswith("cannot switch to state"):
            raise NotSent(f"{type(exc).__name__}: {exc}") from exc
        raise ConnectionLost(f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        if conn.is_closed() and not isinstance(exc, PostgresError | OSError):
            raise ConnectionLost(f"{type(exc).__name__}: {exc}") from exc
        raise


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
    if isinstance(exc, ConnectionLost | asyncpg.PostgresConnectionError | OSError | TimeoutError):
        return True
    if isinstance(exc, PostgresError):
        state = exc.sqlstate or ""
        return state.startswith("08") or state in _CONNECTION_SQLSTATES
    if isinstance(exc, asyncpg.InterfaceError):
        text = str(exc).lower()
        return "connection" in text and ("closed" in text or "lost" in text)
    return False


def _who(dsn: str | None) -> tuple[str, str]:
    """The role and database a DSN names, for messages (never its password)."""
    try:
        parts = urlsplit(dsn or "")
        user = unquote(parts.username or "") or "<your OS user>"
        database = unquote(parts.path.lstrip("/")) or user
    except ValueError:
        return "<role>", "<database>"
    return user, database


def wrap(
    exc: BaseException,
    operation: str,
    *,
    dsn: str | None = None,
    command_timeout: float | None = None,
) -> StoreError:
    """The StoreError for a failure that is not about a missing schema (see the store)."""
    if isinstance(exc, StoreError):
        return exc
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    details: dict[str, Any] = {"operation": operation}
    where = f"postgres {operation} failed"
    state = exc.sqlstate if isinstance(exc, PostgresError) else None
    user, database = _who(dsn)
    server_says = str(exc)
    if state == "28P01":
        details["reason"] = "password_rejected"
        return StorageError(
            f"{where}: the server rejected the password of role {user!r}. Put the right "
            f"password in the URL (postgresql://{user}:PASSWORD@host/{database}), in "
            "PGPASSWORD or in ~/.pgpass",
            details=details,
        )
    if state == "28000" and "does not exist" in server_says:
        details["reason"] = "unknown_role"
        return StorageError(
            f'{where}: the server has no role {user!r}. Create it (CREATE ROLE "{user}" '
            "LOGIN PASSWORD '...') or put an existing role in the URL "
            "(postgresql://ROLE:PASSWORD@host/db)",
            details=details,
        )
    if state == "28000":
        details["reason"] = "connection_refused_by_hba"
        return StorageError(
            f"{where}: the server refuses this connection ({server_says}). Allow this "
            "client, role and database in the server's pg_hba.conf, or connect as another role",
            details=details,
        )
    if state == "3D000":
        details["reason"] = "unknown_database"
        return StorageError(
            f"{where}: the server has no database {database!r}. Create it (createdb "
            f'"{database}", or CREATE DATABASE "{database}") or put an existing database in '
            "the URL path (postgresql://user@host/DATABASE)",
            details=details,
        )
    if state in ("42704", "22023") and (
        server_says.startswith("unrecognized configuration parameter")
        or server_says.startswith("invalid value for parameter")
    ):
        return ValidationError(
            f"{where}: the server refused a connection setting: {server_says}", details=details
        )
    if state in ("26000", "42P05") and "__asyncpg_" in server_says:
        # asyncpg's named prepared statements live in one server session; a transaction
        # pooler (pgbouncer pool_mode=transaction) hands each statement another one.
        details["reason"] = "transaction_pooler"
        return StorageError(
            f"{where}: a prepared statement went missing or already existed ({text}): the "
            "connection goes through a transaction pooler such as pgbouncer. Add "
            "?statement_cache_size=0 to the URL (docs/postgres.md, Behind pgbouncer)",
            details=details,
        )
    if isinstance(exc, CommandTimeout):
        details["reason"] = "command_timeout"
        limit = f" ({command_timeout:g} s)" if command_timeout else ""
        return StorageError(
            f"{where}: a statement ran longer than command_timeout{limit} and was cancelled. "
            "Something holds a lock it needs or the server is overloaded; raise "
            "?command_timeout= if the work is legitimately long",
            details=details,
        )
    # InternalClientError: the driver's protocol state broke, seen when the server ends a
    # connection (termination, restart) while a pooled connection is handed out or released.
    if isinstance(exc, ConnectionLost | asyncpg.InternalClientError) or state in (
        "57P01",
        "57P02",
    ):
        details["reason"] = "connection_lost"
        return StorageConnectionFailedError(
            f"{where}: the connection to the database broke during the call ({text}); it may "
            "or may not have been applied, retry it",
            details=details,
        )
    if isinstance(exc, TimeoutError):
        details["reason"] = "connect_timeout"
        return StorageConnectionFailedError(
            f"{where}: cannot reach the database: no answer within connect_timeout ({text})",
            details=details,
        )
    if is_connection_error(exc):
        return StorageConnectionFailedError(
            f"{where}: cannot reach the database ({text})", details=details
        )
    return StorageError(f"{where}: {text}", details=details)
