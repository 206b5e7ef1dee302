"""Export → import between every pair of backends gives identical data (contract 10).

One session with runs, custom types, a rewind and numbering gaps is built in the source,
exported, imported into the target, and compared record by record: ids, sequence numbers
(gaps included), timestamps to the microsecond. A second import changes nothing, and the
streamed form (``iter_export`` → ``import_records``) agrees with the whole-value one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent_session_store import (
    Event,
    EventType,
    Run,
    RunStatus,
    Session,
    SessionExport,
    SessionStatus,
)
from agent_session_store.base import SessionStoreBase
from backends import BACKENDS

T0 = datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)

Opener = Callable[[str], Any]


def _sample() -> SessionExport:
    """Everything an export can carry, with gaps as pruning leaves them."""
    sid = "ses_exported_é"
    session = Session(
        id=sid,
        agent_id="agent-🤖",
        status=SessionStatus.COMPLETED,
        metadata={"k": [1, 2.5, None]},
        context={"system": "be brief"},
        tags=["a", "b"],
        created_at=T0,
        updated_at=T0 + timedelta(days=1),
    )
    runs = [
        Run(
            id=f"run_{i}",
            session_id=sid,
            status=RunStatus.COMPLETED,
            started_at=T0 + timedelta(microseconds=i),
            ended_at=T0 + timedelta(seconds=1, microseconds=i),
            token_usage={"input_tokens": 10 * i, "output_tokens": i},
            cost_usd=0.25 * i,
            provider="anthropic",
            provider_metadata={"model": "claude"},
        )
        for i in range(2)
    ]
    types: list[Any] = [
        EventType.MESSAGE_SENT,
        "langgraph.checkpoint",
        EventType.TOOL_CALL_STARTED,
        EventType.TOOL_CALL_COMPLETED,
        EventType.MESSAGE_RECEIVED,
    ]
    numbers = [1, 2, 4, 5, 9, 10]  # 3 and 6-8 pruned
    events = [
        Event(
            id=f"evt_{n}",
            type=types[i % len(types)],
            session_id=sid,
            run_id=f"run_{i % 2}",
            timestamp=T0 + timedelta(microseconds=n),
            sequence_number=n,
            data={"n": n, "text": "ünïcode ✓"},
            metadata={"m": n},
            provider="anthropic" if n % 2 else None,
            correlation_id=f"c{n}",
        )
        for i, n in enumerate(numbers)
    ]
    events.append(
        Event(
            id="evt_rewind",
            type=EventType.HISTORY_REWOUND,
            session_id=sid,
            timestamp=T0 + timedelta(microseconds=11),
            sequence_number=11,
            data={"to_sequence": 5},
        )
    )
    return SessionExport(session, runs, events, latest_sequence=12)


def _as_dicts(export: SessionExport) -> list[dict[str, Any]]:
    return list(export.records())


@pytest.mark.parametrize("target", BACKENDS)
@pytest.mark.parametrize("source", BACKENDS)
async def test_export_import_between_backends(
    open_backend: Opener, source: str, target: str
) -> None:
    src: SessionStoreBase = await open_backend(source)
    dst: SessionStoreBase = await open_backend(target)
    original = _sample()
    await src.import_session(original)
    exported = await src.export_session(original.session.id)
    assert _as_dicts(exported) == _as_dicts(original)

    report = await dst.import_session(exported)
    assert (report.events_imported, report.events_skipped, report.runs_imported) == (7, 0, 2)
    again = await dst.export_session(original.session.id)
    assert _as_dicts(again) == _as_dicts(original)
    assert _seqs(await dst.get_visible_events(original.session.id)) == [1, 2, 4, 5]

    second = await dst.import_session(exported)  # a re-import changes nothing
    assert (second.events_imported, second.events_skipped) == (0, 7)
    assert _as_dicts(await dst.export_session(original.session.id)) == _as_dicts(original)
    nxt = await dst.append_event_with_sequence(
        Event(type=EventType.MESSAGE_SENT, session_id=original.session.id)
    )
    assert nxt.sequence_number == 13


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("sqlite", "postgres"),
        ("postgres", "redis"),
        ("redis", "redis-cluster"),
        ("redis-cluster", "memory"),
        ("memory", "sqlite"),
    ],
)
async def test_streamed_copy_matches_and_resumes(
    open_backend: Opener, source: str, target: str
) -> None:
    src: SessionStoreBase = await open_backend(source)
    dst: SessionStoreBase = await open_backend(target)
    await src.save_session(Session(id="big", agent_id="a"))
    for start in range(0, 2000, 500):
        await src.append_events(
            [
                Event(type=EventType.MESSAGE_STREAMED, session_id="big", data={"i": i})
                for i in range(start, start + 500)
            ]
        )
    records = [r async for r in src.iter_export("big", page_size=300)]
    partial = await dst.import_records(records[:700], chunk_size=250)  # a copy that died
    assert partial.events_imported == 698
    report = await dst.import_records(src.iter_export("big", page_size=300), chunk_size=250)
    assert (report.events_imported, report.events_skipped) == (1302, 698)
    assert _as_dicts(await dst.export_session("big")) == _as_dicts(await src.export_session("big"))


def _seqs(events: list[Event]) -> list[int]:
    return [e.sequence_number or 0 for e in events]


async def test_copy_session_resumes_where_the_target_stopped(open_backend: Opener) -> None:
    from agent_session_store.transfer import copy_session

    src: SessionStoreBase = await open_backend("sqlite")
    dst: SessionStoreBase = await open_backend("memory")
    await src.save_session(Session(id="c", agent_id="a"))
    await src.append_events(
        [Event(type=EventType.MESSAGE_SENT, session_id="c", data={"i": i}) for i in range(50)]
    )
    records = [r async for r in src.iter_export("c")]
    await dst.import_records(records[:32])  # 30 events made it before the copy died
    report = await copy_session(src, dst, "c", page_size=7)
    assert (report.events_imported, report.events_skipped) == (20, 0)
    assert _as_dicts(await dst.export_session("c")) == _as_dicts(await src.export_session("c"))
    again = await copy_session(src, dst, "c")
    assert (again.events_imported, again.events_skipped) == (0, 0)
