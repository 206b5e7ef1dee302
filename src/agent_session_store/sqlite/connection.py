"""The database file: how each thread connects to it, waits out a busy lock, and names errors."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

from ..errors import StorageConnectionFailedError, StorageError
from ..retry import Retry, RetryPolicy

T = TypeVar("T")

# SQLite primary result codes (exc.sqlite_errorcode & 0xFF).
SQLITE_PERM, SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY = 3, 5, 6, 8
SQLITE_CORRUPT, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_CONSTRAINT = 11, 13, 14, 19
SQLITE_NOTADB = 26


def result_code(exc: BaseException) -> int:
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def is_busy(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and result_code(exc) in (
        SQLITE_BUSY,
        SQLITE_LOCKED,
    )


@dataclass(frozen=True, slots=True)
class Database:
    """One SQLite file and the settings every connection to it gets."""

    path: str
    synchronous: str  # "full" or "normal"
    busy_timeout: float  # seconds
    busy_retry: RetryPolicy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        policy = RetryPolicy(timeout=self.busy_timeout, first_delay=0.001, max_delay=0.05)
        object.__setattr__(self, "busy_retry", policy)

    def connect(self, *, create: bool = False, query_only: bool = False) -> sqlite3.Connection:
        """A connection in autocommit mode: callers issue BEGIN / COMMIT themselves.

        ``mode=rw`` unless ``create``: opening must not create a missing file by accident.
        """
        mode = "rwc" if create else "rw"
        conn = sqlite3.connect(
            f"file:{quote(self.path)}?mode={mode}",
            uri=True,
            timeout=self.busy_timeout,
            isolation_level=None,
            check_same_thread=False,  # closed by whichever thread shuts the store down
            cached_statements=256,
        )
        conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
        if query_only:
            conn.execute("PRAGMA query_only = ON")
        return conn

    def retry_busy(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` again while SQLite reports busy, within the busy timeout.

        SQLite's own busy handler waits inside most calls; this covers the cases where it
        returns SQLITE_BUSY at once (a WAL being recovered, a lock upgrade that would deadlock).
        """
        retry = Retry(self.busy_retry)  # from the first try: SQLite's own wait counts
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or not retry.pause_sync():
                    raise

    def error(self, exc: sqlite3.Error | OSError, operation: str) -> StorageError:
        """Name the file and say what to check; the caller keeps the exception as __cause__."""
        code = result_code(exc)
        where = f"SQLite database {self.path}"
        retryable = False
        if is_busy(exc):
            text = (
                f"{where} stayed locked by other writers for more than {self.busy_timeout:g}s "
                f"during {operation}"
            )
            retryable = True
        elif code in (SQLITE_NOTADB, SQLITE_CORRUPT):
            text = f"{self.path} is not a SQLite database, or it is corrupt ({exc})"
        elif code in (SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_PERM) or isinstance(
            exc, PermissionError
        ):
            text = (
                f"cannot open or write {where} ({exc}): the file and its directory must exist "
                "and be writable (WAL mode keeps -wal and -shm files beside the database)"
            )
        elif code == SQLITE_FULL:
            text = f"{where} is full: the disk or the file system quota is exhausted ({exc})"
        elif isinstance(exc, sqlite3.IntegrityError) or code == SQLITE_CONSTRAINT:
            text = f"{where}: a constraint failed during {operation} ({exc})"
        else:
            text = f"{where}: {operation} failed: {type(exc).__name__}: {exc}"
        details: dict[str, Any] = {"operation": operation, "path": self.path}
        name = getattr(exc, "sqlite_errorname", None)
        if name:
            details["sqlite_error"] = name
        if retryable:  # the lock may be released later: the caller may try again
            details["reason"] = "busy"
            return StorageConnectionFailedError(text, details=details)
        return StorageError(text, details=details)
