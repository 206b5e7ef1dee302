"""The one error family every store raises (contract 1).

Callers branch on ``err.code``, a stable string, rather than on driver exceptions, so a
backend can be swapped without touching error handling. The driver's own exception, when
there is one, is kept as ``__cause__`` for debugging and never shown in the message.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

__all__ = [
    "AlreadyExistsError",
    "DependencyNotAvailableError",
    "InvalidCursorError",
    "InvalidEventTypeError",
    "InvalidStatusError",
    "MigrationRequiredError",
    "NotFoundError",
    "QueryNotImplementedError",
    "RunNotFoundError",
    "SequenceConflictError",
    "SessionNotFoundError",
    "StorageConnectionFailedError",
    "StorageError",
    "StoreError",
    "ValidationError",
    "redact",
    "sequence_conflict",
]


class StoreError(Exception):
    """Base of every error a store raises; ``code`` is what callers should match on."""

    code: ClassVar[str] = "store_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        self.message = redact(message)
        self.details: dict[str, Any] = dict(details or {})
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries in the multi-process tests and in user pools.
        return (_rebuild, (type(self), self.message, self.details))


def _rebuild(cls: type[StoreError], message: str, details: dict[str, Any]) -> StoreError:
    return cls(message, details=details)


class ValidationError(StoreError):
    """Malformed input: wrong type, missing field, bad option value, bad key."""

    code = "validation_error"


class InvalidEventTypeError(ValidationError):
    """An event type outside the 28 known ones."""

    code = "invalid_event_type"


class InvalidStatusError(ValidationError):
    """A session or run status outside the known set."""

    code = "invalid_status"


class SessionNotFoundError(StoreError):
    code = "session_not_found"


class RunNotFoundError(StoreError):
    code = "run_not_found"


class NotFoundError(StoreError):
    """An artifact key that is not stored."""

    code = "not_found"


class InvalidCursorError(ValidationError):
    code = "invalid_cursor"


class StorageError(StoreError):
    """The backend failed: I/O, constraint, server error."""

    code = "storage_error"


class QueryNotImplementedError(StorageError):
    """A backend built on the shared base that has not implemented contract 7 and 8 yet.

    Its code stays ``storage_error`` (contract 7); the class, and the store's
    ``implements_query`` attribute (``querying.supports_query``), tell it apart from a
    storage failure without reading the message.
    """


class StorageConnectionFailedError(StorageError):
    """The backend cannot be reached right now; retrying later may succeed."""

    code = "storage_connection_failed"


class MigrationRequiredError(StoreError):
    code = "migration_required"


class DependencyNotAvailableError(StoreError):
    code = "dependency_not_available"


class SequenceConflictError(StoreError):
    """A conditional append or an import found another log than the caller expected.

    ``details`` holds ``session_id``, ``expected`` and ``actual``: re-read the session from
    ``actual`` and decide again (optimistic concurrency, contract 3.12).
    """

    code = "sequence_conflict"


def sequence_conflict(
    session_id: str, expected: int, actual: int, reason: str | None = None
) -> SequenceConflictError:
    """The one way every backend reports a conditional append that lost its race, or an
    import that meets other events at its numbers (``reason`` says which)."""
    message = reason or (
        f"session {session_id!r} is at sequence {actual}, not the expected {expected}: "
        "another writer appended first; re-read the session and retry"
    )
    return SequenceConflictError(
        message, details={"session_id": session_id, "expected": expected, "actual": actual}
    )


class AlreadyExistsError(StoreError):
    """A create-only write (``put(..., if_absent=True)``) found the key already stored."""

    code = "already_exists"


# userinfo in a URL (scheme://user:password@host) and key=value secrets in DSNs.
_URL_SECRET = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@")
# the same inside a query string (?listen_url=postgresql%3A%2F%2Fuser%3Apass%40host)
_ENCODED_URL_SECRET = re.compile(
    r"(?i)(?P<scheme>[a-z][a-z0-9+.\-]*%3A%2F%2F)(?P<user>[^%/@\s&]*)%3A[^\s&/]*?%40"
)
_KV_SECRET = re.compile(
    r"(?i)\b(password|passwd|pwd|secret|token|aws_secret_access_key|secret_access_key)"
    r"(\s*[=:]\s*)('[^']*'|\"[^\"]*\"|[^\s&;,]+)"
)


def redact(text: str) -> str:
    """Remove passwords from anything that may end up in a message, a log or a repr."""
    text = _URL_SECRET.sub(r"\g<scheme>\g<user>:***@", text)
    text = _ENCODED_URL_SECRET.sub(r"\g<scheme>\g<user>%3A***%40", text)
    return _KV_SECRET.sub(r"\1\2***", text)
