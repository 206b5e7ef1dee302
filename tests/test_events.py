"""Payload conventions per event type and the builders that follow them (issue 14.4)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from agent_session_store import events
from agent_session_store.events import SHAPE_WARNINGS_KEY, SHAPES, check_shape
from agent_session_store.models import Event, EventType
from agent_session_store.urls import open_session_store

DOCS = Path(__file__).resolve().parents[1] / "docs" / "events.md"


def built() -> list[Event]:
    s = "s"
    return [
        events.message(s, "hi", role="user"),
        events.message(s, "hello", role="assistant"),
        events.message_sent(s, [{"type": "text", "text": "hi"}], role="system"),
        events.message_received(s, "ok", model="m"),
        events.message_streamed(s, "he", message_id="m1"),
        events.tool_call_started(s, "ls", {"path": "."}, tool_call_id="c1"),
        events.tool_call_completed(s, "ls", ["a"], tool_call_id="c1", duration_ms=3.5),
        events.tool_call_failed(s, "ls", "boom", tool_call_id="c2"),
        events.token_usage(s, input_tokens=10, output_tokens=2, total_tokens=12, model="m"),
        events.turn_completed(s, 1),
        events.error_occurred(s, "rate limited", error_type="429"),
        events.run_completed(s, {"answer": 42}, run_id="r"),
        events.run_failed(s, "crashed", run_id="r"),
        events.tool_approval_requested(s, "rm", {"path": "/"}, tool_call_id="c3"),
        events.tool_approval_granted(s, "rm", tool_call_id="c3", approved_by="ada"),
        events.tool_approval_denied(s, "rm", tool_call_id="c3", reason="no"),
        events.policy_violation(s, "no-network", reason="curl"),
        events.workspace_snapshot(s, "sessions/s/snap.tar"),
    ]


def test_builders_follow_the_conventions() -> None:
    made = built()
    for e in made:
        assert SHAPE_WARNINGS_KEY not in e.metadata, (e.type, e.metadata)
        assert check_shape(e.type, e.data) == []
    types = [e.type for e in made]
    assert types[:2] == [EventType.MESSAGE_SENT, EventType.MESSAGE_RECEIVED]
    started, completed = made[5], made[6]
    assert started.data == {"tool_name": "ls", "tool_call_id": "c1", "tool_input": {"path": "."}}
    assert completed.data["tool_call_id"] == started.data["tool_call_id"]
    assert made[8].data == {
        "input_tokens": 10,
        "output_tokens": 2,
        "total_tokens": 12,
        "model": "m",
    }
    assert made[11].run_id == "r"


@pytest.mark.parametrize(
    ("type", "data", "fragment"),
    [
        (EventType.MESSAGE_RECEIVED, {"role": "assistant"}, "data.content is missing"),
        (EventType.MESSAGE_SENT, {"content": "x"}, "data.role is missing"),
        (EventType.MESSAGE_SENT, {"content": 3, "role": "user"}, "data.content should be"),
        (EventType.TOOL_CALL_STARTED, {"tool": "ls"}, "data.tool_name is missing"),
        (EventType.TOOL_CALL_COMPLETED, {"tool_name": "ls"}, "data.tool_call_id is missing"),
        (EventType.TOKEN_USAGE_UPDATED, {"input_tokens": 1}, "data.output_tokens is missing"),
        (
            EventType.TOKEN_USAGE_UPDATED,
            {"input_tokens": True, "output_tokens": 1},
            "data.input_tokens should be an integer, got a boolean",
        ),
        (
            EventType.TOKEN_USAGE_UPDATED,
            {"input_tokens": -1, "output_tokens": 1},
            "should be >= 0",
        ),
        (EventType.TURN_COMPLETED, {"turn": "3"}, "data.turn should be an integer, got a string"),
    ],
)
async def test_shape_problems_are_warnings_in_metadata_never_rejections(
    type: EventType, data: dict[str, Any], fragment: str
) -> None:
    e = events.event(type, "s", data, metadata={"mine": 1})
    warnings = e.metadata[SHAPE_WARNINGS_KEY]
    assert any(fragment in w for w in warnings), warnings
    assert e.metadata["mine"] == 1 and e.data == data
    async with open_session_store("memory://") as store:
        stored = await store.append_event_with_sequence(e)  # stored, not refused
        assert stored.metadata[SHAPE_WARNINGS_KEY] == warnings
        # a store takes an unannotated bad payload just the same
        plain = await store.append_event_with_sequence(Event(type=type, session_id="s", data=data))
        assert plain.data == data


def test_annotate_is_idempotent_and_clears_stale_warnings() -> None:
    bad = Event(type=EventType.TURN_COMPLETED, session_id="s", data={})
    once = events.annotate(bad)
    assert events.annotate(once) == once
    fixed = once.replace(data={"turn": 1})
    assert SHAPE_WARNINGS_KEY not in events.annotate(fixed).metadata
    assert events.annotate(Event(type=EventType.SESSION_STARTED, session_id="s")).metadata == {}


def test_extra_keys_and_types_without_conventions_are_fine() -> None:
    assert check_shape("message_sent", {"content": "x", "role": "u", "lang": "en"}) == []
    assert check_shape(EventType.SESSION_STARTED, {"anything": [1]}) == []
    assert check_shape("myapp.note", {"x": 1}) == []  # custom types (contract 2.3)


def test_docs_list_every_convention() -> None:
    """docs/events.md names every type with a convention and every key of it."""
    text = DOCS.read_text()
    for kind, shape in SHAPES.items():
        section = re.search(rf"^### `{kind.value}`\n(.*?)(?=^### |\Z)", text, re.M | re.S)
        assert section, f"docs/events.md has no section for {kind.value}"
        for field in shape.fields:
            assert f"`{field.name}`" in section.group(1), (kind.value, field.name)
            if field.required:
                assert re.search(rf"`{field.name}`[^\n]*required", section.group(1)), field.name
