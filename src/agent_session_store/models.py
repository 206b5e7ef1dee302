"""The values a store keeps: sessions, runs, events (contract 2).

Values are frozen and validated when built, so a store never sees a half-formed one. Payload
dicts stay mutable Python dicts (that is what callers pass around); the stores check them for
JSON safety at write time, because a caller can still change a dict after building the value.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from time import time_ns as _time_ns
from typing import Any, Self

from .errors import InvalidEventTypeError, InvalidStatusError, ValidationError

__all__ = [
    "EVENT_FAMILIES",
    "CustomEventType",
    "Event",
    "EventType",
    "ExecutionResult",
    "Run",
    "RunStatus",
    "Session",
    "SessionStatus",
    "to_event_type",
    "utcnow",
]


class SessionStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_RUN


_TERMINAL_RUN = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMEOUT}
)


class EventType(StrEnum):
    SESSION_CREATED = "session_created"
    SESSION_STARTED = "session_started"
    SESSION_PAUSED = "session_paused"
    SESSION_RESUMED = "session_resumed"
    SESSION_COMPLETED = "session_completed"
    SESSION_FAILED = "session_failed"
    SESSION_CANCELLED = "session_cancelled"
    RUN_STARTED = "run_started"
    RUN_COMPLETED = "run_completed"
    RUN_FAILED = "run_failed"
    RUN_CANCELLED = "run_cancelled"
    RUN_TIMEOUT = "run_timeout"
    MESSAGE_SENT = "message_sent"
    MESSAGE_RECEIVED = "message_received"
    MESSAGE_STREAMED = "message_streamed"
    TOOL_CALL_STARTED = "tool_call_started"
    TOOL_CALL_COMPLETED = "tool_call_completed"
    TOOL_CALL_FAILED = "tool_call_failed"
    ERROR_OCCURRED = "error_occurred"
    ERROR_RECOVERED = "error_recovered"
    TOKEN_USAGE_UPDATED = "token_usage_updated"
    TURN_COMPLETED = "turn_completed"
    WORKSPACE_SNAPSHOT_TAKEN = "workspace_snapshot_taken"
    WORKSPACE_DIFF_COMPUTED = "workspace_diff_computed"
    POLICY_VIOLATION = "policy_violation"
    TOOL_APPROVAL_REQUESTED = "tool_approval_requested"
    TOOL_APPROVAL_GRANTED = "tool_approval_granted"
    TOOL_APPROVAL_DENIED = "tool_approval_denied"
    HISTORY_REWOUND = "history_rewound"

    @property
    def family(self) -> str:
        return _FAMILY_OF[self]


class CustomEventType(str):
    """A namespaced event type of the caller's own, ``<namespace>.<name>`` (contract 2.3).

    Frameworks keep their own records (an ADK event, a LangGraph checkpoint) in the log without
    widening the closed built-in set. It quacks like an ``EventType`` member where code reads
    ``.value`` and ``.family``, so every path that handles a type handles both.
    """

    __slots__ = ()

    @property
    def value(self) -> str:
        return str.__str__(self)

    @property
    def family(self) -> str:
        """The namespace: ``langgraph`` for ``langgraph.checkpoint``."""
        return self.partition(".")[0]

    def __repr__(self) -> str:
        return f"CustomEventType({str.__repr__(self)})"


#: What ``Event.type`` holds: a built-in type or a namespaced custom one.
EventTypeLike = EventType | CustomEventType


EVENT_FAMILIES: dict[str, tuple[EventType, ...]] = {
    "session": tuple(t for t in EventType if t.value.startswith("session_")),
    "run": tuple(t for t in EventType if t.value.startswith("run_")),
    "message": tuple(t for t in EventType if t.value.startswith("message_")),
    "tool": (
        EventType.TOOL_CALL_STARTED,
        EventType.TOOL_CALL_COMPLETED,
        EventType.TOOL_CALL_FAILED,
    ),
    "error": (EventType.ERROR_OCCURRED, EventType.ERROR_RECOVERED),
    "usage": (EventType.TOKEN_USAGE_UPDATED, EventType.TURN_COMPLETED),
    "workspace": (EventType.WORKSPACE_SNAPSHOT_TAKEN, EventType.WORKSPACE_DIFF_COMPUTED),
    "policy": (EventType.POLICY_VIOLATION,),
    "approval": (
        EventType.TOOL_APPROVAL_REQUESTED,
        EventType.TOOL_APPROVAL_GRANTED,
        EventType.TOOL_APPROVAL_DENIED,
    ),
    "history": (EventType.HISTORY_REWOUND,),
}
_FAMILY_OF = {t: fam for fam, types in EVENT_FAMILIES.items() for t in types}
assert len(_FAMILY_OF) == len(EventType) == 29

_CUSTOM_TYPE = re.compile(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*")
_MAX_CUSTOM_TYPE_LEN = 64

_EVENT_TYPES: dict[str, EventType] = {t.value: t for t in EventType}
_SESSION_STATUSES: dict[str, SessionStatus] = {s.value: s for s in SessionStatus}
_RUN_STATUSES: dict[str, RunStatus] = {s.value: s for s in RunStatus}

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------- field checks
# Shared by the constructors and by the stores' argument checks, so both say the same thing.


#: The longest id in UTF-8 bytes any backend takes (PostgreSQL's btree rows end near 2.7 kB).
MAX_ID_BYTES = 1024


def check_id(value: object, name: str) -> str:
    """A non-empty str of at most 1,024 UTF-8 bytes without NUL or lone surrogates: every
    backend can store and index it as text."""
    if type(value) is not str:
        raise ValidationError(
            f"{name} must be a str, got {type(value).__name__}", details={"field": name}
        )
    if not value:
        raise ValidationError(f"{name} must not be empty", details={"field": name})
    check_text(value, name)
    _check_id_size(value, name)
    return value


def _check_id_size(value: str, name: str) -> None:
    if len(value) > MAX_ID_BYTES // 4 and len(value.encode("utf-8")) > MAX_ID_BYTES:
        raise ValidationError(
            f"{name} is {len(value.encode('utf-8'))} bytes long; ids are at most "
            f"{MAX_ID_BYTES} UTF-8 bytes",
            details={"field": name, "limit": MAX_ID_BYTES},
        )


def check_text(value: str, name: str) -> None:
    if "\x00" in value:
        raise ValidationError(
            f"{name} contains a NUL character (\\u0000), which not every backend can store",
            details={"field": name},
        )
    if not value.isascii():
        try:
            # a slice at a time: one encode of a 12 MB text would hold the GIL for long
            for i in range(0, len(value), 1 << 16):
                value[i : i + (1 << 16)].encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(
                f"{name} contains a lone surrogate and is not valid Unicode text",
                details={"field": name},
            ) from None


def _opt_str(value: object, name: str) -> str | None:
    """An optional reference (run id, provider, correlation id): text of id size, or None."""
    if value is None:
        return None
    if type(value) is not str:
        raise ValidationError(
            f"{name} must be a str or None, got {type(value).__name__}", details={"field": name}
        )
    check_text(value, name)
    _check_id_size(value, name)
    return value


def check_aware(value: object, name: str) -> datetime:
    """Timestamps are compared across processes and hosts, so only aware UTC ones are accepted."""
    if not isinstance(value, datetime):
        raise ValidationError(
            f"{name} must be a datetime, got {type(value).__name__}", details={"field": name}
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(
            f"{name} must be timezone-aware (naive datetimes are ambiguous across hosts)",
            details={"field": name},
        )
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value


def _opt_aware(value: object, name: str) -> datetime | None:
    return None if value is None else check_aware(value, name)


def _dict(value: object, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(
            f"{name} must be a dict, got {type(value).__name__}", details={"field": name}
        )
    return value


def _opt_dict(value: object, name: str) -> dict[str, Any] | None:
    return None if value is None else _dict(value, name)


def _int(value: object, name: str, minimum: int) -> int:
    if type(value) is not int:
        raise ValidationError(
            f"{name} must be an int, got {type(value).__name__}", details={"field": name}
        )
    if value < minimum:
        raise ValidationError(f"{name} must be >= {minimum}, got {value}", details={"field": name})
    return value


def to_event_type(value: object) -> EventTypeLike:
    """A built-in type, or a custom ``<namespace>.<name>`` one (contract 2.3, C2)."""
    if isinstance(value, EventType | CustomEventType):
        return value
    if not isinstance(value, str):
        raise ValidationError(
            f"event type must be a str, got {type(value).__name__}", details={"field": "type"}
        )
    found = _EVENT_TYPES.get(value)
    if found is not None:
        return found
    if len(value) <= _MAX_CUSTOM_TYPE_LEN and _CUSTOM_TYPE.fullmatch(value):
        return CustomEventType(value)
    raise InvalidEventTypeError(
        f"unknown event type {value!r}: expected one of the 29 built-in types in EventType, "
        "or a custom '<namespace>.<name>' type (both parts [a-z][a-z0-9_]*, at most 64 "
        "characters in all)",
        details={"type": repr(value)},
    )


def to_session_status(value: object) -> SessionStatus:
    if isinstance(value, SessionStatus):
        return value
    found = _SESSION_STATUSES.get(value) if type(value) is str else None
    if found is None:
        raise InvalidStatusError(
            f"unknown session status {value!r}; expected one of {', '.join(_SESSION_STATUSES)}",
            details={"status": repr(value)},
        )
    return found


def to_run_status(value: object) -> RunStatus:
    if isinstance(value, RunStatus):
        return value
    found = _RUN_STATUSES.get(value) if type(value) is str else None
    if found is None:
        raise InvalidStatusError(
            f"unknown run status {value!r}; expected one of {', '.join(_RUN_STATUSES)}",
            details={"status": repr(value)},
        )
    return found


def to_micros(value: datetime) -> int:
    """Exact integer microseconds since the epoch: sortable and lossless in every backend."""
    return (value - EPOCH) // _MICROSECOND


#: Below this (2106-02-07), ``value * 1e-6`` is within 0.25 µs of the exact time, so the
#: C ``fromtimestamp`` (which rounds to the microsecond) gives the exact datetime.
FAST_MICROS = (1 << 32) * 1_000_000
_from_timestamp = datetime.fromtimestamp


def from_micros(value: int) -> datetime:
    """Every read pays this once per event: the C path costs three quarters of the sum."""
    if 0 <= value < FAST_MICROS:
        return _from_timestamp(value * 1e-6, UTC)
    return EPOCH + timedelta(0, 0, value)


def iso(value: datetime) -> str:
    """Fixed-width ISO-8601 UTC: strftime writes year 999 as "999", which no parser reads."""
    v = value.astimezone(UTC) if value.tzinfo is not UTC else value
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}"
        f".{v.microsecond:06d}Z"
    )


def parse_iso(value: object, name: str) -> datetime:
    if isinstance(value, datetime):
        return check_aware(value, name)
    if type(value) is not str:
        raise ValidationError(f"{name} must be an ISO-8601 string", details={"field": name})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(
            f"{name} is not an ISO-8601 timestamp: {value!r}", details={"field": name}
        ) from None
    return check_aware(parsed, name)


def _opt_iso(value: object, name: str) -> datetime | None:
    return None if value is None else parse_iso(value, name)


def _require(data: Mapping[str, Any], keys: tuple[str, ...], what: str) -> None:
    if not isinstance(data, Mapping):
        raise ValidationError(f"{what}.from_dict needs a dict, got {type(data).__name__}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise ValidationError(
            f"{what}.from_dict: missing required field(s) {', '.join(missing)}",
            details={"missing": missing},
        )


def new_id(prefix: str) -> str:
    """``prefix`` + a random UUID4 in hex; built from the bytes directly, as ``uuid.uuid4()``
    costs a UUID object (a fifth of an event's construction)."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    return prefix + b.hex()


def new_event_id() -> str:
    """``evt_`` + a time-ordered UUID (version 7: 48 bits of Unix milliseconds, then random
    bits) in hex. New events' ids then land at the end of every index on ``id`` instead of at
    random: a batch of 100 appends dirties a third of the pages a random id costs (SQLite,
    measured in WAL frames per commit), and the id index stays in cache."""
    b = bytearray((_time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10))
    b[6] = (b[6] & 0x0F) | 0x70  # version 7
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 9562 variant
    return "evt_" + b.hex()


_new = object.__new__
_set = object.__setattr__


# ---------------------------------------------------------------- the values


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    agent_id: str
    id: str = field(default_factory=lambda: new_id("ses_"))
    status: SessionStatus = SessionStatus.PENDING
    parent_session_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    deleted_at: datetime | None = None

    def __post_init__(self) -> None:
        _set(self, "id", check_id(self.id, "session.id"))
        _set(self, "agent_id", check_id(self.agent_id, "session.agent_id"))
        _set(self, "status", to_session_status(self.status))
        _set(
            self, "parent_session_id", _opt_str(self.parent_session_id, "session.parent_session_id")
        )
        _dict(self.metadata, "session.metadata")
        _dict(self.context, "session.context")
        if not isinstance(self.tags, list) or not all(type(t) is str for t in self.tags):
            raise ValidationError("session.tags must be a list of str", details={"field": "tags"})
        for tag in self.tags:
            check_text(tag, "session.tags")
        _set(self, "created_at", check_aware(self.created_at, "session.created_at"))
        _set(self, "updated_at", check_aware(self.updated_at, "session.updated_at"))
        _set(self, "deleted_at", _opt_aware(self.deleted_at, "session.deleted_at"))

    def with_status(self, status: SessionStatus | str) -> Session:
        return dataclasses.replace(self, status=to_session_status(status), updated_at=utcnow())

    def replace(self, **changes: Any) -> Session:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "agent_id": self.agent_id,
            "status": self.status.value,
            "parent_session_id": self.parent_session_id,
            "metadata": self.metadata,
            "context": self.context,
            "tags": list(self.tags),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "deleted_at": None if self.deleted_at is None else iso(self.deleted_at),
        }

    @classmethod
    def _trusted(
        cls,
        id: str,
        agent_id: str,
        status: SessionStatus,
        parent_session_id: str | None,
        metadata: dict[str, Any],
        context: dict[str, Any],
        tags: list[str],
        created_at: datetime,
        updated_at: datetime,
        deleted_at: datetime | None,
    ) -> Session:
        """Build from values a store already validated when it wrote them: listing 10,000
        sessions must not pay the constructor's checks 10,000 times."""
        self = _new(cls)
        _se_id(self, id)
        _se_agent_id(self, agent_id)
        _se_status(self, status)
        _se_parent_session_id(self, parent_session_id)
        _se_metadata(self, metadata)
        _se_context(self, context)
        _se_tags(self, tags)
        _se_created_at(self, created_at)
        _se_updated_at(self, updated_at)
        _se_deleted_at(self, deleted_at)
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        _require(data, ("id", "agent_id", "status", "created_at", "updated_at"), "Session")
        return cls(
            id=data["id"],
            agent_id=data["agent_id"],
            status=data["status"],
            parent_session_id=data.get("parent_session_id"),
            metadata=data.get("metadata") or {},
            context=data.get("context") or {},
            tags=list(data.get("tags") or []),
            created_at=parse_iso(data["created_at"], "session.created_at"),
            updated_at=parse_iso(data["updated_at"], "session.updated_at"),
            deleted_at=_opt_iso(data.get("deleted_at"), "session.deleted_at"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    session_id: str
    id: str = field(default_factory=lambda: new_id("run_"))
    status: RunStatus = RunStatus.PENDING
    input: dict[str, Any] | None = None
    output: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    turn_count: int = 0
    token_usage: dict[str, Any] = field(default_factory=dict)
    cost_usd: float | None = None
    started_at: datetime = field(default_factory=utcnow)
    ended_at: datetime | None = None
    provider: str | None = None
    provider_metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _set(self, "id", check_id(self.id, "run.id"))
        _set(self, "session_id", check_id(self.session_id, "run.session_id"))
        _set(self, "status", to_run_status(self.status))
        _opt_dict(self.input, "run.input")
        _opt_dict(self.output, "run.output")
        _opt_dict(self.error, "run.error")
        _dict(self.metadata, "run.metadata")
        _int(self.turn_count, "run.turn_count", 0)
        _dict(self.token_usage, "run.token_usage")
        cost = self.cost_usd
        if cost is not None:
            if type(cost) not in (int, float) or not math.isfinite(cost):
                raise ValidationError("run.cost_usd must be a finite number or None")
            _set(self, "cost_usd", float(cost))
        _set(self, "started_at", check_aware(self.started_at, "run.started_at"))
        _set(self, "ended_at", _opt_aware(self.ended_at, "run.ended_at"))
        _set(self, "provider", _opt_str(self.provider, "run.provider"))
        _dict(self.provider_metadata, "run.provider_metadata")

    def with_status(self, status: RunStatus | str) -> Run:
        """Terminal statuses stamp ``ended_at`` so callers never forget to."""
        new = to_run_status(status)
        ended = utcnow() if new.is_terminal else self.ended_at
        return dataclasses.replace(self, status=new, ended_at=ended)

    def replace(self, **changes: Any) -> Run:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "session_id": self.session_id,
            "status": self.status.value,
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "metadata": self.metadata,
            "turn_count": self.turn_count,
            "token_usage": self.token_usage,
            "cost_usd": self.cost_usd,
            "started_at": iso(self.started_at),
            "ended_at": None if self.ended_at is None else iso(self.ended_at),
            "provider": self.provider,
            "provider_metadata": self.provider_metadata,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        _require(data, ("id", "session_id", "status", "started_at"), "Run")
        return cls(
            id=data["id"],
            session_id=data["session_id"],
            status=data["status"],
            input=data.get("input"),
            output=data.get("output"),
            error=data.get("error"),
            metadata=data.get("metadata") or {},
            turn_count=data.get("turn_count", 0),
            token_usage=data.get("token_usage") or {},
            cost_usd=data.get("cost_usd"),
            started_at=parse_iso(data["started_at"], "run.started_at"),
            ended_at=_opt_iso(data.get("ended_at"), "run.ended_at"),
            provider=data.get("provider"),
            provider_metadata=data.get("provider_metadata") or {},
        )


#: Marks an argument left out of ``Event(...)``, so that an explicit None is still refused.
_UNSET: Any = object()


def _plain_id(value: object) -> bool:
    """The common id: short ASCII text without NUL, which needs no further check."""
    return (
        type(value) is str
        and 0 < len(value) <= MAX_ID_BYTES
        and value.isascii()
        and "\x00" not in value
    )


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class Event:
    type: EventTypeLike
    session_id: str
    id: str = field(default_factory=new_event_id)
    run_id: str | None = None
    timestamp: datetime = field(default_factory=utcnow)
    sequence_number: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    schema_version: int = 1
    provider: str | None = None
    correlation_id: str | None = None

    def __init__(
        self,
        *,
        type: EventTypeLike,
        session_id: str,
        id: str = _UNSET,
        run_id: str | None = None,
        timestamp: datetime = _UNSET,
        sequence_number: int | None = None,
        data: dict[str, Any] = _UNSET,
        metadata: dict[str, Any] = _UNSET,
        schema_version: int = 1,
        provider: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        """The dataclass constructor's checks, with a fast path for the usual values: events
        are built one per step of an agent, so construction is on every append's path."""
        _ev_id(self, new_event_id() if id is _UNSET else id)
        _ev_type(self, type)
        _ev_session_id(self, session_id)
        _ev_run_id(self, run_id)
        _ev_timestamp(self, utcnow() if timestamp is _UNSET else timestamp)
        _ev_sequence_number(self, sequence_number)
        _ev_data(self, {} if data is _UNSET else data)
        _ev_metadata(self, {} if metadata is _UNSET else metadata)
        _ev_schema_version(self, schema_version)
        _ev_provider(self, provider)
        _ev_correlation_id(self, correlation_id)
        cls = type.__class__
        kind = (
            type
            if cls is EventType or cls is CustomEventType
            else _EVENT_TYPES.get(type)
            if cls is str
            else None
        )
        if (
            kind is None
            or not _plain_id(self.id)
            or not _plain_id(session_id)
            or (run_id is not None and not _plain_id(run_id))
            or self.timestamp.__class__ is not datetime
            or self.timestamp.tzinfo is not UTC
            or sequence_number is not None
            or self.data.__class__ is not dict
            or self.metadata.__class__ is not dict
            or schema_version.__class__ is not int
            or schema_version < 1
            or (provider is not None and not _plain_id(provider))
            or (correlation_id is not None and not _plain_id(correlation_id))
        ):
            self.__post_init__()
        else:
            _ev_type(self, kind)

    def __post_init__(self) -> None:
        _set(self, "id", check_id(self.id, "event.id"))
        _set(self, "type", to_event_type(self.type))
        _set(self, "session_id", check_id(self.session_id, "event.session_id"))
        _set(self, "run_id", _opt_str(self.run_id, "event.run_id"))
        _set(self, "timestamp", check_aware(self.timestamp, "event.timestamp"))
        if self.sequence_number is not None:
            _int(self.sequence_number, "event.sequence_number", 1)
        _dict(self.data, "event.data")
        _dict(self.metadata, "event.metadata")
        _int(self.schema_version, "event.schema_version", 1)
        _set(self, "provider", _opt_str(self.provider, "event.provider"))
        _set(self, "correlation_id", _opt_str(self.correlation_id, "event.correlation_id"))

    def replace(self, **changes: Any) -> Event:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type.value,
            "session_id": self.session_id,
            "run_id": self.run_id,
            "timestamp": iso(self.timestamp),
            "sequence_number": self.sequence_number,
            "data": self.data,
            "metadata": self.metadata,
            "schema_version": self.schema_version,
            "provider": self.provider,
            "correlation_id": self.correlation_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        _require(data, ("id", "type", "session_id", "timestamp", "schema_version"), "Event")
        return cls(
            id=data["id"],
            type=data["type"],
            session_id=data["session_id"],
            run_id=data.get("run_id"),
            timestamp=parse_iso(data["timestamp"], "event.timestamp"),
            sequence_number=data.get("sequence_number"),
            data=data.get("data") or {},
            metadata=data.get("metadata") or {},
            schema_version=data["schema_version"],
            provider=data.get("provider"),
            correlation_id=data.get("correlation_id"),
        )

    @classmethod
    def _trusted(
        cls,
        id: str,
        type: EventTypeLike,
        session_id: str,
        run_id: str | None,
        timestamp: datetime,
        sequence_number: int,
        data: dict[str, Any],
        metadata: dict[str, Any],
        schema_version: int,
        provider: str | None,
        correlation_id: str | None,
    ) -> Event:
        """Build from values a store already validated: reads must not pay for validation."""
        self = _new(cls)
        # The slots' own setters: a third cheaper than object.__setattr__, once per event read.
        _ev_id(self, id)
        _ev_type(self, type)
        _ev_session_id(self, session_id)
        _ev_run_id(self, run_id)
        _ev_timestamp(self, timestamp)
        _ev_sequence_number(self, sequence_number)
        _ev_data(self, data)
        _ev_metadata(self, metadata)
        _ev_schema_version(self, schema_version)
        _ev_provider(self, provider)
        _ev_correlation_id(self, correlation_id)
        return self


(
    _ev_id,
    _ev_type,
    _ev_session_id,
    _ev_run_id,
    _ev_timestamp,
    _ev_sequence_number,
    _ev_data,
    _ev_metadata,
    _ev_schema_version,
    _ev_provider,
    _ev_correlation_id,
) = (
    Event.__dict__[name].__set__
    for name in (
        "id",
        "type",
        "session_id",
        "run_id",
        "timestamp",
        "sequence_number",
        "data",
        "metadata",
        "schema_version",
        "provider",
        "correlation_id",
    )
)


(
    _se_id,
    _se_agent_id,
    _se_status,
    _se_parent_session_id,
    _se_metadata,
    _se_context,
    _se_tags,
    _se_created_at,
    _se_updated_at,
    _se_deleted_at,
) = (
    Session.__dict__[name].__set__
    for name in (
        "id",
        "agent_id",
        "status",
        "parent_session_id",
        "metadata",
        "context",
        "tags",
        "created_at",
        "updated_at",
        "deleted_at",
    )
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionResult:
    """What one agent execution produced; ``flush`` stores all of it or none of it."""

    session: Session
    run: Run
    events: list[Event] = field(default_factory=list)
    provider_metadata: dict[str, Any] = field(default_factory=dict)
