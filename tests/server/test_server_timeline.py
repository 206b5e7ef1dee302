"""Timeline computations: tool-call pairing and rewinds, checked against the store's own
visible history."""

from __future__ import annotations

from agent_session_store import Event, EventType
from agent_session_store.ports import SessionStore
from agent_session_store.server.timeline import build_chart, build_items, hidden_ranges


def _e(seq: int, kind: EventType, **data: object) -> Event:
    return Event(type=kind, session_id="s", sequence_number=seq, data=dict(data))


def test_pairs_by_tool_call_id_even_out_of_order() -> None:
    items = build_items(
        [
            _e(1, EventType.TOOL_CALL_STARTED, tool_name="a", tool_call_id="x"),
            _e(2, EventType.TOOL_CALL_STARTED, tool_name="a", tool_call_id="y"),
            _e(3, EventType.TOOL_CALL_COMPLETED, tool_name="a", tool_call_id="y", tool_output=2),
            _e(4, EventType.TOOL_CALL_FAILED, tool_name="a", tool_call_id="x", error_message="no"),
        ],
        [],
    )
    by_seq = {it.seq: it for it in items}
    assert by_seq[1].pair_seq == 4 and by_seq[4].pair_seq == 1
    assert by_seq[2].pair_seq == 3 and by_seq[3].pair_seq == 2
    assert by_seq[4].error and by_seq[4].payload == "no"
    assert by_seq[3].payload == 2


def test_pairs_by_order_without_ids() -> None:
    items = build_items(
        [
            _e(1, EventType.TOOL_CALL_STARTED, tool="read"),
            _e(2, EventType.TOOL_CALL_STARTED, tool="test"),
            _e(3, EventType.TOOL_CALL_COMPLETED, tool="test", result=1),
            _e(4, EventType.TOOL_CALL_COMPLETED, tool="read", result=2),
            _e(5, EventType.TOOL_CALL_COMPLETED, tool="orphan"),
        ],
        [],
    )
    by_seq = {it.seq: it for it in items}
    assert by_seq[2].pair_seq == 3  # same tool name first
    assert by_seq[1].pair_seq == 4
    assert by_seq[5].pair_seq is None


def test_streamed_pieces_group_into_one_message() -> None:
    items = build_items(
        [
            _e(1, EventType.MESSAGE_STREAMED, delta="Hel", message_id="m"),
            _e(2, EventType.MESSAGE_STREAMED, delta="lo", message_id="m"),
            _e(3, EventType.MESSAGE_STREAMED, delta="!", message_id="n"),
        ],
        [],
    )
    assert [(it.text, it.seqs) for it in items] == [("Hello", [1, 2]), ("!", [3])]


async def test_hidden_ranges_match_visible_history(memory_store: SessionStore) -> None:
    """Nested rewinds (a rewind inside a later rewind's range has no effect, C1)."""
    plan: list[int | None] = [None] * 6 + [3] + [None] * 3 + [1] + [None] * 2 + [9] + [None]
    for to in plan:
        if to is None:
            await memory_store.append_event(Event(type=EventType.TURN_COMPLETED, session_id="s"))
        else:
            await memory_store.append_event(
                Event(type=EventType.HISTORY_REWOUND, session_id="s", data={"to_sequence": to})
            )
    events = await memory_store.get_events("s")
    rewinds = [e for e in reversed(events) if e.type is EventType.HISTORY_REWOUND]
    ranges = hidden_ranges(rewinds)
    items = build_items(events, ranges)
    shown = [
        it.seq for it in items if not it.rewound and it.event.type is not EventType.HISTORY_REWOUND
    ]
    visible = [e.sequence_number for e in await memory_store.get_visible_events("s")]
    assert shown == visible


def test_chart_scales_runs() -> None:
    from agent_session_store import Run

    runs = [
        Run(session_id="s", token_usage={"input_tokens": 100, "output_tokens": 50}, cost_usd=0.5),
        Run(session_id="s", token_usage={"input_tokens": 300}, cost_usd=None),
    ]
    chart = build_chart(runs)
    assert chart is not None
    assert chart.max_tokens == 300
    heights = {(b.kind, round(b.height)) for b in chart.bars}
    plot = chart.height - 12 - 28
    assert ("input", plot) in heights  # the biggest run fills the plot
    assert ("cost", plot) in heights
    assert build_chart([]) is None
