"""What goes in ``data`` for each event type, and builders that produce it.

The store accepts any JSON-safe ``data`` for any type (docs/contract.md 2.4). These conventions
are what readers (the CLI, dashboards, framework adapters, other agents) can rely on when the
writer follows them; docs/events.md lists them per type. A payload that does not follow them
is still stored: ``check_shape`` returns warnings, and ``annotate`` (which every builder here
applies) records them in ``metadata["shape_warnings"]`` instead of refusing the event.

    from agent_session_store import events

    await store.append_events([
        events.message(sid, "Why does test_parse fail?", role="user", run_id=run.id),
        events.tool_call_started(sid, "run_tests", {"select": "test_parse"}, tool_call_id="c1"),
        events.tool_call_completed(sid, "run_tests", {"failed": 1}, tool_call_id="c1"),
        events.token_usage(sid, input_tokens=5120, output_tokens=412),
    ])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .models import Event, EventType, to_event_type

__all__ = [
    "SHAPES",
    "SHAPE_WARNINGS_KEY",
    "Field",
    "Shape",
    "annotate",
    "check_shape",
    "error_occurred",
    "event",
    "message",
    "message_received",
    "message_sent",
    "message_streamed",
    "policy_violation",
    "run_completed",
    "run_failed",
    "token_usage",
    "tool_approval_denied",
    "tool_approval_granted",
    "tool_approval_requested",
    "tool_call_completed",
    "tool_call_failed",
    "tool_call_started",
    "turn_completed",
    "workspace_snapshot",
]

#: Where ``annotate`` records shape problems, as a list of strings.
SHAPE_WARNINGS_KEY = "shape_warnings"

_KIND_NAMES = {
    str: "a string",
    int: "an integer",
    dict: "an object",
    list: "a list",
}


@dataclass(frozen=True, slots=True)
class Field:
    """One ``data`` key of a convention: its JSON kind(s), and whether it must be there."""

    name: str
    kinds: tuple[type, ...]
    required: bool = False
    doc: str = ""

    def describe(self) -> str:
        if type(None) in self.kinds:
            return "any JSON value"
        if self.kinds == (int, float):
            return "a number"
        return " or ".join(_KIND_NAMES.get(k, k.__name__) for k in self.kinds)


@dataclass(frozen=True, slots=True)
class Shape:
    fields: tuple[Field, ...]
    doc: str = ""


def _f(name: str, *kinds: type, required: bool = False, doc: str = "") -> Field:
    return Field(name, kinds, required, doc)


_ANY = (str, int, float, bool, dict, list, type(None))
_ROLE = _f("role", str, doc="who speaks: user, assistant, system or tool")
_CONTENT = _f("content", str, list, required=True, doc="the text, or a list of content blocks")
_TOOL_NAME = _f("tool_name", str, required=True, doc="the tool's name")
_TOOL_CALL_ID = _f(
    "tool_call_id", str, required=True, doc="pairs a call with its result, approval or failure"
)
_ERROR_MESSAGE = _f("error_message", str, required=True, doc="what went wrong, for people")
_MODEL = _f("model", str, doc="the model that produced it")

#: The conventions, per built-in type. Types not listed have no required keys.
SHAPES: dict[EventType, Shape] = {
    EventType.MESSAGE_SENT: Shape(
        (_CONTENT, _f("role", str, required=True, doc=_ROLE.doc), _MODEL),
        "a message sent to the model (usually role user or system)",
    ),
    EventType.MESSAGE_RECEIVED: Shape(
        (_CONTENT, _f("role", str, required=True, doc=_ROLE.doc), _MODEL),
        "a whole message received from the model (usually role assistant)",
    ),
    EventType.MESSAGE_STREAMED: Shape(
        (
            _f("delta", str, required=True, doc="the next piece of text"),
            _ROLE,
            _f("message_id", str, doc="groups the pieces of one message"),
        ),
        "one streamed piece of a message",
    ),
    EventType.TOOL_CALL_STARTED: Shape(
        (_TOOL_NAME, _TOOL_CALL_ID, _f("tool_input", *_ANY, doc="the call's arguments")),
        "the agent calls a tool",
    ),
    EventType.TOOL_CALL_COMPLETED: Shape(
        (
            _TOOL_NAME,
            _TOOL_CALL_ID,
            _f("tool_output", *_ANY, doc="what the tool returned"),
            _f("duration_ms", int, float, doc="how long it took"),
        ),
        "the tool returned",
    ),
    EventType.TOOL_CALL_FAILED: Shape(
        (_TOOL_NAME, _TOOL_CALL_ID, _ERROR_MESSAGE), "the tool raised or timed out"
    ),
    EventType.TOKEN_USAGE_UPDATED: Shape(
        (
            _f("input_tokens", int, required=True, doc="prompt tokens of this step"),
            _f("output_tokens", int, required=True, doc="completion tokens of this step"),
            _f("total_tokens", int, doc="when the provider reports it"),
            _MODEL,
        ),
        "token counts of one model call",
    ),
    EventType.TURN_COMPLETED: Shape(
        (_f("turn", int, required=True, doc="the turn number, from 1"),), "one turn ended"
    ),
    EventType.ERROR_OCCURRED: Shape(
        (
            _ERROR_MESSAGE,
            _f("error_type", str, doc="a class or code, for programs"),
            _f("provider_error", *_ANY, doc="the provider's own error body"),
        ),
        "an error the agent saw",
    ),
    EventType.ERROR_RECOVERED: Shape(
        (_f("error_message", str, doc="the error recovered from"),), "the agent recovered"
    ),
    EventType.RUN_FAILED: Shape((_ERROR_MESSAGE,), "the run failed"),
    EventType.RUN_COMPLETED: Shape(
        (_f("output", *_ANY, doc="the run's result"),), "the run finished normally"
    ),
    EventType.TOOL_APPROVAL_REQUESTED: Shape(
        (_TOOL_NAME, _TOOL_CALL_ID, _f("tool_input", *_ANY, doc="what would run")),
        "a person is asked to approve a tool call",
    ),
    EventType.TOOL_APPROVAL_GRANTED: Shape(
        (_TOOL_NAME, _TOOL_CALL_ID, _f("approved_by", str, doc="who approved")),
        "the call was approved",
    ),
    EventType.TOOL_APPROVAL_DENIED: Shape(
        (_TOOL_NAME, _TOOL_CALL_ID, _f("reason", str, doc="why not")), "the call was refused"
    ),
    EventType.POLICY_VIOLATION: Shape(
        (
            _f("policy", str, required=True, doc="the policy's name"),
            _f("reason", str, doc="what broke it"),
        ),
        "a policy was broken",
    ),
    EventType.WORKSPACE_SNAPSHOT_TAKEN: Shape(
        (_f("artifact_key", str, doc="where the snapshot is stored (artifact store)"),),
        "the workspace was saved",
    ),
    EventType.WORKSPACE_DIFF_COMPUTED: Shape(
        (
            _f("artifact_key", str, doc="where the diff is stored (artifact store)"),
            _f("files_changed", int, doc="how many files differ"),
        ),
        "a workspace diff was made",
    ),
}


def check_shape(type: EventType | str, data: Mapping[str, Any]) -> list[str]:
    """The ways ``data`` departs from the convention for ``type``; empty when it follows it.

    Keys the convention does not name are fine (they are the writer's own). Never raises for
    a payload: conventions are advice to readers, not rules of the store.
    """
    try:
        kind = EventType(type)
    except ValueError:
        return []  # custom or unknown types have no convention here
    shape = SHAPES.get(kind)
    if shape is None:
        return []
    problems: list[str] = []
    for f in shape.fields:
        if f.name not in data:
            if f.required:
                problems.append(f"{kind.value}: data.{f.name} is missing ({f.describe()})")
            continue
        value = data[f.name]
        if isinstance(value, bool) and bool not in f.kinds:
            ok = False
        else:
            ok = isinstance(value, f.kinds)
        if not ok:
            problems.append(
                f"{kind.value}: data.{f.name} should be {f.describe()}, got {type_name(value)}"
            )
        elif f.name.endswith("_tokens") and isinstance(value, int) and value < 0:
            problems.append(f"{kind.value}: data.{f.name} should be >= 0, got {value}")
    return problems


def type_name(value: object) -> str:
    if value is None:
        return "null"
    return {str: "a string", bool: "a boolean", int: "an integer", float: "a number"}.get(
        type(value), type(value).__name__
    )


def annotate(event: Event) -> Event:
    """The event with its shape warnings in ``metadata["shape_warnings"]`` (or unchanged)."""
    warnings = check_shape(event.type, event.data)
    if not warnings:
        if SHAPE_WARNINGS_KEY not in event.metadata:
            return event
        metadata = {k: v for k, v in event.metadata.items() if k != SHAPE_WARNINGS_KEY}
        return event.replace(metadata=metadata)
    return event.replace(metadata={**event.metadata, SHAPE_WARNINGS_KEY: warnings})


def _clean(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def event(
    type: EventType | str,
    session_id: str,
    data: Mapping[str, Any] | None = None,
    *,
    run_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    **fields: Any,
) -> Event:
    """Any event, checked against its convention. ``fields`` are other Event fields
    (``id``, ``timestamp``, ``provider``, ``correlation_id``, ...)."""
    built = Event(
        type=to_event_type(type),
        session_id=session_id,
        run_id=run_id,
        data=dict(data or {}),
        metadata=dict(metadata or {}),
        **fields,
    )
    return annotate(built)


def message_sent(
    session_id: str,
    content: str | list[Any],
    *,
    role: str = "user",
    model: str | None = None,
    **kw: Any,
) -> Event:
    """A message sent to the model."""
    extra = kw.pop("data", {})
    data = _clean({"role": role, "content": content, "model": model})
    return event(EventType.MESSAGE_SENT, session_id, {**data, **extra}, **kw)


def message_received(
    session_id: str,
    content: str | list[Any],
    *,
    role: str = "assistant",
    model: str | None = None,
    **kw: Any,
) -> Event:
    """A whole message received from the model."""
    extra = kw.pop("data", {})
    data = _clean({"role": role, "content": content, "model": model})
    return event(EventType.MESSAGE_RECEIVED, session_id, {**data, **extra}, **kw)


def message(session_id: str, content: str | list[Any], *, role: str, **kw: Any) -> Event:
    """``message_received`` for role ``assistant``, ``message_sent`` for any other role."""
    if role == "assistant":
        return message_received(session_id, content, role=role, **kw)
    return message_sent(session_id, content, role=role, **kw)


def message_streamed(
    session_id: str,
    delta: str,
    *,
    role: str | None = "assistant",
    message_id: str | None = None,
    **kw: Any,
) -> Event:
    """One streamed piece of a message; ``message_id`` groups the pieces."""
    data = _clean({"delta": delta, "role": role, "message_id": message_id})
    return event(EventType.MESSAGE_STREAMED, session_id, data, **kw)


def tool_call_started(
    session_id: str, tool_name: str, tool_input: Any = None, *, tool_call_id: str, **kw: Any
) -> Event:
    """The agent calls ``tool_name``; reuse ``tool_call_id`` for its result."""
    data = _clean({"tool_name": tool_name, "tool_call_id": tool_call_id, "tool_input": tool_input})
    return event(EventType.TOOL_CALL_STARTED, session_id, data, **kw)


def tool_call_completed(
    session_id: str,
    tool_name: str,
    tool_output: Any = None,
    *,
    tool_call_id: str,
    duration_ms: float | None = None,
    **kw: Any,
) -> Event:
    """The tool returned ``tool_output``; ``tool_call_id`` names the call it answers."""
    data = _clean(
        {
            "tool_name": tool_name,
            "tool_call_id": tool_call_id,
            "tool_output": tool_output,
            "duration_ms": duration_ms,
        }
    )
    return event(EventType.TOOL_CALL_COMPLETED, session_id, data, **kw)


def tool_call_failed(
    session_id: str, tool_name: str, error_message: str, *, tool_call_id: str, **kw: Any
) -> Event:
    data = {"tool_name": tool_name, "tool_call_id": tool_call_id, "error_message": error_message}
    return event(EventType.TOOL_CALL_FAILED, session_id, data, **kw)


def token_usage(
    session_id: str,
    *,
    input_tokens: int,
    output_tokens: int,
    total_tokens: int | None = None,
    model: str | None = None,
    **kw: Any,
) -> Event:
    """``token_usage_updated`` for one model call."""
    data = _clean(
        {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": total_tokens,
            "model": model,
        }
    )
    return event(EventType.TOKEN_USAGE_UPDATED, session_id, data, **kw)


def turn_completed(session_id: str, turn: int, **kw: Any) -> Event:
    return event(EventType.TURN_COMPLETED, session_id, {"turn": turn}, **kw)


def error_occurred(
    session_id: str, error_message: str, *, error_type: str | None = None, **kw: Any
) -> Event:
    data = _clean({"error_message": error_message, "error_type": error_type})
    return event(EventType.ERROR_OCCURRED, session_id, data, **kw)


def run_completed(session_id: str, output: Any = None, *, run_id: str, **kw: Any) -> Event:
    return event(
        EventType.RUN_COMPLETED, session_id, _clean({"output": output}), run_id=run_id, **kw
    )


def run_failed(session_id: str, error_message: str, *, run_id: str, **kw: Any) -> Event:
    return event(
        EventType.RUN_FAILED, session_id, {"error_message": error_message}, run_id=run_id, **kw
    )


def tool_approval_requested(
    session_id: str, tool_name: str, tool_input: Any = None, *, tool_call_id: str, **kw: Any
) -> Event:
    data = _clean({"tool_name": tool_name, "tool_call_id": tool_call_id, "tool_input": tool_input})
    return event(EventType.TOOL_APPROVAL_REQUESTED, session_id, data, **kw)


def tool_approval_granted(
    session_id: str, tool_name: str, *, tool_call_id: str, approved_by: str | None = None, **kw: Any
) -> Event:
    data = _clean(
        {"tool_name": tool_name, "tool_call_id": tool_call_id, "approved_by": approved_by}
    )
    return event(EventType.TOOL_APPROVAL_GRANTED, session_id, data, **kw)


def tool_approval_denied(
    session_id: str, tool_name: str, *, tool_call_id: str, reason: str | None = None, **kw: Any
) -> Event:
    data = _clean({"tool_name": tool_name, "tool_call_id": tool_call_id, "reason": reason})
    return event(EventType.TOOL_APPROVAL_DENIED, session_id, data, **kw)


def policy_violation(
    session_id: str, policy: str, *, reason: str | None = None, **kw: Any
) -> Event:
    return event(
        EventType.POLICY_VIOLATION, session_id, _clean({"policy": policy, "reason": reason}), **kw
    )


def workspace_snapshot(session_id: str, artifact_key: str, **kw: Any) -> Event:
    """A snapshot stored in the artifact store under ``artifact_key``."""
    data = {"artifact_key": artifact_key}
    return event(EventType.WORKSPACE_SNAPSHOT_TAKEN, session_id, data, **kw)
