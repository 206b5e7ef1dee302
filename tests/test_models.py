"""Values, serialization and errors (contract 1 and 2), independent of any backend."""

from __future__ import annotations

import pickle
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from agent_session_store import errors
from agent_session_store.models import (
    EVENT_FAMILIES,
    CustomEventType,
    Event,
    EventType,
    Run,
    RunStatus,
    Session,
    SessionStatus,
)

T = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)


def test_there_are_29_event_types_in_10_families() -> None:
    assert len(EventType) == 29
    assert sorted(EVENT_FAMILIES) == sorted(
        [
            "session",
            "run",
            "message",
            "tool",
            "error",
            "usage",
            "workspace",
            "policy",
            "approval",
            "history",
        ]
    )
    assert sum(len(v) for v in EVENT_FAMILIES.values()) == 29
    assert EventType.HISTORY_REWOUND.family == "history"
    assert EventType.TOOL_APPROVAL_DENIED.family == "approval"
    assert [s.value for s in SessionStatus] == [
        "pending",
        "active",
        "paused",
        "completed",
        "failed",
        "cancelled",
    ]
    assert [s.value for s in RunStatus] == [
        "pending",
        "running",
        "completed",
        "failed",
        "cancelled",
        "timeout",
    ]


def test_generated_ids_and_defaults() -> None:
    s = Session(agent_id="a")
    assert s.id.startswith("ses_")
    assert len(s.id) == 4 + 32
    assert s.status is SessionStatus.PENDING
    assert s.created_at.tzinfo is UTC
    r = Run(session_id=s.id)
    assert r.id.startswith("run_")
    assert len(r.id) == 36
    e = Event(type=EventType.MESSAGE_SENT, session_id=s.id)
    assert e.id.startswith("evt_")
    assert e.sequence_number is None
    assert e.schema_version == 1
    assert Session(agent_id="a").id != s.id


def test_event_ids_are_time_ordered_uuids() -> None:
    """A new event's id starts with its creation's Unix milliseconds (UUID version 7), so
    stores append to the end of their id indexes instead of writing pages at random."""
    before = time.time_ns() // 1_000_000
    ids = [Event(type=EventType.MESSAGE_SENT, session_id="s").id for _ in range(50)]
    after = time.time_ns() // 1_000_000
    for eid in ids:
        u = uuid.UUID(eid.removeprefix("evt_"))
        assert eid == "evt_" + u.hex and u.version == 7 and u.variant == uuid.RFC_4122
        assert before <= int(u.hex[:12], 16) <= after
    assert len(set(ids)) == len(ids)


def test_strings_become_enums_and_timestamps_become_utc() -> None:
    plus5 = timezone(timedelta(hours=5))
    e = Event(type="tool_call_started", session_id="s", timestamp=T.astimezone(plus5))  # type: ignore[arg-type]
    assert e.type is EventType.TOOL_CALL_STARTED
    assert e.timestamp == T
    assert e.timestamp.tzinfo is UTC


def test_framework_events_skip_the_slow_checks_and_bad_ones_still_fail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Adapters build events of a custom type with a provider (one per conversation item):
    plain values of those take the constructor's fast path too, and only a value that needs
    a look gets the full checks."""
    slow: list[Event] = []
    full = Event.__post_init__

    def counted(self: Event) -> None:
        slow.append(self)
        full(self)

    monkeypatch.setattr(Event, "__post_init__", counted)
    kind = CustomEventType("openai.message")
    e = Event(type=kind, session_id="s", provider="openai", correlation_id="c1")
    assert (e.type, e.provider, e.correlation_id) == (kind, "openai", "c1")
    assert slow == []
    odd = Event(type=kind, session_id="s", provider="ü", correlation_id="")
    assert (odd.provider, odd.correlation_id) == ("ü", "") and len(slow) == 1
    bad_fields: list[dict[str, Any]] = [
        {"provider": 5},
        {"correlation_id": "a\x00b"},
        {"provider": "x" * 2000},
    ]
    for bad in bad_fields:
        with pytest.raises(errors.ValidationError):
            Event(type=kind, session_id="s", **bad)


def test_values_are_immutable_and_with_status_makes_new_ones() -> None:
    s = Session(agent_id="a", updated_at=T)
    with pytest.raises(AttributeError):
        s.status = SessionStatus.ACTIVE  # type: ignore[misc]
    s2 = s.with_status("active")
    assert s.status is SessionStatus.PENDING
    assert s2.status is SessionStatus.ACTIVE
    assert s2.updated_at > T
    r = Run(session_id="s")
    assert r.with_status(RunStatus.RUNNING).ended_at is None
    for terminal in ("completed", "failed", "cancelled", "timeout"):
        assert r.with_status(terminal).ended_at is not None
    with pytest.raises(errors.InvalidStatusError):
        r.with_status("paused")


@pytest.mark.parametrize(
    "value",
    [
        Session(
            agent_id="a",
            id="s",
            status=SessionStatus.PAUSED,
            parent_session_id="p",
            metadata={"x": {"unknown": [1, {"deep": None}]}},
            context={"c": "é"},
            tags=["t"],
            created_at=T,
            updated_at=T,
            deleted_at=T,
        ),
        Run(
            session_id="s",
            id="r",
            status=RunStatus.TIMEOUT,
            input={"i": 1},
            output=None,
            error={"code": "x"},
            turn_count=2,
            token_usage={"in": 1},
            cost_usd=1.5,
            started_at=T,
            ended_at=T,
            provider="p",
            provider_metadata={"m": 1},
        ),
        Event(
            type=EventType.POLICY_VIOLATION,
            session_id="s",
            id="e",
            run_id="r",
            timestamp=T,
            sequence_number=7,
            data={"future_field": {"kept": True}},
            metadata={"m": [1]},
            schema_version=2,
            provider="p",
            correlation_id="c",
        ),
    ],
)
def test_to_dict_from_dict_round_trip(value: Any) -> None:
    d = value.to_dict()
    assert type(value).from_dict(d) == value
    for key, item in d.items():
        if isinstance(item, datetime):
            pytest.fail(f"{key} was not serialized")
    assert (
        d.get("created_at", d.get("started_at", d.get("timestamp")))
        == "2026-03-04T05:06:07.891011Z"
    )


@pytest.mark.parametrize(
    ("cls", "missing"),
    [
        (Session, "agent_id"),
        (Session, "created_at"),
        (Run, "session_id"),
        (Run, "started_at"),
        (Event, "type"),
        (Event, "timestamp"),
        (Event, "schema_version"),
    ],
)
def test_from_dict_requires_fields(cls: Any, missing: str) -> None:
    full = {
        Session: Session(agent_id="a").to_dict(),
        Run: Run(session_id="s").to_dict(),
        Event: Event(type=EventType.MESSAGE_SENT, session_id="s").to_dict(),
    }[cls]
    del full[missing]
    with pytest.raises(errors.ValidationError, match=missing):
        cls.from_dict(full)


def test_from_dict_refuses_naive_and_malformed_timestamps() -> None:
    d = Event(type=EventType.MESSAGE_SENT, session_id="s").to_dict()
    with pytest.raises(errors.ValidationError, match="timezone-aware"):
        Event.from_dict({**d, "timestamp": "2026-01-01T00:00:00"})
    with pytest.raises(errors.ValidationError, match="ISO-8601"):
        Event.from_dict({**d, "timestamp": "yesterday"})
    with pytest.raises(errors.InvalidEventTypeError):
        Event.from_dict({**d, "type": "message_snet"})


def test_error_shape_and_codes() -> None:
    err = errors.SessionNotFoundError("no session with id 'x'", details={"session_id": "x"})
    assert str(err) == "[session_not_found] no session with id 'x'"
    assert err.details == {"session_id": "x"}
    assert isinstance(err, errors.StoreError)
    assert issubclass(errors.StorageConnectionFailedError, errors.StorageError)
    assert issubclass(errors.InvalidEventTypeError, errors.ValidationError)
    codes = {
        cls.code
        for cls in vars(errors).values()
        if isinstance(cls, type)
        and issubclass(cls, errors.StoreError)
        and cls is not errors.StoreError
    }
    assert codes == {
        "already_exists",
        "validation_error",
        "invalid_event_type",
        "invalid_status",
        "session_not_found",
        "run_not_found",
        "not_found",
        "invalid_cursor",
        "storage_error",
        "storage_connection_failed",
        "migration_required",
        "dependency_not_available",
        "sequence_conflict",
    }
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is errors.SessionNotFoundError
    assert str(again) == str(err)


@pytest.mark.parametrize(
    "text",
    [
        "connect to postgresql://app:hunter2@db.local:5432/x failed",
        "redis://:hunter2@127.0.0.1:6379/0 refused",
        "dsn: host=x password=hunter2 user=app",
        "aws_secret_access_key=hunter2",
    ],
)
def test_credentials_never_reach_a_message(text: str) -> None:
    err = errors.StorageError(text)
    assert "hunter2" not in str(err)
    assert "hunter2" not in repr(err)
    assert "***" in err.message
