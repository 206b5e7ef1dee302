"""What the session page shows, computed from events: conversation turns, tool calls paired
with their results, rewound events marked, and the per-run token/cost chart.

Pairing follows the payload convention of ``docs/events.md``: a ``tool_call_started`` and the
``tool_call_completed``/``tool_call_failed`` answering it share ``data["tool_call_id"]``.
Events without one are paired by order: a result answers the oldest unanswered call of the
same tool name (``tool_name``, or the older ``tool``/``name`` keys), else the oldest of any.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..models import Event, EventType, Run
from .jsonenc import dumps

__all__ = ["Chart", "Item", "build_chart", "build_items", "hidden_ranges", "is_hidden"]

_ERROR_TYPES = {
    EventType.ERROR_OCCURRED,
    EventType.TOOL_CALL_FAILED,
    EventType.RUN_FAILED,
    EventType.RUN_TIMEOUT,
    EventType.SESSION_FAILED,
    EventType.POLICY_VIOLATION,
    EventType.TOOL_APPROVAL_DENIED,
}
_MESSAGES = {EventType.MESSAGE_SENT, EventType.MESSAGE_RECEIVED}
_RESULTS = {EventType.TOOL_CALL_COMPLETED, EventType.TOOL_CALL_FAILED}
_SUMMARY_WIDTH = 160
_FAMILY: dict[object, str] = {t: t.family for t in EventType}


def hidden_ranges(rewinds_newest_first: list[Event]) -> list[tuple[int, int]]:
    """Open intervals (N, S) of sequence numbers hidden by rewinds (contract 2.3, C1).

    Only the rewinds are needed: walking them newest first, one at S is met unless a later
    rewind already hid S; a met one hides (N, S) and everything below N + 1 is still open."""
    ranges: list[tuple[int, int]] = []
    bound: int | None = None
    for event in rewinds_newest_first:
        seq = event.sequence_number or 0
        if bound is not None and seq >= bound:
            continue
        to = event.data.get("to_sequence")
        if type(to) is int and to + 1 < seq:
            ranges.append((to, seq))
            bound = to + 1
        else:
            bound = seq
    return ranges


def is_hidden(seq: int, ranges: list[tuple[int, int]]) -> bool:
    return any(lo < seq < hi for lo, hi in ranges)


def _text(value: Any) -> str | None:
    """Message content: a string, or the text parts of a list of content blocks."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for block in value:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict) and isinstance(block.get("text"), str):
                parts.append(block["text"])
        return "\n".join(parts) if parts else None
    return None


def _tool_name(data: dict[str, Any]) -> str:
    for key in ("tool_name", "tool", "name"):
        value = data.get(key)
        if isinstance(value, str):
            return value
    return "tool"


def _compact(value: Any, width: int = _SUMMARY_WIDTH) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _summary(event: Event) -> str:
    d = event.data
    t = event.type
    if t is EventType.HISTORY_REWOUND:
        return f"rewound to #{d.get('to_sequence')}"
    usage = [f"{k.split('_')[0]} {d[k]}" for k in ("input_tokens", "output_tokens") if k in d]
    if usage:
        return " · ".join(usage) + " tokens"
    for key in ("error_message", "reason", "message", "content", "status", "output"):
        if key in d:
            return _compact(d[key])
    return _compact(d) if d else ""


@dataclass
class Item:
    """One row of the timeline (a streamed message groups several events)."""

    kind: str  # message | stream | tool_call | tool_result | rewind | event
    event: Event
    seqs: list[int]
    text: str = ""
    role: str = ""
    tool: str = ""
    tool_call_id: str = ""
    payload: Any = None  # what the tool got or returned
    pair_seq: int | None = None
    error: bool = False
    rewound: bool = False
    data_json: str = ""
    extra_events: list[Event] = field(default_factory=list)

    @property
    def seq(self) -> int:
        return self.seqs[0]

    @property
    def last_seq(self) -> int:
        return self.seqs[-1]

    @property
    def type(self) -> str:
        return self.event.type.value

    @property
    def family(self) -> str:
        return _FAMILY.get(self.event.type) or self.event.type.family


def _pretty(event: Event) -> str:
    """Compact (orjson); the browser indents it when the row is opened."""
    return dumps(event.data).decode()


def build_items(events: list[Event], ranges: list[tuple[int, int]]) -> list[Item]:
    """Timeline rows for events in sequence order; pairs tool calls within the list."""
    items: list[Item] = []
    by_call_id: dict[str, Item] = {}
    unanswered: deque[Item] = deque()
    for event in events:
        seq = event.sequence_number or 0
        d = event.data
        rewound = is_hidden(seq, ranges)
        t = event.type
        if t is EventType.MESSAGE_STREAMED and isinstance(d.get("delta"), str):
            last = items[-1] if items else None
            if (
                last is not None
                and last.kind == "stream"
                and last.rewound == rewound
                and last.event.data.get("message_id") == d.get("message_id")
                and last.event.run_id == event.run_id
            ):
                last.text += d["delta"]
                last.seqs.append(seq)
                last.extra_events.append(event)
                continue
            role = d.get("role")
            items.append(
                Item(
                    "stream",
                    event,
                    [seq],
                    text=d["delta"],
                    role=role if isinstance(role, str) else "assistant",
                    rewound=rewound,
                    data_json=_pretty(event),
                )
            )
            continue
        item = Item("event", event, [seq], rewound=rewound, data_json=_pretty(event))
        item.error = t in _ERROR_TYPES
        if t in _MESSAGES and _text(d.get("content")) is not None:
            item.kind = "message"
            item.text = _text(d.get("content")) or ""
            role = d.get("role")
            default = "user" if t is EventType.MESSAGE_SENT else "assistant"
            item.role = role if isinstance(role, str) else default
        elif t is EventType.TOOL_CALL_STARTED:
            item.kind = "tool_call"
            item.tool = _tool_name(d)
            item.payload = d.get("tool_input", d.get("arguments", d.get("input")))
            call_id = d.get("tool_call_id")
            if isinstance(call_id, str) and call_id:
                item.tool_call_id = call_id
                by_call_id.setdefault(call_id, item)
            else:
                unanswered.append(item)
        elif t in _RESULTS:
            item.kind = "tool_result"
            item.tool = _tool_name(d)
            if t is EventType.TOOL_CALL_FAILED:
                item.payload = d.get("error_message", d.get("error"))
            else:
                item.payload = d.get("tool_output", d.get("result", d.get("output")))
            call: Item | None = None
            call_id = d.get("tool_call_id")
            if isinstance(call_id, str) and call_id:
                item.tool_call_id = call_id
                found = by_call_id.get(call_id)
                if found is not None and found.pair_seq is None:
                    call = found
            else:
                call = next((c for c in unanswered if c.tool == item.tool), None)
                if call is None and unanswered:
                    call = unanswered[0]
                if call is not None:
                    unanswered.remove(call)
            if call is not None:
                call.pair_seq = seq
                item.pair_seq = call.seq
        elif t is EventType.HISTORY_REWOUND:
            item.kind = "rewind"
            item.text = _summary(event)
        else:
            item.text = _summary(event)
        items.append(item)
    return items


# ---------------------------------------------------------------- chart


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    kind: str  # input | output | cost
    label: str


@dataclass
class Chart:
    width: int
    height: int
    bars: list[Bar]
    labels: list[tuple[float, str]]  # x, run label
    max_tokens: int
    max_cost: float
    summary: str


def _tokens(run: Run) -> tuple[int, int]:
    u = run.token_usage
    i = u.get("input_tokens")
    o = u.get("output_tokens")
    return (i if type(i) is int else 0, o if type(o) is int else 0)


def build_chart(runs: list[Run], *, width: int = 640, height: int = 180) -> Chart | None:
    """Per run: stacked input/output token bars and a cost bar on its own scale."""
    if not runs:
        return None
    top, bottom = 12, 28
    plot = height - top - bottom
    tokens = [_tokens(r) for r in runs]
    max_tokens = max((i + o for i, o in tokens), default=0) or 1
    max_cost = max((r.cost_usd or 0.0 for r in runs), default=0.0) or 1.0
    slot = width / len(runs)
    bar_w = max(2.0, min(28.0, slot * 0.3))
    bars: list[Bar] = []
    labels: list[tuple[float, str]] = []
    for n, (run, (i, o)) in enumerate(zip(runs, tokens)):
        x0 = n * slot + slot / 2 - bar_w
        h_in = plot * i / max_tokens
        h_out = plot * o / max_tokens
        base = top + plot
        bars.append(Bar(x0, base - h_in, bar_w, h_in, "input", f"{i} input tokens"))
        bars.append(Bar(x0, base - h_in - h_out, bar_w, h_out, "output", f"{o} output tokens"))
        cost = run.cost_usd or 0.0
        h_cost = plot * cost / max_cost
        label = "no cost" if run.cost_usd is None else f"${run.cost_usd:.4f}"
        bars.append(Bar(x0 + bar_w + 2, base - h_cost, bar_w, h_cost, "cost", label))
        labels.append((n * slot + slot / 2, f"run {n + 1}"))
    total_i = sum(i for i, _ in tokens)
    total_o = sum(o for _, o in tokens)
    total_cost = sum(r.cost_usd or 0.0 for r in runs)
    summary = f"{len(runs)} run(s): {total_i} input and {total_o} output tokens, ${total_cost:.4f}"
    return Chart(width, height, bars, labels, max_tokens, max_cost, summary)
