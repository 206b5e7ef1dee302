"""Contract v2 rules (custom types, rewinds, order, conditional append, export/import/fork).

Mixed into ``SessionStoreContract`` and ``DurableSessionStoreContract``, so every backend
runs them unchanged; they live apart only to keep each file readable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ..base import SessionStoreBase
from ..errors import StoreError
from ..models import CustomEventType, Event, EventType, Run, RunStatus, Session
from ..transfer import ImportReport, SessionExport
from ..urls import open_session_store
from . import workers
from .waiting import asleep, deliveries, settled

__all__ = ["DurableV2Contract", "V2Contract"]

T0 = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
REWIND = EventType.HISTORY_REWOUND


def _ev(session_id: str = "s", type: Any = EventType.MESSAGE_SENT, **kw: Any) -> Event:
    return Event(type=type, session_id=session_id, **kw)


def _seqs(events: list[Event]) -> list[int]:
    return [e.sequence_number or 0 for e in events]


def _rewind(session_id: str, to: int, **kw: Any) -> Event:
    return Event(type=REWIND, session_id=session_id, data={"to_sequence": to}, **kw)


async def _raises(code: str, awaitable: Any) -> StoreError:
    with pytest.raises(StoreError) as info:
        await awaitable
    assert info.value.code == code, f"expected [{code}], got {info.value!s}"
    assert info.value.message
    return info.value


def _same_but_updated(a: Session, b: Session) -> bool:
    return a.replace(updated_at=b.updated_at) == b


class V2Contract:
    """What one store object shows of contract v2."""

    # ---------------------------------------------------------------- 2.3 custom types

    async def test_custom_types_are_stored_filtered_and_counted(
        self, store: SessionStoreBase
    ) -> None:
        a = await store.append_event_with_sequence(_ev(type="langgraph.checkpoint", data={"k": 1}))
        await store.append_event(_ev())
        b = await store.append_event_with_sequence(_ev(type="myapp.note_2"))
        assert a.type == "langgraph.checkpoint" and isinstance(a.type, CustomEventType)
        assert a.type.value == "langgraph.checkpoint" and a.type.family == "langgraph"
        assert await store.get_events("s", type="langgraph.checkpoint") == [a]
        assert await store.get_events("s", type=CustomEventType("myapp.note_2")) == [b]
        assert await store.get_events("s", type="other.kind") == []
        every = await store.get_events("s")
        assert [e.type for e in every] == ["langgraph.checkpoint", "message_sent", "myapp.note_2"]
        assert every[0] == a and Event.from_dict(a.to_dict()) == a

    @pytest.mark.parametrize(
        "bad",
        ["Langgraph.checkpoint", "a.b.c", "nodot", ".x", "x.", "a-b.c", "1a.b", "a." + "b" * 63],
    )
    async def test_malformed_custom_types_are_refused(
        self, store: SessionStoreBase, bad: str
    ) -> None:
        with pytest.raises(StoreError) as info:
            _ev(type=bad)
        assert info.value.code == "invalid_event_type"
        await _raises("invalid_event_type", store.get_events("s", type=bad))
        assert await store.get_latest_sequence("s") == 0

    async def test_event_type_that_is_not_a_string(self, store: SessionStoreBase) -> None:
        with pytest.raises(StoreError) as info:
            _ev(type=5)
        assert info.value.code == "validation_error"
        assert len("a" * 30 + "." + "b" * 33) == 64
        ok = await store.append_event_with_sequence(_ev(type="a" * 30 + "." + "b" * 33))
        assert ok.sequence_number == 1

    # ---------------------------------------------------------------- 2.3 rewinds

    @pytest.mark.parametrize(
        "data",
        [
            {},
            {"to_sequence": -1},
            {"to_sequence": True},
            {"to_sequence": "3"},
            {"to_sequence": 1.0},
        ],
    )
    async def test_malformed_rewind_is_refused(
        self, store: SessionStoreBase, data: dict[str, Any]
    ) -> None:
        await store.append_event(_ev())
        bad = Event(type=REWIND, session_id="s", data=data)
        await _raises("validation_error", store.append_event(bad))
        await _raises("validation_error", store.append_events([_ev(), bad]))
        await _raises(
            "validation_error",
            store.flush(Session(id="s", agent_id="a"), Run(session_id="s"), [bad]),
        )
        assert await store.get_latest_sequence("s") == 1

    async def test_visible_history_pops_and_keeps_the_log(self, store: SessionStoreBase) -> None:
        events = await store.append_events([_ev(data={"i": i}) for i in range(1, 6)])
        rewind = await store.append_event_with_sequence(_rewind("s", 3))  # pops 4 and 5
        visible = await store.get_visible_events("s")
        assert visible == events[:3]
        assert _seqs(await store.get_events("s")) == [1, 2, 3, 4, 5, 6]  # nothing deleted
        assert (await store.get_events("s", type=REWIND)) == [rewind]
        more = await store.append_event_with_sequence(_ev(data={"i": 7}))
        assert await store.get_visible_events("s") == [*events[:3], more]
        assert await store.get_visible_events("s", limit=2) == [events[2], more]
        assert await store.get_visible_events("s", limit=100) == [*events[:3], more]
        assert await store.get_visible_events("unknown") == []

    async def test_newest_payloads_are_the_log_tail_newest_first(
        self, store: SessionStoreBase
    ) -> None:
        custom = CustomEventType("acme.note")
        await store.append_events([_ev(data={"i": i}) for i in range(1, 4)])
        await store.append_event(_rewind("s", 1))  # the raw log: rewinds are rows like others
        await store.append_event(_ev(type=custom, data={"i": 5, "nested": {"a": [1, None]}}))
        await store.append_event(_ev("other", data={"i": 99}))
        got = await store.get_newest_payloads("s", limit=3)
        assert got == [
            ("acme.note", {"i": 5, "nested": {"a": [1, None]}}),
            ("history_rewound", {"to_sequence": 1}),
            ("message_sent", {"i": 3}),
        ]
        want = [(e.type.value, e.data) for e in await store.get_events("s", order="desc")]
        assert await store.get_newest_payloads("s", limit=100) == want
        assert await store.get_newest_payloads("unknown", limit=5) == []
        await _raises("validation_error", store.get_newest_payloads("s", limit=0))
        await _raises("validation_error", store.get_newest_payloads("s", limit=None))  # type: ignore[arg-type]
        await _raises("validation_error", store.get_newest_payloads("", limit=1))

    async def test_nested_rewinds(self, store: SessionStoreBase) -> None:
        await store.append_events([_ev(data={"i": i}) for i in range(1, 4)])  # 1 2 3
        await store.append_event(_rewind("s", 1))  # 4: hides 2, 3
        await store.append_events([_ev(data={"i": 5}), _ev(data={"i": 6})])  # 5 6
        await store.append_event(_rewind("s", 5))  # 7: hides 6
        await store.append_event(_rewind("s", 4))  # 8: hides 5..7, so 7 never applies
        visible = await store.get_visible_events("s")
        # 8 hides (4, 8): 5, 6, 7. Then 4 is met: hides 2, 3. Left: 1.
        assert _seqs(visible) == [1]
        await store.append_event(_ev(data={"i": 9}))  # 9
        await store.append_event(_rewind("s", 7))  # 10: hides 8 and 9: the rewind 8 is undone
        # 7 applies now (hides 6), 5 stays, 4 still hides 2 and 3.
        assert _seqs(await store.get_visible_events("s")) == [1, 5]

    async def test_rewind_that_hides_nothing(self, store: SessionStoreBase) -> None:
        await store.append_events([_ev(), _ev()])
        await store.append_event(_rewind("s", 2))  # its own number - 1
        await store.append_event(_rewind("s", 40))  # beyond
        assert _seqs(await store.get_visible_events("s")) == [1, 2]
        await store.append_event(_rewind("s", 0))
        assert await store.get_visible_events("s") == []
        await _raises("validation_error", store.get_visible_events("s", limit=0))
        await _raises("validation_error", store.get_visible_events("", limit=None))

    async def test_visible_history_after_many_rewinds_pages_correctly(
        self, store: SessionStoreBase
    ) -> None:
        # item, pop, item, pop...: every second event is a rewind hiding the one before it.
        for i in range(300):
            stored = await store.append_event_with_sequence(_ev(data={"i": i}))
            if i % 3:
                assert stored.sequence_number is not None
                await store.append_event(_rewind("s", stored.sequence_number - 1))
        kept = [i for i in range(300) if i % 3 == 0]
        visible = await store.get_visible_events("s")
        assert [e.data["i"] for e in visible] == kept
        last = await store.get_visible_events("s", limit=7)
        assert [e.data["i"] for e in last] == kept[-7:]

    # ---------------------------------------------------------------- 3.9 order

    async def test_desc_order_with_every_filter(self, store: SessionStoreBase) -> None:
        stamps = [T0 + timedelta(seconds=i) for i in range(10)]
        events = await store.append_events(
            [
                _ev(
                    type=EventType.TOOL_CALL_STARTED if i % 2 else EventType.MESSAGE_SENT,
                    run_id="r1" if i < 5 else "r2",
                    timestamp=stamps[i],
                )
                for i in range(10)
            ]
        )
        rev = events[::-1]
        assert await store.get_events("s", order="desc") == rev
        assert await store.get_events("s", order="desc", limit=3) == rev[:3]
        assert await store.get_events("s", order="asc", limit=3) == events[:3]
        assert await store.get_events("s", order="desc", after=6) == rev[:4]
        assert await store.get_events("s", order="desc", before=4) == rev[-3:]
        assert await store.get_events("s", order="desc", after=2, before=8, limit=2) == [
            events[6],
            events[5],
        ]
        assert await store.get_events("s", order="desc", run_id="r1", limit=2) == [
            events[4],
            events[3],
        ]
        tools = [e for e in rev if e.type == EventType.TOOL_CALL_STARTED]
        assert await store.get_events("s", order="desc", type="tool_call_started") == tools
        assert await store.get_events("s", order="desc", since=stamps[7]) == rev[:3]
        assert await store.get_events(
            "s", order="desc", type="tool_call_started", run_id="r2", limit=1
        ) == [events[9]]
        assert await store.get_events("unknown", order="desc") == []
        for bad in ("DESC", "descending", None, 1):
            await _raises("validation_error", store.get_events("s", order=bad))  # type: ignore[arg-type]

    async def test_desc_long_poll(self, store: SessionStoreBase) -> None:
        await store.append_event(_ev())
        reader = asyncio.create_task(
            store.get_events(
                "s", after=1, order="desc", type="tool_call_started", wait_timeout_ms=20_000
            )
        )
        await asleep(store, "s")
        assert not reader.done()
        woken = deliveries(store, "s")
        await store.append_event(_ev())  # filtered out: keeps waiting
        await settled(store, "s", woken, [reader])
        assert not reader.done()
        woke = await store.append_events(
            [_ev(type=EventType.TOOL_CALL_STARTED), _ev(type=EventType.TOOL_CALL_STARTED)]
        )
        got = await asyncio.wait_for(reader, 10)
        assert got == woke[::-1]  # one atomic batch: the wake sees both, newest first

    # ---------------------------------------------------------------- 3.12 conditional append

    async def test_conditional_append_succeeds_only_at_the_expected_sequence(
        self, store: SessionStoreBase
    ) -> None:
        first = await store.append_event_with_sequence(_ev(), expected_sequence=0)
        assert first.sequence_number == 1
        err = await _raises(
            "sequence_conflict", store.append_event_with_sequence(_ev(), expected_sequence=0)
        )
        assert err.details == {"session_id": "s", "expected": 0, "actual": 1}
        await _raises("sequence_conflict", store.append_events([_ev(), _ev()], expected_sequence=2))
        assert await store.get_latest_sequence("s") == 1  # nothing consumed
        batch = await store.append_events([_ev(), _ev()], expected_sequence=1)
        assert _seqs(batch) == [2, 3]
        await store.append_event(_ev(), expected_sequence=3)
        assert _seqs(await store.get_events("s")) == [1, 2, 3, 4]
        other = await store.append_event_with_sequence(_ev("t"), expected_sequence=0)
        assert other.sequence_number == 1

    async def test_idempotent_retry_with_a_stale_expected_sequence(
        self, store: SessionStoreBase
    ) -> None:
        batch = await store.append_events([_ev(id="e1"), _ev(id="e2")], expected_sequence=0)
        await store.append_event(_ev(id="e3"))
        # the reply to the first call was lost: the retry must succeed with the stored events
        again = await store.append_events([_ev(id="e1"), _ev(id="e2")], expected_sequence=0)
        assert again == batch
        one = await store.append_event_with_sequence(
            _ev(id="e3", data={"x": 1}), expected_sequence=0
        )
        assert one.sequence_number == 3 and one.data == {}
        # mixing stored and new ids checks the counter as it is
        await _raises(
            "sequence_conflict",
            store.append_events([_ev(id="e1"), _ev(id="e4")], expected_sequence=2),
        )
        mixed = await store.append_events([_ev(id="e1"), _ev(id="e4")], expected_sequence=3)
        assert _seqs(mixed) == [1, 4]

    async def test_conditional_append_bad_arguments(self, store: SessionStoreBase) -> None:
        bads: list[Any] = [-1, True, "1", 1.0]
        for bad in bads:
            await _raises(
                "validation_error", store.append_event_with_sequence(_ev(), expected_sequence=bad)
            )
            await _raises("validation_error", store.append_events([_ev()], expected_sequence=bad))
        await _raises(
            "validation_error", store.append_events([_ev("s"), _ev("t")], expected_sequence=0)
        )
        assert await store.append_events([], expected_sequence=7) == []
        assert await store.get_latest_sequence("s") == 0
        assert await store.get_latest_sequence("t") == 0

    async def test_conditional_flush(self, store: SessionStoreBase) -> None:
        session = Session(id="s", agent_id="a")
        run = Run(id="r", session_id="s")
        await _raises("sequence_conflict", store.flush(session, run, [_ev()], expected_sequence=3))
        await _raises("session_not_found", store.get_session("s"))
        await _raises("run_not_found", store.get_run("r"))
        out = await store.flush(session, run, [_ev(), _ev()], expected_sequence=0)
        assert _seqs(out) == [1, 2]
        # a flush with no events still checks
        await _raises(
            "sequence_conflict",
            store.flush(session.with_status("failed"), run, [], expected_sequence=1),
        )
        assert (await store.get_session("s")).status == "pending"
        await store.flush(session.with_status("completed"), run, [], expected_sequence=2)
        assert (await store.get_session("s")).status == "completed"
        await _raises(
            "validation_error", store.flush(session, run, [_ev("other")], expected_sequence=2)
        )
        assert await store.get_latest_sequence("other") == 0

    async def test_concurrent_conditional_appends_one_winner(self, store: SessionStoreBase) -> None:
        await store.append_event(_ev())
        outcomes = await asyncio.gather(
            *(store.append_event_with_sequence(_ev(), expected_sequence=1) for _ in range(8)),
            return_exceptions=True,
        )
        wins = [o for o in outcomes if isinstance(o, Event)]
        assert len(wins) == 1 and wins[0].sequence_number == 2
        assert all(
            isinstance(o, StoreError) and o.code == "sequence_conflict"
            for o in outcomes
            if not isinstance(o, Event)
        )
        assert _seqs(await store.get_events("s")) == [1, 2]

    # ---------------------------------------------------------------- C5 updated_at

    async def test_activity_touches_updated_at(self, store: SessionStoreBase) -> None:
        old = datetime(2020, 1, 1, tzinfo=UTC)
        await store.save_session(Session(id="s", agent_id="a", created_at=old, updated_at=old))
        assert (await store.get_session("s")).updated_at == old
        before = datetime.now(UTC) - timedelta(seconds=5)

        async def updated() -> datetime:
            return (await store.get_session("s")).updated_at

        stored = await store.append_event_with_sequence(_ev(id="e1"))
        t1 = await updated()
        assert t1 > before
        await store.save_session(Session(id="s", agent_id="a", created_at=old, updated_at=old))
        await store.append_event(stored)  # a duplicate is a no-op
        await _raises("sequence_conflict", store.append_event(_ev(), expected_sequence=0))
        assert await updated() == old
        listed = await store.list_sessions()
        assert listed[0].updated_at == old
        await store.save_run(Run(session_id="s"))
        assert await updated() > before
        await store.save_session(Session(id="s", agent_id="a", created_at=old, updated_at=old))
        await store.flush(
            Session(id="s", agent_id="a", created_at=old, updated_at=old), Run(session_id="s"), []
        )
        assert await updated() > before
        assert (await store.list_sessions())[0].updated_at > before
        await store.append_event(_ev("no_record"))  # no record: nothing to touch, no error

    # ---------------------------------------------------------------- 10 export / import

    async def _sample(self, store: SessionStoreBase, sid: str = "src") -> list[Event]:
        await store.save_session(
            Session(
                id=sid, agent_id="a", tags=["x"], metadata={"m": 1}, created_at=T0, updated_at=T0
            )
        )
        run = Run(
            id=f"{sid}_run",
            session_id=sid,
            status=RunStatus.COMPLETED,
            started_at=T0,
            token_usage={"input_tokens": 3},
        )
        await store.save_run(run)
        events = await store.append_events(
            [
                _ev(sid, run_id=run.id, timestamp=T0 + timedelta(microseconds=i), data={"i": i})
                for i in range(5)
            ]
        )
        await store.append_event(_rewind(sid, 3, timestamp=T0))
        events.append((await store.get_events(sid, after=5))[0])
        return events

    async def test_export_then_import_is_identical(self, store: SessionStoreBase) -> None:
        events = await self._sample(store)
        export = await store.export_session("src")
        assert export.events == events and export.latest_sequence == 6
        assert [r.id for r in export.runs] == ["src_run"]
        before = (await store.get_session("src"), await store.get_run("src_run"))
        await store.delete_session("src")
        report = await store.import_session(export)
        assert report == ImportReport("src", 6, 0, 1)
        assert await store.get_events("src") == events
        assert (await store.get_session("src"), await store.get_run("src_run")) == before
        assert await store.get_latest_sequence("src") == 6
        again = await store.import_session(export)
        assert again.events_imported == 0 and again.events_skipped == 6
        assert await store.get_events("src") == events
        nxt = await store.append_event_with_sequence(_ev("src"))
        assert nxt.sequence_number == 7
        records = [r async for r in store.iter_export("src", page_size=2)]
        assert [r["record"] for r in records[:3]] == ["header", "session", "run"]
        assert len(records) == 3 + 7
        await _raises("session_not_found", store.export_session("missing"))

    async def test_import_keeps_gaps_and_the_counter(self, store: SessionStoreBase) -> None:
        session = Session(id="g", agent_id="a", created_at=T0, updated_at=T0)
        events = [
            Event(
                id=f"g{n}",
                type=EventType.MESSAGE_SENT,
                session_id="g",
                sequence_number=n,
                timestamp=T0 + timedelta(seconds=n),
            )
            for n in (2, 3, 7)
        ]
        report = await store.import_session(SessionExport(session, [], events, 9))
        assert report.events_imported == 3
        assert _seqs(await store.get_events("g")) == [2, 3, 7]
        assert _seqs(await store.get_events("g", order="desc", limit=2)) == [7, 3]
        assert _seqs(await store.get_events("g", after=3, before=8)) == [7]
        assert await store.get_latest_sequence("g") == 9
        assert (await store.get_session("g")).updated_at == T0  # import keeps the value
        assert (await store.append_event_with_sequence(_ev("g"))).sequence_number == 10
        await store.append_event(_ev("g", id="g3"))  # an imported id is stored: a no-op
        assert await store.get_latest_sequence("g") == 10

    async def test_import_conflicts_write_nothing(self, store: SessionStoreBase) -> None:
        await self._sample(store)
        export = await store.export_session("src")
        # another session holding those ids
        moved = SessionExport(
            export.session.replace(id="dst"),
            [],
            [e.replace(session_id="dst") for e in export.events],
            export.latest_sequence,
        )
        await _raises("sequence_conflict", store.import_session(moved))
        await _raises("session_not_found", store.get_session("dst"))
        assert await store.get_events("dst") == []
        # a session holding other events at those numbers
        await store.append_events([_ev("dst2"), _ev("dst2")])
        clash = SessionExport(
            export.session.replace(id="dst2"),
            [],
            [
                Event(id=f"n{i}", type=EventType.MESSAGE_SENT, session_id="dst2", sequence_number=i)
                for i in (1, 2, 3)
            ],
            3,
        )
        await _raises("sequence_conflict", store.import_session(clash))
        assert _seqs(await store.get_events("dst2")) == [1, 2]
        assert await store.get_latest_sequence("dst2") == 2
        await _raises("session_not_found", store.get_session("dst2"))

    async def test_import_refuses_malformed_exports(self, store: SessionStoreBase) -> None:
        s = Session(id="m", agent_id="a")
        e1 = Event(id="m1", type=EventType.MESSAGE_SENT, session_id="m", sequence_number=1)
        bad_exports = [
            SessionExport(s, [], [e1.replace(sequence_number=None)], 1),
            SessionExport(s, [], [e1, e1.replace(id="m2")], 1),  # not increasing
            SessionExport(s, [], [e1], 0),  # beyond latest
            SessionExport(s, [], [e1.replace(session_id="other")], 1),
            SessionExport(s, [Run(session_id="other")], [], 0),
            SessionExport(s, [], [], -1),
        ]
        for export in bad_exports:
            await _raises("validation_error", store.import_session(export))
        await _raises("validation_error", store.import_session("not an export"))  # type: ignore[arg-type]
        await _raises("validation_error", store.import_records([{"record": "session"}]))
        await _raises("validation_error", store.import_records([]))
        assert await store.get_events("m") == []
        await _raises("session_not_found", store.get_session("m"))

    async def test_streamed_import_resumes_after_a_partial_copy(
        self, store: SessionStoreBase
    ) -> None:
        await store.save_session(Session(id="big", agent_id="a"))
        await store.append_events([_ev("big", data={"i": i}) for i in range(25)])
        records = [r async for r in store.iter_export("big", page_size=4)]
        originals = await store.get_events("big")
        await store.delete_session("big")

        def cut_after(n: int) -> Iterator[dict[str, Any]]:
            yield from records[: 2 + n]  # header, session, then n events

        partial = await store.import_records(cut_after(12), chunk_size=5)
        assert partial.events_imported == 12
        assert _seqs(await store.get_events("big")) == list(range(1, 13))
        assert await store.get_latest_sequence("big") == 25  # the numbers are reserved

        async def all_records() -> Any:
            for r in records:
                yield r

        rest = await store.import_records(all_records(), chunk_size=5)
        assert (rest.events_imported, rest.events_skipped) == (13, 12)
        assert await store.get_events("big") == originals

    # ---------------------------------------------------------------- 10 fork

    async def test_fork_copies_visible_history_and_is_idempotent(
        self, store: SessionStoreBase
    ) -> None:
        events = await self._sample(store)  # 1..5, then a rewind to 3 at 6
        fork = await store.fork_session("src")
        assert fork.parent_session_id == "src" and fork.id != "src"
        assert fork.metadata == {"m": 1, "forked_at_sequence": 6}
        assert fork.agent_id == "a" and fork.tags == ["x"]
        copied = await store.get_events(fork.id)
        assert _seqs(copied) == [1, 2, 3]
        assert [e.metadata["forked_from"] for e in copied] == [e.id for e in events[:3]]
        assert [e.data for e in copied] == [e.data for e in events[:3]]
        assert [e.timestamp for e in copied] == [e.timestamp for e in events[:3]]
        assert {e.id for e in copied}.isdisjoint(e.id for e in events)
        runs = await store.list_runs(fork.id)
        assert len(runs) == 1 and runs[0].id != "src_run"
        assert {e.run_id for e in copied} == {runs[0].id}
        assert runs[0].token_usage == {"input_tokens": 3}
        again = await store.fork_session("src")
        assert again.id == fork.id
        assert await store.get_events(fork.id) == copied
        assert await store.list_runs(fork.id) == runs
        assert await store.get_latest_sequence("src") == 6  # the source is unchanged

    async def test_fork_at_a_sequence_and_with_a_new_id(self, store: SessionStoreBase) -> None:
        await self._sample(store)
        at2 = await store.fork_session("src", at_sequence=2, new_session_id="f2", agent_id="b")
        assert (at2.id, at2.agent_id, at2.metadata["forked_at_sequence"]) == ("f2", "b", 2)
        assert _seqs(await store.get_events("f2")) == [1, 2]
        empty = await store.fork_session("src", at_sequence=0)
        assert await store.get_events(empty.id) == []
        assert empty.id != (await store.fork_session("src", at_sequence=1)).id
        nxt = await store.append_event_with_sequence(_ev("f2"))
        assert nxt.sequence_number == 3
        await _raises("validation_error", store.fork_session("src", at_sequence=7))
        await _raises("validation_error", store.fork_session("src", at_sequence=-1))
        await _raises("validation_error", store.fork_session("src", new_session_id=""))
        await _raises("validation_error", store.fork_session("src", new_session_id="src"))
        await _raises("session_not_found", store.fork_session("missing"))


class DurableV2Contract(V2Contract):
    """Conditional appends raced by several OS processes on one database."""

    async def test_processes_racing_conditional_appends(
        self, store: SessionStoreBase, store_url: str
    ) -> None:
        rounds, writers = 15, 4
        results = await asyncio.get_running_loop().run_in_executor(
            None,
            workers.run_processes,
            workers.conditional_rounds,
            [(store_url, "race", rounds, f"p{p}") for p in range(writers)],
        )
        for r in range(rounds):
            outcomes = [per_proc[r] for per_proc in results]
            assert sorted(o[0] for o in outcomes) == ["sequence_conflict"] * (writers - 1) + [
                "won"
            ], f"round {r}: {outcomes}"
            assert all(o[1] == r for o in outcomes)  # everyone expected the same number
        stored = await store.get_events("race")
        assert _seqs(stored) == list(range(1, rounds + 1))
        winners = {o[2] for per_proc in results for o in per_proc if o[0] == "won"}
        assert {e.id for e in stored} == winners

    async def test_processes_retrying_conditional_appends_lose_nothing(
        self, store: SessionStoreBase, store_url: str
    ) -> None:
        per_writer, writers = 25, 4
        results = await asyncio.get_running_loop().run_in_executor(
            None,
            workers.run_processes,
            workers.conditional_retry,
            [(store_url, "retry", per_writer, f"p{p}") for p in range(writers)],
        )
        stored = await store.get_events("retry")
        assert _seqs(stored) == list(range(1, per_writer * writers + 1))
        assert {e.id for e in stored} == {i for per_proc in results for i, _ in per_proc}

    async def test_import_is_seen_by_another_store_object(
        self, store: SessionStoreBase, store_url: str
    ) -> None:
        await self._sample(store)
        export = await store.export_session("src")
        await store.delete_session("src")
        async with open_session_store(store_url) as other:
            reader = asyncio.create_task(other.get_events("src", wait_timeout_ms=20_000))
            await asleep(other, "src")
            await store.import_session(export)
            got = await asyncio.wait_for(reader, 15)
            assert got and got == export.events[: len(got)]
            assert await other.get_events("src") == export.events
