"""Edges of the contract every backend must hold: extreme values, closing, long-poll corners.

Mixed into ``SessionStoreContract``; each test names the rule it pins.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ..base import SessionStoreBase
from ..errors import StoreError
from ..models import Event, EventType, Run, Session
from ..redaction import RedactionConfig
from ..transfer import SessionExport
from ..urls import open_session_store
from .waiting import (
    QueryCount,
    asleep,
    deliveries,
    elsewhere,
    inner,
    settled,
    until,
    wake_unsure,
)

__all__ = ["EdgeContract"]

#: The contract's range: year 1 to 9999, to the microsecond (contract 2).
FIRST = datetime(1, 1, 1, tzinfo=UTC)
LAST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
ONE = timedelta(microseconds=1)


def _ev(session_id: str = "s", type: Any = EventType.MESSAGE_SENT, **kw: Any) -> Event:
    return Event(type=type, session_id=session_id, **kw)


_until = until
_inner = inner


async def _code(awaitable: Awaitable[Any]) -> str:
    with pytest.raises(StoreError) as info:
        await awaitable
    return info.value.code


class EdgeContract:
    # ---------------------------------------------------------------- timestamps (2)

    async def test_extreme_timestamps_round_trip_and_filter_exactly(
        self, store: SessionStoreBase
    ) -> None:
        old = Session(id="old", agent_id="a", created_at=FIRST, updated_at=LAST)
        await store.save_session(old)
        await store.save_session(
            Session(id="y999", agent_id="a", created_at=datetime(999, 9, 9, tzinfo=UTC))
        )
        assert await store.get_session("old") == old
        listed = await store.list_sessions()
        assert [s.id for s in listed] == ["old", "y999"]
        run = Run(id="r", session_id="x", started_at=FIRST, ended_at=LAST)
        await store.save_run(run)
        assert await store.get_run("r") == run
        stamps = [
            FIRST,
            FIRST + ONE,
            datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            datetime(1970, 1, 1, tzinfo=UTC),
            LAST - ONE,
            LAST,
        ]
        events = await store.append_events([_ev("t", timestamp=t) for t in stamps])
        assert [e.timestamp for e in await store.get_events("t")] == stamps
        for i, t in enumerate(stamps):
            got = await store.get_events("t", since=t)
            assert got == events[i:], f"since={t.isoformat()}"
            assert await store.get_events("t", since=t, order="desc", limit=1) == [events[-1]]
        assert await store.get_events("t", since=LAST) == [events[-1]]

    # ---------------------------------------------------------------- ids

    async def test_odd_ids_round_trip_everywhere(self, store: SessionStoreBase) -> None:
        for sid in (
            "with space",
            "ünï©ødé ✓🤖",
            "a/b:c*d?[e]{f}",
            "x" * 1024,
            "é" * 512,
            "'; DROP TABLE events; --",
        ):
            await store.save_session(Session(id=sid, agent_id=sid))
            assert (await store.get_session(sid)).agent_id == sid
            run = Run(id="r" + sid[1:], session_id=sid)
            await store.save_run(run)
            assert await store.list_runs(sid) == [run]
            e = await store.append_event_with_sequence(
                _ev(sid, id="e" + sid[1:], run_id=run.id, correlation_id=sid)
            )
            assert await store.get_events(sid, run_id=run.id) == [e]
            assert (await store.list_sessions(agent_id=sid))[0].id == sid
            await store.delete_session(sid)
            assert await store.get_events(sid) == []

    async def test_ids_longer_than_1024_bytes_are_refused(self, store: SessionStoreBase) -> None:
        long_ascii, long_utf8 = "x" * 1025, "é" * 513
        for bad in (long_ascii, long_utf8):
            with pytest.raises(StoreError) as info:
                Session(id=bad, agent_id="a")
            assert info.value.code == "validation_error" and "1024" in info.value.message
            for field in ("session_id", "id", "run_id"):
                with pytest.raises(StoreError):
                    _ev(**{field: bad})
            with pytest.raises(StoreError):
                Run(session_id=bad)
            assert await _code(store.get_events(bad)) == "validation_error"
            assert await _code(store.get_session(bad)) == "validation_error"
        assert await store.get_latest_sequence("s") == 0

    # ---------------------------------------------------------------- closing (1)

    async def test_operations_after_close_are_storage_errors(self, store_url: str) -> None:
        store: SessionStoreBase = open_session_store(store_url)
        async with store:
            await store.append_event(_ev())
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: store.get_session("s"),
            lambda: store.save_session(Session(id="s", agent_id="a")),
            lambda: store.list_sessions(),
            lambda: store.append_event(_ev()),
            lambda: store.append_events([_ev()]),
            lambda: store.get_events("s"),
            lambda: store.get_latest_sequence("s"),
            lambda: store.delete_session("s"),
            lambda: store.save_run(Run(session_id="s")),
            lambda: store.export_session("s"),
        ]
        for call in calls:
            err = await _code(call())
            assert err == "storage_error"
        assert await store.get_events("s", wait_timeout_ms=5_000) == []  # released at once
        await store.close()  # a second close is harmless

    async def test_close_releases_readers_that_are_still_starting(self, store_url: str) -> None:
        store: SessionStoreBase = open_session_store(store_url)
        readers = [
            asyncio.create_task(store.get_events("s", wait_timeout_ms=30_000)) for _ in range(5)
        ]
        await asyncio.sleep(0)  # they have started opening the store
        await store.close()
        done = await asyncio.wait_for(asyncio.gather(*readers), 10)
        assert done == [[]] * 5

    # ---------------------------------------------------------------- long-poll (3.9)

    async def test_long_poll_with_every_filter(self, store: SessionStoreBase) -> None:
        t = datetime(2030, 1, 1, tzinfo=UTC)
        await store.append_events([_ev(run_id="r1"), _ev(run_id="r2")])  # 1, 2
        reader = asyncio.create_task(
            store.get_events(
                "s",
                run_id="r1",
                type="tool_call_started",
                since=t,
                after=1,
                before=10,
                limit=1,
                wait_timeout_ms=20_000,
            )
        )
        await asleep(store, "s")
        misses = [
            _ev(run_id="r2", type=EventType.TOOL_CALL_STARTED, timestamp=t),  # other run
            _ev(run_id="r1", type=EventType.TOOL_CALL_STARTED, timestamp=t - ONE),  # too early
            _ev(run_id="r1", timestamp=t),  # other type
        ]
        for miss in misses:
            woken = deliveries(store, "s")
            await store.append_event(miss)
            await settled(store, "s", woken, [reader])
            assert not reader.done()
        hit = await store.append_events(
            [_ev(run_id="r1", type=EventType.TOOL_CALL_STARTED, timestamp=t) for _ in range(2)]
        )
        assert await asyncio.wait_for(reader, 10) == hit[:1]  # limit 1
        # numbered beyond ``before``: never satisfies the wait
        late = asyncio.create_task(store.get_events("s", after=7, before=9, wait_timeout_ms=300))
        await store.append_events([_ev(), _ev(), _ev()])  # 8, 9, 10
        assert [e.sequence_number for e in await late] == [8]

    async def test_flush_and_single_appends_wake_readers(self, store: SessionStoreBase) -> None:
        for write in (
            lambda: store.append_event(_ev()),
            lambda: store.append_event_with_sequence(_ev()),
            lambda: store.flush(Session(id="s", agent_id="a"), Run(session_id="s"), [_ev()]),
        ):
            latest = await store.get_latest_sequence("s")
            reader = asyncio.create_task(
                store.get_events("s", after=latest, wait_timeout_ms=20_000)
            )
            await asleep(store, "s")
            started = time.monotonic()
            await write()
            got = await asyncio.wait_for(reader, 10)
            assert [e.sequence_number for e in got] == [latest + 1]
            assert time.monotonic() - started < 5

    async def test_identical_waiting_readers_share_one_query(self, store: SessionStoreBase) -> None:
        inner = _inner(store)
        queries = QueryCount(inner)
        readers = [
            asyncio.create_task(
                store.get_events("s", type="tool_call_started", wait_timeout_ms=30_000)
            )
            for _ in range(300)
        ]
        await asleep(store, "s", 300)
        before, woken = queries.calls, deliveries(store, "s")
        wake_unsure(store, "s")  # a wake that does not say what came: everyone re-queries
        await settled(store, "s", woken, readers)
        assert queries.calls - before == 1, f"{queries.calls - before} queries, 300 readers"
        assert not any(r.done() for r in readers)
        hit = await store.append_event_with_sequence(_ev(type=EventType.TOOL_CALL_STARTED))
        got = await asyncio.wait_for(asyncio.gather(*readers), 10)
        assert all(g == [hit] for g in got)
        got[0][0].data["changed"] = True  # every reader has its own copy
        assert "changed" not in got[1][0].data

    async def test_filtered_waiters_sleep_through_appends_they_cannot_use(
        self, store: SessionStoreBase, store_url: str
    ) -> None:
        """3.9: a wake carries what was appended; readers it cannot satisfy stay asleep.

        1,000 readers wait for a tool call while messages are appended (by this store and,
        on a shared backend, by another store object, whose commit reaches this one only
        through the backend's notification: NOTIFY, pub/sub, the SQLite watcher)."""
        inner = _inner(store)

        async def unrelated_call_ms() -> float:
            started = time.perf_counter()
            await store.get_latest_sequence("elsewhere")
            return (time.perf_counter() - started) * 1000

        queries = QueryCount(inner)
        future = datetime(2100, 1, 1, tzinfo=UTC)
        await store.append_event(_ev())  # 1
        baseline = sorted([await unrelated_call_ms() for _ in range(20)])[10]
        # 1,000; 300 through a facade that gives each waiting call a thread from a pool
        many = 300 if elsewhere(store) else 1000
        typed = [
            asyncio.create_task(
                store.get_events("s", type="tool_call_started", wait_timeout_ms=60_000)
            )
            for _ in range(many)
        ]
        by_run = asyncio.create_task(store.get_events("s", run_id="r9", wait_timeout_ms=60_000))
        late = asyncio.create_task(store.get_events("s", since=future, wait_timeout_ms=60_000))
        far = asyncio.create_task(store.get_events("s", after=1000, wait_timeout_ms=60_000))
        sentinel = asyncio.create_task(
            store.get_events("s", type="error_occurred", wait_timeout_ms=60_000)
        )
        waiters = inner._waiters
        await _until(
            lambda: waiters.sleeping("s") == many + 4,
            "the readers asleep",
        )
        before = queries.calls
        during: list[float] = []
        for i in range(20):  # 2..21: messages of another run, timestamped now
            await store.append_event(_ev(run_id="r1", data={"i": i}))
            during.append(await unrelated_call_ms())
        shared = not store_url.startswith("memory")
        async with (
            open_session_store(store_url) if shared else contextlib.nullcontext(store) as other
        ):
            await other.append_event(_ev(run_id="r1"))  # 22, from elsewhere
            # The sentinel's wake comes after every earlier one on the same channel.
            await other.append_event(_ev(type=EventType.ERROR_OCCURRED))  # 23
            assert [e.sequence_number for e in await asyncio.wait_for(sentinel, 10)] == [23]
        requeries = queries.calls - before - 1  # the sentinel's own query
        print(
            f"\n{inner.backend_name}: {many + 4} filtered waiters, 21 unrelated appends -> "
            f"{requeries} re-queries; unrelated call {baseline:.2f} ms idle, "
            f"{sorted(during)[10]:.2f} ms median / {max(during):.2f} ms max while appending"
        )
        assert requeries <= 1, f"{requeries} re-queries for appends no waiter can use"
        assert not any(t.done() for t in [*typed, by_run, late, far])
        # a match wakes the waiter it matches, within a deadline, and only that one
        hit = await store.append_event_with_sequence(_ev(run_id="r9"))  # 24
        assert await asyncio.wait_for(by_run, 10) == [hit]
        # a wake that says nothing (a lost notification) still wakes every reader
        woken = queries.calls
        wake_unsure(store, "s")
        await _until(lambda: queries.calls > woken and not inner._shared, "everyone re-querying")
        assert not any(t.done() for t in [*typed, late, far])
        call = await store.append_event_with_sequence(_ev(type=EventType.TOOL_CALL_STARTED))
        got = await asyncio.wait_for(asyncio.gather(*typed), 10)
        assert all(g == [call] for g in got)
        stamped = await store.append_event_with_sequence(_ev(timestamp=future))
        assert await asyncio.wait_for(late, 10) == [stamped]
        assert not far.done()
        far.cancel()
        with pytest.raises(asyncio.CancelledError):
            await far

    async def test_wakes_reach_readers_of_a_1024_byte_session_id(
        self, store: SessionStoreBase, store_url: str
    ) -> None:
        """A wake-up names a long session id however the backend spells it (PostgreSQL sends
        '#' + md5 past 200 characters) and still says what came."""
        sid = "L" * 1024
        shared = not store_url.startswith("memory")
        async with (
            open_session_store(store_url) if shared else contextlib.nullcontext(store) as other
        ):
            reader = asyncio.create_task(
                store.get_events(sid, type="tool_call_started", wait_timeout_ms=30_000)
            )
            await asleep(store, sid)
            woken = deliveries(store, sid)
            await other.append_event(_ev(sid))  # filtered out
            await settled(store, sid, woken, [reader])
            assert not reader.done()
            hit = await other.append_event_with_sequence(_ev(sid, type=EventType.TOOL_CALL_STARTED))
            assert await asyncio.wait_for(reader, 10) == [hit]

    # ---------------------------------------------------------------- streaming (3.11)

    async def test_stream_events_with_filters_and_cleanup(self, store: SessionStoreBase) -> None:
        await store.append_events([_ev(run_id="r1"), _ev(run_id="r2"), _ev(run_id="r1")])
        seen: list[int] = []

        async def follow() -> None:
            async for event in store.stream_events("s", run_id="r1", after=1):
                seen.append(event.sequence_number or 0)

        task = asyncio.create_task(follow())
        await _until(lambda: seen == [3], "the backlog")
        await store.append_events([_ev(run_id="r2"), _ev(run_id="r1")])
        await _until(lambda: seen == [3, 5], "the live event")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await _until(lambda: not _inner(store)._waiters, "the waiter to go")
        assert (await store.append_event_with_sequence(_ev())).sequence_number == 6

    # ---------------------------------------------------------------- delete while appending

    async def test_delete_while_appending_leaves_a_serial_outcome(
        self, store: SessionStoreBase
    ) -> None:
        for round_ in range(20):
            sid = f"d{round_}"
            await store.save_session(Session(id=sid, agent_id="a"))
            await store.append_events([_ev(sid) for _ in range(3)])
            batch = [_ev(sid) for _ in range(5)]
            results = await asyncio.gather(
                store.append_events(batch), store.delete_session(sid), return_exceptions=True
            )
            assert not any(isinstance(r, BaseException) for r in results), results
            numbers = [e.sequence_number for e in await store.get_events(sid)]
            # either the append came first (all gone) or the delete did (1..5 anew)
            assert numbers in ([], [1, 2, 3, 4, 5]), numbers
            assert await store.get_latest_sequence(sid) == len(numbers)

    # ---------------------------------------------------------------- redaction (9)

    async def test_every_write_path_redacts(self, store: SessionStoreBase) -> None:
        secret = "password=hunter2"
        inner = _inner(store)
        inner.redaction = RedactionConfig(replacement="categorized")
        try:
            one = await store.append_event_with_sequence(_ev(data={"content": secret}))
            await store.append_event(_ev(data={"content": secret}))
            batch = await store.append_events([_ev(data={"content": [secret]}), _ev()])
            flushed = await store.flush(
                Session(id="s", agent_id="a"),
                Run(session_id="s"),
                [_ev(data={"content": {"x": secret}})],
            )
            imported = Event(
                id="imp",
                type=EventType.MESSAGE_SENT,
                session_id="i",
                sequence_number=1,
                data={"content": secret},
            )
            await store.import_session(
                SessionExport(Session(id="i", agent_id="a"), [], [imported], 1)
            )
            inner.redaction = None
            await store.save_session(Session(id="raw", agent_id="a"))
            await store.append_event(_ev("raw", data={"content": secret}))
            inner.redaction = RedactionConfig()
            fork = await store.fork_session("raw", new_session_id="forked")
        finally:
            inner.redaction = None
        stored = await store.get_events("s") + await store.get_events("i")
        stored += await store.get_events(fork.id)
        assert len(stored) == 7
        for event in stored:
            assert "hunter2" not in str(event.data), event
            assert event.metadata.get("redacted") == (1 if event.data else None)
        assert one.data == {"content": "[REDACTED:password]"}
        assert batch[1].metadata == {}  # nothing to redact, nothing recorded
        assert flushed[0].data == {"content": {"x": "[REDACTED:password]"}}
        assert (await store.get_events("raw"))[0].data == {"content": secret}  # off: kept
