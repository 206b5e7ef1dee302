"""What every artifact backend shares: key and argument checks, chunking, cursors, errors.

Checks live here so that "bad key → validation_error" and the cursor rules (contract 4) hold
identically on every backend rather than by each backend's care.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from ..errors import AlreadyExistsError, InvalidCursorError, StorageError, ValidationError
from ..ports import ArtifactData

__all__ = [
    "MAX_KEY_BYTES",
    "already_exists",
    "check_chunk_size",
    "check_if_absent",
    "check_key",
    "check_limit",
    "check_no_opts",
    "check_prefix",
    "closed_error",
    "decode_cursor",
    "encode_cursor",
    "from_ns",
    "is_async_chunks",
    "iter_async_chunks",
    "iter_sync_chunks",
]

MAX_KEY_BYTES = 1024
MAX_LIST_LIMIT = 10_000

# Not a secret: the MAC only makes a damaged or hand-edited cursor detectable. A cursor holds
# nothing a caller may not see (the prefix and the last key of the previous page).
_CURSOR_MAC_KEY = b"agent-session-store/artifact-cursor/v1"


def check_key(key: object) -> str:
    """A non-empty str, at most 1024 UTF-8 bytes, without NUL (contract 4)."""
    if type(key) is not str:
        raise ValidationError(
            f"artifact key must be a str, got {type(key).__name__}", details={"field": "key"}
        )
    if not key:
        raise ValidationError("artifact key must not be empty", details={"field": "key"})
    if "\x00" in key:
        raise ValidationError("artifact key must not contain NUL", details={"field": "key"})
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationError(
            "artifact key must be valid Unicode (no lone surrogates)", details={"field": "key"}
        ) from None
    if size > MAX_KEY_BYTES:
        raise ValidationError(
            f"artifact key is {size} UTF-8 bytes; at most {MAX_KEY_BYTES} are allowed",
            details={"field": "key", "bytes": size},
        )
    return key


def check_prefix(prefix: object) -> str:
    """A listing prefix: any str a key could start with (the empty string lists everything)."""
    if type(prefix) is not str:
        raise ValidationError(
            f"prefix must be a str, got {type(prefix).__name__}", details={"field": "prefix"}
        )
    if prefix:
        check_key(prefix)
    return prefix


def check_limit(limit: object) -> int:
    if type(limit) is not int or not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValidationError(
            f"limit must be an int between 1 and {MAX_LIST_LIMIT}, got {limit!r}",
            details={"field": "limit"},
        )
    return limit


def check_chunk_size(chunk_size: object) -> int:
    if type(chunk_size) is not int or chunk_size < 1:
        raise ValidationError(
            f"chunk_size must be a positive int, got {chunk_size!r}",
            details={"field": "chunk_size"},
        )
    return chunk_size


def check_no_opts(operation: str, opts: dict[str, Any], allowed: tuple[str, ...] = ()) -> None:
    """Refuse options a backend does not know, rather than silently ignoring a typo."""
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise ValidationError(
            f"{operation}: unknown option(s) {', '.join(unknown)}", details={"options": unknown}
        )


def check_if_absent(if_absent: object) -> bool:
    if type(if_absent) is not bool:
        raise ValidationError(
            f"if_absent must be a bool, got {type(if_absent).__name__}",
            details={"field": "if_absent"},
        )
    return if_absent


def already_exists(key: str) -> AlreadyExistsError:
    return AlreadyExistsError(
        f"artifact {key!r} already exists (put with if_absent=True only creates)",
        details={"key": key},
    )


def closed_error(backend: str, operation: str) -> StorageError:
    return StorageError(
        f"artifact {operation} failed: the {backend} artifact store is closed",
        details={"operation": operation},
    )


def from_ns(ns: int) -> datetime:
    """Nanoseconds since the epoch → aware UTC datetime with microsecond precision."""
    return datetime.fromtimestamp(ns // 1000 / 1_000_000, tz=UTC).replace(
        microsecond=(ns // 1000) % 1_000_000
    )


# ---------------------------------------------------------------- data


def _as_view(chunk: object, index: int | None) -> memoryview:
    if isinstance(chunk, bytes | bytearray | memoryview):
        view = memoryview(chunk)
        return view if view.format == "B" and view.ndim == 1 else view.cast("B")
    where = "data" if index is None else f"data chunk {index}"
    raise ValidationError(
        f"{where} must be bytes-like, got {type(chunk).__name__}", details={"field": "data"}
    )


def is_async_chunks(data: ArtifactData) -> bool:
    return isinstance(data, AsyncIterable)


def _not_data(data: object) -> ValidationError:
    return ValidationError(
        f"data must be bytes-like or an iterable of bytes-like chunks, got {type(data).__name__}",
        details={"field": "data"},
    )


def iter_sync_chunks(data: ArtifactData) -> Iterator[memoryview]:
    """The chunks of bytes-like or sync-iterable data, each checked to be bytes-like."""
    if isinstance(data, bytes | bytearray | memoryview):
        yield _as_view(data, None)
        return
    if isinstance(data, str) or not isinstance(data, Iterable):
        raise _not_data(data)
    for i, chunk in enumerate(data):
        view = _as_view(chunk, i)
        if view.nbytes:
            yield view


async def iter_async_chunks(data: AsyncIterable[Any]) -> AsyncIterator[memoryview]:
    i = 0
    async for chunk in data:
        view = _as_view(chunk, i)
        i += 1
        if view.nbytes:
            yield view


def check_data_type(data: object) -> None:
    """Refuse what can never be data before a backend starts writing anything."""
    if isinstance(data, bytes | bytearray | memoryview | AsyncIterable):
        return
    if isinstance(data, str) or not isinstance(data, Iterable):
        raise _not_data(data)


def sha256_hex(data: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- cursors


def _mac(payload: bytes) -> str:
    return hmac.new(_CURSOR_MAC_KEY, payload, hashlib.sha256).hexdigest()[:32]


def encode_cursor(prefix: str, last_key: str) -> str:
    """An opaque token: 'continue this prefix's listing after last_key'."""
    payload = json.dumps({"p": prefix, "k": last_key}, ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + _mac(payload)


def decode_cursor(cursor: object, prefix: str) -> str:
    """The last key of the previous page; InvalidCursorError when damaged or made for
    another prefix."""
    if type(cursor) is not str:
        raise InvalidCursorError(f"cursor must be a str, got {type(cursor).__name__}")
    body, dot, mac = cursor.partition(".")
    try:
        if not dot:
            raise ValueError("no MAC")
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        if not hmac.compare_digest(mac, _mac(payload)):
            raise ValueError("MAC mismatch")
        doc = json.loads(payload)
        made_for, last = doc["p"], doc["k"]
        if type(made_for) is not str or type(last) is not str:
            raise ValueError("bad fields")
    except (ValueError, KeyError, TypeError):
        raise InvalidCursorError("cursor is malformed or has been altered") from None
    if made_for != prefix:
        raise InvalidCursorError(
            "cursor was made for another listing (a different prefix)",
            details={"prefix": prefix},
        )
    return last
