"""The SessionStore contract suite (contract 3), written once for every backend.

Subclass ``SessionStoreContract`` in a ``Test*`` class and provide a ``store_url`` fixture
that names a fresh, empty database for each test; durable backends subclass
``DurableSessionStoreContract`` instead, which adds tests with several store objects and
several OS processes on one database::

    class TestMyStore(DurableSessionStoreContract):
        @pytest.fixture
        def store_url(self, tmp_path):
            return f"sqlite:///{tmp_path}/s.db?auto_migrate=true"

Requires pytest and pytest-asyncio (``asyncio_mode = "auto"``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from ..base import SessionStoreBase
from ..errors import StoreError
from ..models import Event, EventType, ExecutionResult, Run, RunStatus, Session, SessionStatus
from ..urls import open_session_store
from . import workers
from .contract_edges import EdgeContract
from .contract_query import QueryContract
from .contract_v2 import DurableV2Contract, V2Contract
from .faults import failing_midway
from .waiting import asleep, deliveries, settled

__all__ = ["DurableSessionStoreContract", "SessionStoreContract"]

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def ev(session_id: str = "ses_a", type: EventType = EventType.MESSAGE_SENT, **kw: Any) -> Event:
    return Event(type=type, session_id=session_id, **kw)


def seqs(events: list[Event]) -> list[int]:
    return [e.sequence_number or 0 for e in events]


async def raises(code: str, awaitable: Any) -> StoreError:
    """Await and require a StoreError with exactly this code and a non-empty message."""
    with pytest.raises(StoreError) as info:
        await awaitable
    err = info.value
    assert err.code == code, f"expected [{code}], got {err!s}"
    assert err.message and str(err).startswith(f"[{code}] ")
    return err


class SessionStoreContract(V2Contract, EdgeContract, QueryContract):
    """Every rule of contract 3 that one store object can show."""

    @pytest.fixture
    def store_url(self) -> str:
        raise NotImplementedError("a contract subclass must provide a store_url fixture")

    @pytest.fixture
    async def store(self, store_url: str) -> AsyncIterator[SessionStoreBase]:
        store = open_session_store(store_url)
        async with store:
            yield store

    # ---------------------------------------------------------------- 3.1 / 3.2 sessions

    async def test_session_round_trip_keeps_every_field(self, store: SessionStoreBase) -> None:
        s = Session(
            id="ses_round",
            agent_id="agent-é-🤖",
            status=SessionStatus.ACTIVE,
            parent_session_id="ses_parent",
            metadata={"nested": {"list": [1, 2.5, None, True, "x"]}, "unknown_key": {"k": 1}},
            context={"system": "you are helpful 💡"},
            tags=["a", "b"],
            created_at=T0,
            updated_at=T0 + timedelta(microseconds=1),
            deleted_at=T0 + timedelta(days=1),
        )
        await store.save_session(s)
        assert await store.get_session("ses_round") == s

    async def test_get_unknown_session(self, store: SessionStoreBase) -> None:
        err = await raises("session_not_found", store.get_session("nope"))
        assert "nope" in err.message

    async def test_save_session_replaces_every_field(self, store: SessionStoreBase) -> None:
        s = Session(id="s1", agent_id="a", metadata={"old": 1}, tags=["x"], created_at=T0)
        await store.save_session(s)
        s2 = Session(
            id="s1",
            agent_id="b",
            status=SessionStatus.COMPLETED,
            metadata={"new": 2},
            created_at=T0,
        )
        await store.save_session(s2)
        await store.save_session(s2)
        assert await store.get_session("s1") == s2
        assert await store.list_sessions() == [s2]

    async def test_soft_deleted_session_is_still_returned(self, store: SessionStoreBase) -> None:
        s = Session(id="s1", agent_id="a", deleted_at=T0)
        await store.save_session(s)
        assert (await store.get_session("s1")).deleted_at == T0

    # ---------------------------------------------------------------- 3.3 list_sessions

    async def _sessions(self, store: SessionStoreBase) -> list[Session]:
        made = []
        for i in range(12):
            s = Session(
                id=f"s{i:02d}",
                agent_id="even" if i % 2 == 0 else "odd",
                status=SessionStatus.ACTIVE if i % 3 == 0 else SessionStatus.PENDING,
                created_at=T0 + timedelta(seconds=12 - i),  # saved in reverse time order
            )
            made.append(s)
        for s in made:
            await store.save_session(s)
        return sorted(made, key=lambda s: (s.created_at, s.id))

    async def test_list_sessions_order_filters_limit_offset(self, store: SessionStoreBase) -> None:
        ordered = await self._sessions(store)
        assert await store.list_sessions() == ordered
        assert await store.list_sessions(agent_id="even") == [
            s for s in ordered if s.agent_id == "even"
        ]
        assert await store.list_sessions(status="active") == [
            s for s in ordered if s.status == "active"
        ]
        both = [s for s in ordered if s.status == "active" and s.agent_id == "odd"]
        assert await store.list_sessions(status=SessionStatus.ACTIVE, agent_id="odd") == both
        assert await store.list_sessions(limit=5) == ordered[:5]
        assert await store.list_sessions(limit=5, offset=4) == ordered[4:9]
        assert await store.list_sessions(offset=10) == ordered[10:]
        assert await store.list_sessions(offset=100) == []
        pending_even = [s for s in ordered if s.status == "pending" and s.agent_id == "even"]
        got = await store.list_sessions(status="pending", agent_id="even", limit=2, offset=1)
        assert got == pending_even[1:3]
        assert await store.list_sessions(agent_id="nobody") == []

    async def test_list_sessions_ties_on_created_at_order_by_id(
        self, store: SessionStoreBase
    ) -> None:
        for sid in ["b", "c", "a"]:
            await store.save_session(Session(id=sid, agent_id="x", created_at=T0))
        assert [s.id for s in await store.list_sessions()] == ["a", "b", "c"]

    async def test_list_sessions_follows_status_changes(self, store: SessionStoreBase) -> None:
        s = Session(id="s", agent_id="x")
        await store.save_session(s)
        await store.save_session(s.with_status("completed"))
        assert await store.list_sessions(status="pending") == []
        assert [x.id for x in await store.list_sessions(status="completed")] == ["s"]

    @pytest.mark.parametrize(
        ("kwargs", "code"),
        [
            ({"limit": 0}, "validation_error"),
            ({"limit": -1}, "validation_error"),
            ({"limit": 1.5}, "validation_error"),
            ({"limit": "10"}, "validation_error"),
            ({"limit": True}, "validation_error"),
            ({"offset": -1}, "validation_error"),
            ({"offset": None}, "validation_error"),
            ({"offset": 2.0}, "validation_error"),
            ({"status": "running"}, "invalid_status"),
            ({"status": 3}, "invalid_status"),
            ({"agent_id": ""}, "validation_error"),
            ({"agent_id": 7}, "validation_error"),
        ],
    )
    async def test_list_sessions_bad_arguments(
        self, store: SessionStoreBase, kwargs: dict[str, Any], code: str
    ) -> None:
        await raises(code, store.list_sessions(**kwargs))

    # ---------------------------------------------------------------- 3.4 delete_session

    async def test_delete_session_removes_everything_and_resets_numbering(
        self, store: SessionStoreBase
    ) -> None:
        await store.save_session(Session(id="s1", agent_id="a"))
        await store.save_session(Session(id="s2", agent_id="a"))
        run = Run(id="r1", session_id="s1", status=RunStatus.RUNNING)
        await store.save_run(run)
        await store.save_run(Run(id="r2", session_id="s2"))
        await store.append_events([ev("s1", id="e1"), ev("s1", id="e2"), ev("s2", id="e3")])
        await store.delete_session("s1")
        await store.delete_session("s1")
        await store.delete_session("never-existed")
        await raises("session_not_found", store.get_session("s1"))
        await raises("run_not_found", store.get_run("r1"))
        assert await store.list_runs("s1") == []
        assert await store.get_active_run("s1") is None
        assert await store.get_events("s1") == []
        assert await store.get_latest_sequence("s1") == 0
        # the other session is untouched
        assert [e.id for e in await store.get_events("s2")] == ["e3"]
        assert (await store.get_run("r2")).session_id == "s2"
        # a re-created session numbers from 1 again; the old ids are free again
        again = await store.append_event_with_sequence(ev("s1", id="e1", data={"v": 2}))
        assert again.sequence_number == 1
        assert again.data == {"v": 2}

    # ---------------------------------------------------------------- 3.5 - 3.7 runs

    async def test_run_round_trip_and_replace(self, store: SessionStoreBase) -> None:
        run = Run(
            id="r1",
            session_id="s1",
            status=RunStatus.RUNNING,
            input={"prompt": "héllo"},
            metadata={"m": [1]},
            turn_count=3,
            token_usage={"input": 10, "output": 20},
            cost_usd=0.0125,
            started_at=T0,
            provider="anthropic",
            provider_metadata={"model": "x"},
        )
        await store.save_run(run)
        assert await store.get_run("r1") == run
        done = run.with_status("completed").replace(output={"text": "bye"})
        assert done.ended_at is not None
        await store.save_run(done)
        assert await store.get_run("r1") == done
        await raises("run_not_found", store.get_run("r_missing"))

    async def test_list_runs_order_status_limit(self, store: SessionStoreBase) -> None:
        runs = [
            Run(id="r3", session_id="s", started_at=T0, status=RunStatus.COMPLETED),
            Run(id="r1", session_id="s", started_at=T0 + timedelta(seconds=1)),
            Run(id="r2", session_id="s", started_at=T0, status=RunStatus.COMPLETED),
            Run(id="rx", session_id="other", started_at=T0),
        ]
        for r in runs:
            await store.save_run(r)
        assert [r.id for r in await store.list_runs("s")] == ["r2", "r3", "r1"]
        assert [r.id for r in await store.list_runs("s", status="completed")] == ["r2", "r3"]
        assert [r.id for r in await store.list_runs("s", limit=1)] == ["r2"]
        assert await store.list_runs("unknown") == []
        await raises("invalid_status", store.list_runs("s", status="active"))
        await raises("validation_error", store.list_runs("s", limit=0))

    async def test_get_active_run(self, store: SessionStoreBase) -> None:
        assert await store.get_active_run("s") is None
        await store.save_run(Run(id="old", session_id="s", status=RunStatus.RUNNING, started_at=T0))
        await store.save_run(Run(id="done", session_id="s", status=RunStatus.COMPLETED))
        assert (await store.get_active_run("s")).id == "old"  # type: ignore[union-attr]
        later = T0 + timedelta(minutes=1)
        await store.save_run(
            Run(id="new_a", session_id="s", status=RunStatus.RUNNING, started_at=later)
        )
        await store.save_run(
            Run(id="new_b", session_id="s", status=RunStatus.RUNNING, started_at=later)
        )
        assert (await store.get_active_run("s")).id == "new_b"  # type: ignore[union-attr]
        # read-after-write: a status change is seen at once
        await store.save_run(
            Run(id="new_b", session_id="s", status=RunStatus.FAILED, started_at=later)
        )
        assert (await store.get_active_run("s")).id == "new_a"  # type: ignore[union-attr]
        assert await store.get_active_run("other") is None

    async def test_concurrent_saves_of_one_run_leave_one_complete_version(
        self, store: SessionStoreBase
    ) -> None:
        versions = [
            Run(id="r", session_id="s", turn_count=i, metadata={"v": i}, token_usage={"t": i})
            for i in range(40)
        ]
        await asyncio.gather(*(store.save_run(r) for r in versions))
        got = await store.get_run("r")
        assert got in versions
        assert got.metadata["v"] == got.turn_count == got.token_usage["t"]

    # ---------------------------------------------------------------- 3.8 appends

    async def test_sequences_start_at_one_and_caller_values_are_ignored(
        self, store: SessionStoreBase
    ) -> None:
        a = await store.append_event_with_sequence(ev(sequence_number=99))
        b = await store.append_event_with_sequence(ev())
        assert (a.sequence_number, b.sequence_number) == (1, 2)
        await store.append_event(ev())
        assert await store.get_latest_sequence("ses_a") == 3
        assert await store.get_latest_sequence("unknown") == 0

    async def test_returned_event_is_the_stored_form(self, store: SessionStoreBase) -> None:
        given = ev(
            id="e1",
            run_id="r1",
            timestamp=datetime(
                2020, 2, 29, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=5))
            ),
            data={"text": "naïve café 🚀", "n": [1, 2.25, -3], "deep": {"a": {"b": None}}},
            metadata={"trace": "t"},
            schema_version=3,
            provider="openai",
            correlation_id="c-1",
        )
        stored = await store.append_event_with_sequence(given)
        assert stored == given.replace(sequence_number=1)
        assert stored.timestamp == given.timestamp and stored.timestamp.tzinfo is UTC
        assert await store.get_events("ses_a") == [stored]

    async def test_ints_past_64_bits_come_back_exact(self, store: SessionStoreBase) -> None:
        """JSON ints have no size limit, and Python's neither: a payload's 2**64 + 1 is read
        back as that int, not as a float near it (orjson reads such ints as floats). Small
        and large payloads, event data and metadata, session context, run output."""
        big = {"n": 2**64 + 1, "neg": -(2**63) - 1, "l": [10**30 + 7, {"k": 2**70 + 3}]}
        large = {"pad": "x" * 70_000, **big}  # past the codec's slice: the sliced reader
        events = [ev(data=big, metadata=big), ev(data=large)]
        await store.append_events(events)
        await store.save_session(Session(id="ses_a", agent_id="a", context=big))
        await store.save_run(Run(id="run_big", session_id="ses_a", output=big))
        got = await store.get_events("ses_a")
        assert [repr(e.data) for e in got] == [repr(big), repr(large)]
        assert repr(got[0].metadata) == repr(big)
        assert repr((await store.get_session("ses_a")).context) == repr(big)
        run = await store.get_run("run_big")
        assert run is not None and repr(run.output) == repr(big)

    async def test_every_caller_gets_its_own_payloads(self, store: SessionStoreBase) -> None:
        """Payload dicts a call returns, or was given, are the caller's to change: never the
        store's copy nor another caller's (an empty dict too, on every read path)."""
        plain = ev()
        full = ev(type=EventType.TOOL_CALL_STARTED, data={"a": [1]}, metadata={"m": {"k": 1}})
        written = await store.append_events([plain, full])
        reads = [
            await store.get_events("ses_a"),
            await store.get_events("ses_a", order="desc"),
            await store.get_events("ses_a", type=EventType.MESSAGE_SENT),
            await store.get_events("ses_a", type=EventType.TOOL_CALL_STARTED),
        ]
        for e in [plain, full, *written, *(e for page in reads for e in page)]:
            for payload in (e.data, e.metadata):
                payload["changed"] = True
                for value in payload.values():
                    if isinstance(value, list):
                        value.append(2)
                    elif isinstance(value, dict):
                        value["changed"] = True
        again = await store.get_events("ses_a")
        assert [(e.data, e.metadata) for e in again] == [({}, {}), ({"a": [1]}, {"m": {"k": 1}})]

    async def test_duplicate_id_returns_original_and_consumes_nothing(
        self, store: SessionStoreBase
    ) -> None:
        first = await store.append_event_with_sequence(ev(id="dup", data={"v": 1}))
        await store.append_event(ev())
        again = await store.append_event_with_sequence(
            ev(id="dup", data={"v": 2}, type=EventType.ERROR_OCCURRED)
        )
        assert again == first
        # across sessions too: the id is already taken
        elsewhere = await store.append_event_with_sequence(ev("ses_b", id="dup"))
        assert elsewhere == first
        assert await store.get_events("ses_b") == []
        assert await store.get_latest_sequence("ses_a") == 2
        nxt = await store.append_event_with_sequence(ev())
        assert nxt.sequence_number == 3

    async def test_batch_gives_contiguous_blocks_per_session_in_input_order(
        self, store: SessionStoreBase
    ) -> None:
        first = await store.append_event_with_sequence(ev("s1"))
        batch = [ev("s1"), ev("s2"), ev("s1"), ev("s3"), ev("s2"), ev("s1")]
        out = await store.append_events(batch)
        assert [e.id for e in out] == [e.id for e in batch]
        assert seqs(out) == [2, 1, 3, 1, 2, 4]
        assert out == [b.replace(sequence_number=o.sequence_number) for b, o in zip(batch, out)]
        assert await store.get_events("s1") == [first, out[0], out[2], out[5]]

    async def test_batch_duplicates_map_to_the_first_or_stored_event(
        self, store: SessionStoreBase
    ) -> None:
        stored = await store.append_event_with_sequence(ev(id="old"))
        batch = [
            ev(id="x", data={"v": 1}),
            ev(id="old", data={"changed": True}),
            ev(id="x", data={"v": 2}),
            ev(id="y"),
        ]
        out = await store.append_events(batch)
        assert out[1] == stored
        assert out[0] == out[2] and out[0].data == {"v": 1}
        assert seqs(out) == [2, 1, 2, 3]
        assert await store.get_latest_sequence("ses_a") == 3
        assert await store.append_events([]) == []

    async def test_large_batch(self, store: SessionStoreBase) -> None:
        """Read back whole: a backend may ship a large batch in another form than a small
        one (Redis: one string cut at byte lengths), so every row, of varied sizes and
        characters, must come back as it went in."""
        batch = [
            ev(
                data={"i": i, "t": "é✓" * (i % 7)},
                metadata={"m": i} if i % 5 else {},
                run_id=f"r{i % 3}" if i % 2 else None,
            )
            for i in range(20_000)
        ]
        out = await store.append_events(batch)
        assert seqs(out) == list(range(1, 20_001))
        page = await store.get_events("ses_a", after=19_990)
        assert [e.data["i"] for e in page] == list(range(19_990, 20_000))
        assert await store.get_events("ses_a") == out
        assert out == [b.replace(sequence_number=o.sequence_number) for b, o in zip(batch, out)]

    async def test_events_need_no_session_record(self, store: SessionStoreBase) -> None:
        e = await store.append_event_with_sequence(ev("no_such_session"))
        assert e.sequence_number == 1
        await raises("session_not_found", store.get_session("no_such_session"))

    async def test_flush_stores_session_run_and_events(self, store: SessionStoreBase) -> None:
        session = Session(id="s", agent_id="a", status=SessionStatus.ACTIVE)
        run = Run(id="r", session_id="s", status=RunStatus.COMPLETED, output={"ok": True})
        events = [ev("s", run_id="r"), ev("s", run_id="r", type=EventType.RUN_COMPLETED)]
        out = await store.flush(session, run, events)
        assert seqs(out) == [1, 2]
        stored = await store.get_session("s")  # a flush touches updated_at (C5)
        assert stored.replace(updated_at=session.updated_at) == session
        assert stored.updated_at >= session.updated_at
        assert await store.get_run("r") == run
        assert await store.get_events("s") == out
        # ExecutionResult form, upserting both records
        session2 = session.with_status("completed")
        run2 = run.replace(turn_count=4)
        more = [ev("s", run_id="r")]
        result = ExecutionResult(session=session2, run=run2, events=more, provider_metadata={})
        out2 = await store.flush(result)
        assert seqs(out2) == [3]
        assert (await store.get_session("s")).replace(updated_at=session2.updated_at) == session2
        assert await store.get_run("r") == run2

    async def test_failed_flush_leaves_nothing(self, store: SessionStoreBase) -> None:
        session = Session(id="s", agent_id="a")
        run = Run(id="r", session_id="s")
        bad = ev("s", data={"blob": b"\x00\x01"})
        await raises("validation_error", store.flush(session, run, [ev("s"), bad]))
        await raises("session_not_found", store.get_session("s"))
        await raises("run_not_found", store.get_run("r"))
        assert await store.get_latest_sequence("s") == 0
        assert await store.get_events("s") == []
        # an existing session is not changed either
        await store.save_session(session)
        changed = session.with_status("failed")
        await raises("validation_error", store.flush(changed, run, [bad]))
        assert await store.get_session("s") == session

    async def test_flush_failing_in_the_backend_midway_leaves_nothing(
        self, store: SessionStoreBase
    ) -> None:
        """3.8.7 with a real failure, not a refused input: the backend fails after part of
        the flush was written; nothing of it is visible, the error is a StoreError."""
        old = Session(id="s", agent_id="a", metadata={"v": 1})
        await store.save_session(old)
        await store.save_run(Run(id="r0", session_id="s"))
        first = await store.append_event_with_sequence(ev("s", run_id="r0"))
        before = await store.get_session("s")
        runs = await store.list_runs("s")
        new_run = Run(id="r1", session_id="s")
        batch = [ev("s", id="e1", run_id="r1"), ev("s", id="boom"), ev("s", id="e3")]
        changed = old.replace(metadata={"v": 2})
        for attempt in (changed, Session(id="fresh", agent_id="b")):
            sid = attempt.id
            events = [e.replace(session_id=sid) for e in batch]
            async with failing_midway(store, sid, "boom"):
                with pytest.raises(StoreError) as info:
                    await store.flush(attempt, new_run.replace(session_id=sid), events)
            assert info.value.code == "storage_error", info.value
        assert await store.get_session("s") == before, (await store.get_session("s"), before)
        assert await store.list_runs("s") == runs
        await raises("run_not_found", store.get_run("r1"))
        assert await store.get_events("s") == [first]
        assert await store.get_latest_sequence("s") == 1
        await raises("session_not_found", store.get_session("fresh"))
        assert await store.get_events("fresh") == []
        assert await store.get_latest_sequence("fresh") == 0
        assert [x.id for x in await store.list_sessions()] == ["s"]
        # nothing was consumed: the same flush, once the fault is gone, numbers from 2
        out = await store.flush(changed, new_run, batch)
        assert [e.sequence_number for e in out] == [2, 3, 4]
        assert (await store.get_session("s")).metadata == {"v": 2}

    # ---------------------------------------------------------------- bad input (3.8.1)

    async def _assert_untouched(self, store: SessionStoreBase) -> None:
        assert await store.get_latest_sequence("ses_a") == 1
        assert len(await store.get_events("ses_a")) == 1
        ok = await store.append_event_with_sequence(ev())
        assert ok.sequence_number == 2  # still usable, nothing consumed

    @pytest.mark.parametrize(
        ("data", "fragment"),
        [
            ({"b": b"raw"}, "bytes"),
            ({"n": math.nan}, "NaN"),
            ({"n": [1, math.inf]}, "not a JSON number"),
            ({1: "int key"}, "key"),
            ({None: "none key"}, "key"),
            ({"t": (1, 2)}, "tuple"),
            ({"s": {1, 2}}, "set"),
            ({"o": object()}, "object"),
            ({"d": datetime(2020, 1, 1, tzinfo=UTC)}, "datetime"),
            ({"z": "nul\x00inside"}, "NUL"),
            ({"z": "lone \ud800 surrogate"}, "surrogate"),
        ],
    )
    async def test_payloads_that_are_not_json_are_refused(
        self, store: SessionStoreBase, data: dict[Any, Any], fragment: str
    ) -> None:
        await store.append_event(ev())
        err = await raises("validation_error", store.append_event(ev(data=data)))
        assert fragment.lower() in err.message.lower()
        await raises("validation_error", store.append_events([ev(), ev(metadata=data)]))
        await self._assert_untouched(store)

    async def test_circular_payload_is_refused(self, store: SessionStoreBase) -> None:
        await store.append_event(ev())
        loop: dict[str, Any] = {}
        loop["self"] = loop
        err = await raises("validation_error", store.append_event(ev(data={"a": loop})))
        assert "circular" in err.message
        items: list[Any] = []
        items.append(items)
        await raises("validation_error", store.append_event_with_sequence(ev(data={"l": items})))
        await self._assert_untouched(store)

    async def test_payload_size_limit(self, store: SessionStoreBase) -> None:
        await store.append_event(ev())
        huge = "x" * (20 * 1024 * 1024)
        err = await raises("validation_error", store.append_event(ev(data={"blob": huge})))
        assert "limit" in err.message
        await self._assert_untouched(store)
        # just under the limit is stored and read back whole
        big = "y" * (store.max_event_bytes - 64)
        stored = await store.append_event_with_sequence(ev(data={"blob": big}))
        got = await store.get_events("ses_a", after=2)
        assert got == [stored] and len(got[0].data["blob"]) == len(big)

    async def test_batch_mixing_good_and_bad_events_writes_nothing(
        self, store: SessionStoreBase
    ) -> None:
        await store.append_event(ev())
        good = [ev(), ev("ses_b"), ev()]
        bad = ev()
        object.__setattr__(bad, "type", "not_a_type")  # forced past the constructor's check
        err = await raises("invalid_event_type", store.append_events([*good, bad]))
        assert "events[3]" in err.message
        assert await store.get_events("ses_b") == []
        object.__setattr__(bad, "type", EventType.MESSAGE_SENT)
        object.__setattr__(bad, "timestamp", datetime(2020, 1, 1))  # naive
        await raises("validation_error", store.append_events([*good, bad]))
        await raises("validation_error", store.append_events([*good, "not an event"]))  # type: ignore[list-item]
        await self._assert_untouched(store)

    async def test_model_constructors_refuse_bad_values(self) -> None:
        cases: list[tuple[str, Any]] = [
            ("invalid_event_type", lambda: Event(type="nope", session_id="s")),  # type: ignore[arg-type]
            ("validation_error", lambda: Event(type="message_sent", session_id="")),  # type: ignore[arg-type]
            ("validation_error", lambda: Event(type="message_sent", session_id=5)),  # type: ignore[arg-type]
            ("validation_error", lambda: ev(timestamp=datetime(2020, 1, 1))),
            ("validation_error", lambda: ev(data=[])),
            ("validation_error", lambda: ev(schema_version=0)),
            ("validation_error", lambda: ev(id="")),
            ("invalid_status", lambda: Session(agent_id="a", status="running")),  # type: ignore[arg-type]
            ("validation_error", lambda: Session(agent_id="")),
            ("validation_error", lambda: Session(agent_id="a", tags=["ok", 1])),  # type: ignore[list-item]
            ("validation_error", lambda: Session(agent_id="a", created_at=datetime(2020, 1, 1))),
            ("invalid_status", lambda: Run(session_id="s", status="active")),  # type: ignore[arg-type]
            ("validation_error", lambda: Run(session_id="s", turn_count=-1)),
            ("validation_error", lambda: Run(session_id="s", cost_usd=math.nan)),
            ("validation_error", lambda: Run(session_id="")),
        ]
        for code, build in cases:
            with pytest.raises(StoreError) as info:
                build()
            assert info.value.code == code

    @pytest.mark.parametrize(
        ("method", "args", "kwargs", "code"),
        [
            ("save_session", ("not a session",), {}, "validation_error"),
            ("save_session", (None,), {}, "validation_error"),
            ("save_run", ({"id": "r"},), {}, "validation_error"),
            ("get_session", (None,), {}, "validation_error"),
            ("get_session", ("",), {}, "validation_error"),
            ("get_session", (1,), {}, "validation_error"),
            ("get_run", ("",), {}, "validation_error"),
            ("get_run", (b"r",), {}, "validation_error"),
            ("delete_session", ("",), {}, "validation_error"),
            ("delete_session", (None,), {}, "validation_error"),
            ("list_runs", ("",), {}, "validation_error"),
            ("list_runs", (3,), {}, "validation_error"),
            ("get_active_run", (None,), {}, "validation_error"),
            ("get_latest_sequence", ("",), {}, "validation_error"),
            ("get_latest_sequence", (["s"],), {}, "validation_error"),
            ("append_event", ({"type": "message_sent"},), {}, "validation_error"),
            ("append_event_with_sequence", (None,), {}, "validation_error"),
            ("append_events", (ev(),), {}, "validation_error"),
            ("append_events", ((ev(),),), {}, "validation_error"),
            ("flush", ("s", Run(session_id="s"), []), {}, "validation_error"),
            ("flush", (Session(agent_id="a"), None, []), {}, "validation_error"),
            (
                "flush",
                (Session(agent_id="a"), Run(session_id="s"), "events"),
                {},
                "validation_error",
            ),
            ("get_events", ("",), {}, "validation_error"),
            ("get_events", (None,), {}, "validation_error"),
            ("get_events", ("s",), {"after": -1}, "validation_error"),
            ("get_events", ("s",), {"after": 1.0}, "validation_error"),
            ("get_events", ("s",), {"after": "3"}, "validation_error"),
            ("get_events", ("s",), {"before": -5}, "validation_error"),
            ("get_events", ("s",), {"before": False}, "validation_error"),
            ("get_events", ("s",), {"limit": 0}, "validation_error"),
            ("get_events", ("s",), {"limit": -1}, "validation_error"),
            ("get_events", ("s",), {"limit": 2.5}, "validation_error"),
            ("get_events", ("s",), {"since": datetime(2020, 1, 1)}, "validation_error"),
            ("get_events", ("s",), {"since": "2020-01-01T00:00:00Z"}, "validation_error"),
            ("get_events", ("s",), {"type": "bogus"}, "invalid_event_type"),
            ("get_events", ("s",), {"run_id": ""}, "validation_error"),
            ("get_events", ("s",), {"wait_timeout_ms": -1}, "validation_error"),
            ("get_events", ("s",), {"wait_timeout_ms": 1.5}, "validation_error"),
        ],
    )
    async def test_wrong_arguments_are_typed_errors(
        self,
        store: SessionStoreBase,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        code: str,
    ) -> None:
        await store.append_event(ev())
        await raises(code, getattr(store, method)(*args, **kwargs))
        await self._assert_untouched(store)

    # ---------------------------------------------------------------- 3.9 get_events

    async def test_get_events_filters(self, store: SessionStoreBase) -> None:
        base = [
            ev(run_id="r1", type=EventType.MESSAGE_SENT, timestamp=T0),
            ev(run_id="r1", type=EventType.TOOL_CALL_STARTED, timestamp=T0 + timedelta(seconds=1)),
            ev(run_id="r2", type=EventType.MESSAGE_SENT, timestamp=T0 + timedelta(seconds=2)),
            ev(type=EventType.MESSAGE_SENT, timestamp=T0 - timedelta(seconds=5)),
            ev(run_id="r1", type=EventType.MESSAGE_SENT, timestamp=T0 + timedelta(seconds=3)),
            ev("other", run_id="r1", type=EventType.MESSAGE_SENT, timestamp=T0),
        ]
        out = await store.append_events(base)
        mine = out[:5]
        assert await store.get_events("ses_a") == mine
        assert await store.get_events("ses_a", run_id="r1") == [mine[0], mine[1], mine[4]]
        assert await store.get_events("ses_a", type="message_sent") == [
            mine[0],
            mine[2],
            mine[3],
            mine[4],
        ]
        assert await store.get_events("ses_a", run_id="r1", type=EventType.MESSAGE_SENT) == [
            mine[0],
            mine[4],
        ]
        assert await store.get_events("ses_a", since=T0 + timedelta(seconds=1)) == [
            mine[1],
            mine[2],
            mine[4],
        ]
        assert await store.get_events("ses_a", after=2) == mine[2:]
        assert await store.get_events("ses_a", before=3) == mine[:2]
        assert await store.get_events("ses_a", after=1, before=5) == mine[1:4]
        assert await store.get_events("ses_a", after=5) == []
        assert await store.get_events("ses_a", before=1) == []
        assert await store.get_events("ses_a", before=0) == []
        assert await store.get_events("ses_a", limit=2) == mine[:2]
        assert await store.get_events("ses_a", type="message_sent", after=1, limit=2) == [
            mine[2],
            mine[3],
        ]
        assert await store.get_events("ses_a", run_id="nope") == []
        assert await store.get_events("ses_a", type="policy_violation") == []
        assert await store.get_events("unknown") == []
        assert await store.get_events("ses_a", wait_timeout_ms=0) == mine

    # ---------------------------------------------------------------- 3.9 long-poll

    async def test_long_poll_returns_at_once_when_not_empty(self, store: SessionStoreBase) -> None:
        e = await store.append_event_with_sequence(ev())
        start = time.monotonic()
        assert await store.get_events("ses_a", wait_timeout_ms=60_000) == [e]
        assert time.monotonic() - start < 30  # not the full wait

    async def test_long_poll_times_out_empty(self, store: SessionStoreBase) -> None:
        start = time.monotonic()
        assert await store.get_events("ses_a", wait_timeout_ms=150) == []
        assert time.monotonic() - start >= 0.14

    async def test_long_poll_wakes_on_matching_append_only(self, store: SessionStoreBase) -> None:
        await store.append_event(ev())
        reader = asyncio.create_task(
            store.get_events("ses_a", after=1, type="tool_call_started", wait_timeout_ms=30_000)
        )
        await asleep(store, "ses_a")
        # other sessions, and events the filters exclude, do not end the wait
        await store.append_event(ev("ses_other", type=EventType.TOOL_CALL_STARTED))
        woken = deliveries(store, "ses_a")
        await store.append_event(ev(type=EventType.MESSAGE_SENT))
        await settled(store, "ses_a", woken, [reader])
        assert not reader.done()
        # other operations go on while the reader waits
        await store.save_session(Session(id="ses_a", agent_id="a"))
        assert (await store.get_session("ses_a")).agent_id == "a"
        hit = await store.append_event_with_sequence(ev(type=EventType.TOOL_CALL_STARTED))
        assert await asyncio.wait_for(reader, 10) == [hit]

    async def test_many_readers_all_wake(self, store: SessionStoreBase) -> None:
        readers = [
            asyncio.create_task(store.get_events("ses_a", wait_timeout_ms=30_000))
            for _ in range(20)
        ]
        await asleep(store, "ses_a", 20)
        e = await store.append_event_with_sequence(ev())
        assert await asyncio.wait_for(asyncio.gather(*readers), 10) == [[e]] * 20

    async def test_close_releases_waiting_readers(self, store_url: str) -> None:
        store = open_session_store(store_url)
        await store.open()
        reader = asyncio.create_task(store.get_events("ses_a", wait_timeout_ms=60_000))
        await asleep(store, "ses_a")
        await store.close()
        assert await asyncio.wait_for(reader, 10) == []

    async def test_cancelled_reader_leaves_store_usable(self, store: SessionStoreBase) -> None:
        reader = asyncio.create_task(store.get_events("ses_a", wait_timeout_ms=60_000))
        await asleep(store, "ses_a")
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        second = asyncio.create_task(store.get_events("ses_a", wait_timeout_ms=30_000))
        await asleep(store, "ses_a")
        e = await store.append_event_with_sequence(ev())
        assert await asyncio.wait_for(second, 10) == [e]

    # ---------------------------------------------------------------- 3.11 stream_events

    async def test_stream_events_pages_then_follows(self, store: SessionStoreBase) -> None:
        first = await store.append_events([ev(data={"i": i}) for i in range(5)])
        got: list[Event] = []

        async def consume() -> None:
            async for e in store.stream_events("ses_a", after=2, page_size=2):
                got.append(e)
                if len(got) == 6:
                    return

        task = asyncio.create_task(consume())
        await asleep(store, "ses_a")
        later = await store.append_events([ev(data={"i": i}) for i in range(5, 8)])
        await asyncio.wait_for(task, 10)
        assert got == first[2:] + later

    # ---------------------------------------------------------------- concurrency (tasks)

    async def test_concurrent_tasks_get_gapless_sequences(self, store: SessionStoreBase) -> None:
        async def writer(w: int) -> list[int]:
            out = []
            for i in range(20):
                e = await store.append_event_with_sequence(ev(data={"w": w, "i": i}))
                out.append(e.sequence_number or 0)
            return out

        results = await asyncio.gather(*(writer(w) for w in range(25)))
        assert sorted(s for r in results for s in r) == list(range(1, 501))
        assert all(r == sorted(r) for r in results)
        assert seqs(await store.get_events("ses_a")) == list(range(1, 501))

    async def test_concurrent_same_new_id_is_stored_once(self, store: SessionStoreBase) -> None:
        copies = [ev(id="same", data={"copy": i}) for i in range(30)]
        results = await asyncio.gather(*(store.append_event_with_sequence(c) for c in copies))
        assert len({(r.id, r.sequence_number, r.data["copy"]) for r in results}) == 1
        assert len(await store.get_events("ses_a")) == 1


class DurableSessionStoreContract(SessionStoreContract, DurableV2Contract):
    """Rules that need one database shared by several store objects and OS processes."""

    async def test_second_store_object_sees_writes(
        self, store: SessionStoreBase, store_url: str
    ) -> None:
        async with open_session_store(store_url) as other:
            await store.save_session(Session(id="s", agent_id="a"))
            e = await store.append_event_with_sequence(ev("s"))
            assert await other.get_events("s") == [e]
            assert (await other.get_session("s")).agent_id == "a"
            e2 = await other.append_event_with_sequence(ev("s"))
            assert e2.sequence_number == 2

    async def test_long_poll_woken_by_another_store_object(
        self, store: SessionStoreBase, store_url: str
    ) -> None:
        async with open_session_store(store_url) as other:
            reader = asyncio.create_task(store.get_events("s", after=0, wait_timeout_ms=60_000))
            await asleep(store, "s")
            await other.append_event(ev("s_other"))
            e = await other.append_event_with_sequence(ev("s"))
            appended = time.monotonic()
            # Within seconds, not at the 60 s timeout's last look: the wake path did it.
            assert await asyncio.wait_for(reader, 20) == [e]
            assert time.monotonic() - appended < 5

    async def test_long_poll_woken_by_another_process(
        self, store: SessionStoreBase, store_url: str
    ) -> None:
        started = time.time()

        async def read() -> tuple[list[Event], float]:
            got = await store.get_events("s", type="tool_call_started", wait_timeout_ms=60_000)
            return got, time.time()

        reader = asyncio.create_task(read())
        loop = asyncio.get_running_loop()
        appended_at = await loop.run_in_executor(
            None,
            workers.run_processes,
            workers.append_after_barrier,
            [(store_url, "s", "tool_call_started")],
        )
        got, woke_at = await asyncio.wait_for(reader, 60)
        assert [e.type for e in got] == [EventType.TOOL_CALL_STARTED]
        assert appended_at[0] > started  # it was an append during the wait that woke us
        assert woke_at - appended_at[0] < 5, "woken only by the timeout's last look"

    async def test_processes_appending_one_by_one_get_1_to_1000(
        self, store: SessionStoreBase, store_url: str
    ) -> None:
        results = await asyncio.get_running_loop().run_in_executor(
            None,
            workers.run_processes,
            workers.append_one_by_one,
            [(store_url, "shared", 250, f"p{p}") for p in range(4)],
        )
        numbers = [seq for per_proc in results for _, seq in per_proc]
        assert sorted(numbers) == list(range(1, 1001))
        for per_proc in results:  # each writer sees its own appends in order
            assert [s for _, s in per_proc] == sorted(s for _, s in per_proc)
        stored = await store.get_events("shared")
        assert seqs(stored) == list(range(1, 1001))
        by_id = {e.id: e.sequence_number for e in stored}
        assert by_id == {i: s for per_proc in results for i, s in per_proc}
        assert await store.get_latest_sequence("shared") == 1000

    async def test_processes_appending_batches_get_contiguous_blocks(
        self, store: SessionStoreBase, store_url: str
    ) -> None:
        results = await asyncio.get_running_loop().run_in_executor(
            None,
            workers.run_processes,
            workers.append_in_batches,
            [(store_url, "shared", 25, 10, f"p{p}") for p in range(4)],
        )
        blocks = [[s for _, s in batch] for per_proc in results for batch in per_proc]
        for block in blocks:
            assert block == list(range(block[0], block[0] + 10))
        assert sorted(s for block in blocks for s in block) == list(range(1, 1001))
        assert seqs(await store.get_events("shared")) == list(range(1, 1001))

    async def test_processes_appending_the_same_new_ids_store_each_once(
        self, store: SessionStoreBase, store_url: str
    ) -> None:
        ids = [f"evt_shared_{i}" for i in range(100)]
        argsets = [
            (store_url, "shared", ids if p % 2 == 0 else list(reversed(ids)), f"p{p}")
            for p in range(4)
        ]
        results = await asyncio.get_running_loop().run_in_executor(
            None, workers.run_processes, workers.append_shared_ids, argsets
        )
        views = [{i: (s, w) for i, s, w in per_proc} for per_proc in results]
        assert all(v == views[0] for v in views), "callers disagree on a stored event"
        stored = await store.get_events("shared")
        assert seqs(stored) == list(range(1, 101))
        assert {e.id: (e.sequence_number, e.data["writer"]) for e in stored} == views[0]

    async def test_failed_flushes_in_several_processes_leave_nothing(
        self, store: SessionStoreBase, store_url: str
    ) -> None:
        results = await asyncio.get_running_loop().run_in_executor(
            None,
            workers.run_processes,
            workers.flush_some_bad,
            [(store_url, f"p{p}", 10) for p in range(4)],
        )
        for per_proc in results:
            for i, (sid, outcome) in enumerate(per_proc):
                if i % 2:
                    assert outcome == "validation_error"
                    await raises("session_not_found", store.get_session(sid))
                    await raises("run_not_found", store.get_run(f"run_{sid}"))
                    assert await store.get_latest_sequence(sid) == 0
                else:
                    assert outcome == "ok"
                    assert (await store.get_session(sid)).id == sid
                    assert seqs(await store.get_events(sid)) == [1, 2, 3, 4, 5]
