"""Turning values into stored rows and back, shared by every backend.

One encoder means one set of rules: a payload that one backend rejects, every backend
rejects, with the same message (contract 3.8.1). Stored payloads are canonical JSON text,
so what a caller gets back is decoded from what was stored, never an alias of its own dict.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, NamedTuple

from .errors import ValidationError
from .models import (
    MAX_ID_BYTES,
    CustomEventType,
    Event,
    EventType,
    Run,
    Session,
    check_id,
    check_text,
    from_micros,
    to_micros,
)

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "EncodedEvent",
    "check_rewind",
    "decode_event",
    "decode_run",
    "decode_session",
    "dumps",
    "encode_event",
    "encode_run",
    "encode_session",
]

#: A single event's payload (data + metadata) above this is refused, like a document-size
#: limit in a document store: one runaway tool output must not stall every reader of a session.
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024

_MAX_DEPTH = 256
_encoder = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False
)
# json's C encoder, built once: JSONEncoder.encode rebuilds it on every call.
_c_encode = (
    None
    if c_make_encoder is None
    else c_make_encoder(
        None, _encoder.default, encode_basestring, None, ":", ",", False, False, False
    )
)


def _dumps(value: Any) -> str:
    if _c_encode is None:
        return _encoder.encode(value)
    return "".join(_c_encode(value, 0))


_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # the C scanner json.loads uses, minus its wrapping


def _loads(text: str) -> Any:
    """Decode JSON text this package wrote (compact, no leading whitespace)."""
    if text == "{}":
        return {}
    return _scan(text, 0)[0]


def _bad(where: str, what: str) -> ValidationError:
    return ValidationError(f"{where}: {what}", details={"field": where})


def check_json(value: Any, where: str) -> None:
    """Refuse anything JSON would silently coerce or cannot carry (contract 2.4)."""
    _walk(value, where, 0, set())


def _walk(obj: Any, path: str, depth: int, active: set[int]) -> None:
    if isinstance(obj, str):
        check_text(obj, path)
        return
    if obj is None or obj is True or obj is False or isinstance(obj, int):
        return
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise _bad(path, f"{obj!r} is not a JSON number (NaN and infinities are refused)")
        return
    if depth > _MAX_DEPTH:
        raise _bad(path, f"nested deeper than {_MAX_DEPTH} levels")
    if isinstance(obj, dict):
        key = id(obj)
        if key in active:
            raise _bad(path, "circular reference")
        active.add(key)
        for k, v in obj.items():
            if type(k) is not str and not isinstance(k, str):
                raise _bad(path, f"key {k!r} is a {type(k).__name__}; JSON object keys must be str")
            if not k.isascii() or "\x00" in k:
                check_text(k, path)
            tv = type(v)
            if tv is int or (tv is str and v.isascii() and "\x00" not in v):
                continue
            _walk(v, f"{path}.{k}", depth + 1, active)
        active.discard(key)
        return
    if isinstance(obj, list):
        key = id(obj)
        if key in active:
            raise _bad(path, "circular reference")
        active.add(key)
        for i, v in enumerate(obj):
            _walk(v, f"{path}[{i}]", depth + 1, active)
        active.discard(key)
        return
    if isinstance(obj, bytes | bytearray | memoryview):
        raise _bad(path, "bytes are not JSON; store large binary data as an artifact")
    raise _bad(
        path,
        f"a {type(obj).__name__} is not JSON (use dict, list, str, int, float, bool, None)",
    )


def dumps(value: Any, where: str) -> str:
    check_json(value, where)
    return _dumps(value)


def _size_ok(text: str, limit: int) -> bool:
    n = len(text)
    return n <= limit and (n * 4 <= limit or len(text.encode("utf-8")) <= limit)


class EncodedEvent(NamedTuple):
    """An event as every backend stores it: scalar columns plus two JSON texts."""

    id: str
    session_id: str
    type: str
    run_id: str | None
    timestamp_us: int
    data: str
    metadata: str
    schema_version: int
    provider: str | None
    correlation_id: str | None


def encode_event(event: Event, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> EncodedEvent:
    if type(event) is not Event:
        raise ValidationError(f"expected an Event, got {type(event).__name__}")
    _recheck(event)
    if event.type is EventType.HISTORY_REWOUND:
        check_rewind(event)
    data = dumps(event.data, "event.data") if event.data else "{}"
    metadata = dumps(event.metadata, "event.metadata") if event.metadata else "{}"
    if not _size_ok(data, max_bytes) or not _size_ok(data + metadata, max_bytes):
        raise ValidationError(
            f"event {event.id!r}: payload is larger than the {max_bytes}-byte limit per event; "
            "store large blobs as artifacts and reference them by key",
            details={"limit": max_bytes},
        )
    return EncodedEvent(
        event.id,
        event.session_id,
        event.type.value,
        event.run_id,
        to_micros(event.timestamp),
        data,
        metadata,
        event.schema_version,
        event.provider,
        event.correlation_id,
    )


_TYPES: dict[str, EventType | CustomEventType] = {t.value: t for t in EventType}
_MAX_CACHED_TYPES = 4096


def _type_of(name: str) -> EventType | CustomEventType:
    """Stored type text to its value; custom types are interned so reads stay cheap."""
    found = _TYPES.get(name)
    if found is None:
        found = CustomEventType(name)
        if len(_TYPES) < _MAX_CACHED_TYPES:
            _TYPES[name] = found
    return found


def check_rewind(event: Event) -> None:
    """A rewind names the last visible sequence number; anything else would hide at random."""
    to = event.data.get("to_sequence")
    if type(to) is not int or to < 0:
        raise ValidationError(
            f"event {event.id!r}: a history_rewound event needs data.to_sequence, an int >= 0 "
            f"(the last sequence number that stays visible), got {to!r}",
            details={"field": "event.data.to_sequence"},
        )


def _recheck(event: Event) -> None:
    """Repeat the constructor's checks without its cost: values are frozen, but a caller can
    force a field with ``object.__setattr__``, and this is the last stop before a write."""
    if (
        (type(event.type) is not EventType and type(event.type) is not CustomEventType)
        or type(event.timestamp) is not datetime
        or event.timestamp.tzinfo is not UTC
        or type(event.schema_version) is not int
        or event.schema_version < 1
        or type(event.data) is not dict
        or type(event.metadata) is not dict
    ):
        Event.__post_init__(event)  # raises the constructor's error for the bad field
        if event.timestamp.tzinfo is not UTC or not isinstance(
            event.type, EventType | CustomEventType
        ):
            raise ValidationError("event fields were changed after construction")
    for name in ("id", "session_id"):
        value = getattr(event, name)
        if (
            type(value) is not str
            or not value
            or len(value) > MAX_ID_BYTES
            or not value.isascii()
            or "\x00" in value
        ):
            check_id(value, f"event.{name}")
    for name in ("run_id", "provider", "correlation_id"):
        value = getattr(event, name)
        if value is not None and (
            type(value) is not str
            or len(value) > MAX_ID_BYTES
            or not value.isascii()
            or "\x00" in value
        ):
            Event.__post_init__(event)


def decode_event(row: EncodedEvent | tuple[Any, ...], sequence_number: int) -> Event:
    """Rebuild the stored form; also used for rows straight from a driver (same column order)."""
    kind = _TYPES.get(row[2]) or _type_of(row[2])
    return Event._trusted(
        row[0],
        kind,
        row[1],
        row[3],
        from_micros(row[4]),
        sequence_number,
        _loads(row[5]),
        _loads(row[6]),
        row[7],
        row[8],
        row[9],
    )


def encode_session(session: Session) -> str:
    if type(session) is not Session:
        raise ValidationError(f"expected a Session, got {type(session).__name__}")
    Session.__post_init__(session)
    return dumps(session.to_dict(), "session")


def decode_session(doc: str) -> Session:
    return Session.from_dict(_loads(doc))


def encode_run(run: Run) -> str:
    if type(run) is not Run:
        raise ValidationError(f"expected a Run, got {type(run).__name__}")
    Run.__post_init__(run)
    return dumps(run.to_dict(), "run")


def decode_run(doc: str) -> Run:
    return Run.from_dict(_loads(doc))
