"""Contract 7 and 8: queries with keyset pages, summaries, retention, health.

Mixed into ``SessionStoreContract``, so every backend answers the same questions the same way.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ..base import SessionStoreBase
from ..errors import StoreError
from ..models import Event, EventType, Run, RunStatus, Session, SessionStatus
from ..retention import RetentionPolicy

__all__ = ["QueryContract"]

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def _ev(session_id: str, type: Any = EventType.MESSAGE_SENT, **kw: Any) -> Event:
    return Event(type=type, session_id=session_id, **kw)


async def _raises(code: str, awaitable: Any) -> StoreError:
    with pytest.raises(StoreError) as info:
        await awaitable
    assert info.value.code == code, f"expected [{code}], got {info.value!s}"
    return info.value


async def _sessions(store: SessionStoreBase, n: int, **kw: Any) -> list[Session]:
    made = [
        Session(
            id=f"s{i:04d}",
            agent_id=f"agent{i % 3}",
            created_at=NOW + i * DAY / 1000,
            updated_at=NOW + ((i * 7) % n) * DAY / 1000,
            **kw,
        )
        for i in range(n)
    ]
    for start in range(0, n, 200):
        await asyncio.gather(*(store.save_session(s) for s in made[start : start + 200]))
    return made


class QueryContract:
    # ---------------------------------------------------------------- 7.1 / 7.2 sessions

    @pytest.mark.parametrize("order_by", ["updated_at_desc", "created_at_asc", "created_at_desc"])
    async def test_paging_visits_every_session_once_while_more_arrive(
        self, store: SessionStoreBase, order_by: str
    ) -> None:
        made = await _sessions(store, 10_000)
        seen: list[str] = []
        cursor = None
        page_no = 0
        while True:
            page = await store.search_sessions(order_by=order_by, limit=487, cursor=cursor)
            seen += [s.id for s in page.items]
            if page_no % 2 == 0:  # sessions keep arriving while we page
                await store.save_session(
                    Session(
                        id=f"new{page_no}",
                        agent_id="late",
                        created_at=NOW - DAY,
                        updated_at=NOW - DAY,
                    )
                )
            page_no += 1
            if page.cursor is None:
                break
            cursor = page.cursor
        old = [sid for sid in seen if sid.startswith("s")]
        assert sorted(old) == sorted(s.id for s in made)  # each exactly once
        assert len(seen) == len(set(seen))
        key = {
            "updated_at_desc": lambda s: (s.updated_at, s.id),
            "created_at_asc": lambda s: (s.created_at, s.id),
            "created_at_desc": lambda s: (s.created_at, s.id),
        }[order_by]
        expected = sorted(made, key=key, reverse=order_by.endswith("desc"))
        assert old == [s.id for s in expected]

    async def test_filters_totals_and_deleted(self, store: SessionStoreBase) -> None:
        await store.save_session(
            Session(
                id="a",
                agent_id="x",
                status=SessionStatus.ACTIVE,
                tags=["t1", "t2"],
                created_at=NOW,
                updated_at=NOW,
            )
        )
        await store.save_session(
            Session(
                id="b",
                agent_id="x",
                status=SessionStatus.COMPLETED,
                tags=["t1"],
                created_at=NOW + DAY,
                updated_at=NOW + DAY,
            )
        )
        await store.save_session(
            Session(
                id="c",
                agent_id="y",
                created_at=NOW + 2 * DAY,
                updated_at=NOW + 2 * DAY,
                deleted_at=NOW + 2 * DAY,
            )
        )

        async def ids(**kw: Any) -> list[str]:
            return [s.id for s in (await store.search_sessions(**kw)).items]

        assert await ids() == ["b", "a"]
        assert await ids(include_deleted=True) == ["c", "b", "a"]
        assert await ids(agent_id="x", order_by="created_at_asc") == ["a", "b"]
        assert await ids(status="active") == ["a"]
        assert await ids(status=["active", "completed"], order_by="created_at_asc") == ["a", "b"]
        assert await ids(tags=["t1"]) == ["b", "a"]
        assert await ids(tags=["t1", "t2"]) == ["a"]
        assert await ids(created_after=NOW + DAY) == ["b"]  # bounds are inclusive
        assert await ids(created_before=NOW) == ["a"]
        assert await ids(updated_after=NOW, updated_before=NOW + DAY) == ["b", "a"]
        page = await store.search_sessions(agent_id="x", include_total=True, limit=1)
        assert page.total_count == 2 and len(page.items) == 1 and page.cursor
        assert (await store.search_sessions()).total_count is None
        rest = await store.search_sessions(agent_id="x", limit=1, cursor=page.cursor)
        assert [s.id for s in rest.items] == ["a"] and rest.cursor  # a full page has a cursor
        end = await store.search_sessions(agent_id="x", limit=1, cursor=rest.cursor)
        assert end.items == [] and end.cursor is None

    async def test_updated_at_desc_lists_recent_activity_first(
        self, store: SessionStoreBase
    ) -> None:
        old = datetime(2020, 1, 1, tzinfo=UTC)
        for sid in ("p", "q", "r"):
            await store.save_session(Session(id=sid, agent_id="a", created_at=old, updated_at=old))
        await store.append_event(_ev("q"))
        await store.save_run(Run(session_id="r"))
        await store.append_event(_ev("q"))
        ids = [s.id for s in (await store.search_sessions()).items]
        assert ids == ["q", "r", "p"]

    async def test_cursors_are_checked(self, store: SessionStoreBase) -> None:
        await _sessions(store, 5)
        page = await store.search_sessions(limit=2)
        assert page.cursor
        good = page.cursor
        raw = json.loads(base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)))

        def forge(fields: Any) -> str:
            text = json.dumps(fields).encode()
            return base64.urlsafe_b64encode(text).decode().rstrip("=")

        bad = [
            "",
            "not base64 ✓",
            "!!!!",
            good[:-3] + "A",
            forge({"a": 1}),
            forge(raw[:3]),
            forge([*raw[:2], "1", raw[3]]),
            forge([*raw[:3], 5]),
            forge([*raw, 1]),
        ]
        for cursor in bad:
            await _raises("invalid_cursor", store.search_sessions(limit=2, cursor=cursor))
        await _raises(
            "invalid_cursor", store.search_sessions(order_by="created_at_asc", cursor=good)
        )
        await _raises("invalid_cursor", store.search_runs(cursor=good))
        await _raises("invalid_cursor", store.search_events(cursor=good))
        await _raises("invalid_cursor", store.search_sessions(cursor=123))  # type: ignore[arg-type]
        # a position, bound to method and ordering only: other filters continue from it
        more = await store.search_sessions(limit=2, cursor=good, agent_id="agent1")
        assert all(s.agent_id == "agent1" for s in more.items)

    async def test_query_arguments_are_checked(self, store: SessionStoreBase) -> None:
        naive = datetime(2026, 1, 1)
        calls: list[Any] = [
            store.search_sessions(limit=0),
            store.search_sessions(limit=1001),
            store.search_sessions(limit=True),
            store.search_sessions(order_by="id"),
            store.search_sessions(created_after=naive),
            store.search_sessions(tags="t1"),  # type: ignore[arg-type]
            store.search_sessions(include_deleted=1),  # type: ignore[arg-type]
            store.search_runs(min_tokens=-1),
            store.search_runs(order_by="cost"),
            store.search_events(types=["message_sent", "bogus"]),
            store.search_events(since=naive),
            store.count_events(session_ids="s"),  # one str is one id: allowed below
            store.get_usage_summary(until=naive),
            store.get_cost_summary(pricing={"p": {"m": {"input": -1, "output": 1}}}),
            store.get_cost_summary(pricing={"p": {"m": {"input": 1}}}),
        ]
        codes = []
        for call in calls:
            try:
                await call
                codes.append("ok")
            except StoreError as err:
                codes.append(err.code)
        assert codes[:11] == ["validation_error"] * 9 + ["invalid_event_type", "validation_error"]
        assert codes[11] == "ok"
        assert codes[12:] == ["validation_error"] * 3
        await _raises("invalid_status", store.search_sessions(status="sleeping"))
        await _raises("invalid_status", store.search_runs(status=["running", "x"]))
        await _raises("session_not_found", store.get_session_stats("nobody"))

    # ---------------------------------------------------------------- 7.3 / 7.5 / 7.6

    async def _runs(self, store: SessionStoreBase) -> None:
        await store.save_session(Session(id="s1", agent_id="alpha"))
        await store.save_session(Session(id="s2", agent_id="beta"))
        runs = [
            Run(
                id="r1",
                session_id="s1",
                status=RunStatus.COMPLETED,
                started_at=NOW,
                provider="anthropic",
                provider_metadata={"model": "claude-sonnet-4"},
                token_usage={"input_tokens": 1000, "output_tokens": 500},
            ),
            Run(
                id="r2",
                session_id="s1",
                status=RunStatus.FAILED,
                started_at=NOW + DAY,
                provider="anthropic",
                provider_metadata={"model": "claude-sonnet-4"},
                token_usage={"input_tokens": 10, "output_tokens": 5, "total_tokens": 20},
                cost_usd=0.5,
            ),
            Run(
                id="r3",
                session_id="s1",
                status=RunStatus.RUNNING,
                started_at=NOW + 2 * DAY,
                provider="openai",
                provider_metadata={"model": "my-own-model"},
                token_usage={"input_tokens": "lots", "output_tokens": 7},
            ),
            Run(
                id="r4",
                session_id="s2",
                status=RunStatus.COMPLETED,
                started_at=NOW + 3 * DAY,
                token_usage={},
            ),
        ]
        for run in runs:
            await store.save_run(run)
        await store.append_events(
            [_ev("s1", timestamp=NOW + i * DAY, run_id="r1") for i in (3, 1, 2)]
        )

    async def test_session_stats(self, store: SessionStoreBase) -> None:
        await self._runs(store)
        stats = await store.get_session_stats("s1")
        assert stats.event_count == 3 and stats.run_count == 3 and stats.latest_sequence == 3
        assert stats.token_totals == {
            "input_tokens": 1010,
            "output_tokens": 512,
            "total_tokens": 1527,
        }
        assert stats.cost_usd == 0.5
        assert stats.providers_used == ["anthropic", "openai"]
        assert (stats.first_event_at, stats.last_event_at) == (NOW + DAY, NOW + 3 * DAY)
        assert stats.status_counts == {"completed": 1, "failed": 1, "running": 1}
        empty = await store.get_session_stats("s2")
        assert empty.event_count == 0 and empty.first_event_at is None
        assert empty.cost_usd is None and empty.providers_used == []

    async def test_usage_and_cost_summaries(self, store: SessionStoreBase) -> None:
        await self._runs(store)
        usage = await store.get_usage_summary()
        assert (usage.total_input_tokens, usage.total_output_tokens, usage.total_tokens) == (
            1010,
            512,
            1527,
        )
        assert usage.run_count == 4
        assert usage.by_provider["anthropic"] == {
            "input_tokens": 1010,
            "output_tokens": 505,
            "total_tokens": 1520,
            "run_count": 2,
        }
        assert usage.by_provider["unknown"]["run_count"] == 1
        assert (await store.get_usage_summary(agent_id="beta")).run_count == 1
        assert (await store.get_usage_summary(since=NOW + DAY, until=NOW + 2 * DAY)).run_count == 2
        assert (await store.get_usage_summary(provider="openai")).total_tokens == 7
        cost = await store.get_cost_summary()
        # r1 priced: 1000 * 3 + 500 * 15 per million; r2 its own 0.5; r3, r4 unmapped
        assert cost.total_cost_usd == pytest.approx(0.5 + (3000 + 7500) / 1e6)
        assert (cost.run_count, cost.unmapped_runs) == (4, 2)
        assert cost.by_provider == {
            "anthropic": {"cost_usd": pytest.approx(0.5105), "run_count": 2}
        }
        assert cost.by_model["claude-sonnet-4"]["input_tokens"] == 1010
        mine = await store.get_cost_summary(
            pricing={"openai": {"my-own-model": {"input": 1_000_000.0, "output": 2_000_000.0}}}
        )
        assert mine.unmapped_runs == 1
        assert mine.by_model["my-own-model"]["cost_usd"] == pytest.approx(14.0)
        assert (await store.get_cost_summary(session_id="s2")).unmapped_runs == 1

    async def test_search_runs(self, store: SessionStoreBase) -> None:
        await self._runs(store)

        async def ids(**kw: Any) -> list[str]:
            return [r.id for r in (await store.search_runs(**kw)).items]

        assert await ids() == ["r4", "r3", "r2", "r1"]
        assert await ids(order_by="started_at_asc") == ["r1", "r2", "r3", "r4"]
        assert await ids(order_by="token_usage_desc") == ["r1", "r2", "r3", "r4"]
        assert await ids(session_id="s1", status=["failed", "running"]) == ["r3", "r2"]
        assert await ids(agent_id="beta") == ["r4"]
        assert await ids(provider="anthropic", started_after=NOW + DAY) == ["r2"]
        assert await ids(min_tokens=20) == ["r2", "r1"]
        first = await store.search_runs(limit=3, order_by="token_usage_desc")
        rest = await store.search_runs(limit=3, order_by="token_usage_desc", cursor=first.cursor)
        assert [r.id for r in first.items + rest.items] == ["r1", "r2", "r3", "r4"]

    # ---------------------------------------------------------------- 7.7 events

    async def test_search_and_count_events(self, store: SessionStoreBase) -> None:
        t = [NOW + i * timedelta(seconds=1) for i in range(6)]
        await store.append_events(
            [
                _ev(
                    "e1",
                    id="k4",
                    timestamp=t[3],
                    run_id="ra",
                    provider="anthropic",
                    correlation_id="c1",
                ),
                _ev("e1", EventType.TOOL_CALL_STARTED, id="k2", timestamp=t[1], run_id="ra"),
                _ev("e2", id="k1", timestamp=t[1], provider="openai"),
                _ev("e2", EventType.ERROR_OCCURRED, id="k5", timestamp=t[5], correlation_id="c1"),
                _ev("e3", id="k0", timestamp=t[0]),
            ]
        )

        async def ids(**kw: Any) -> list[str]:
            return [e.id for e in (await store.search_events(**kw)).items]

        assert await ids() == ["k0", "k1", "k2", "k4", "k5"]  # the tie at t[1] breaks by id
        assert await ids(order_by="timestamp_desc", limit=2) == ["k5", "k4"]
        assert await ids(order_by="timestamp_desc") == ["k5", "k4", "k2", "k1", "k0"]
        assert await ids(order_by="sequence_asc") == ["k0", "k1", "k4", "k2", "k5"]
        assert await ids(session_ids=["e2"], types="error_occurred") == ["k5"]
        assert await ids(session_ids=[], providers=["openai", "anthropic"]) == ["k1", "k4"]
        assert await ids(run_ids=["ra"], since=t[2]) == ["k4"]
        assert await ids(correlation_id="c1", until=t[4]) == ["k4"]
        assert await ids(types=["tool_call_started", "error_occurred"]) == ["k2", "k5"]
        assert await store.count_events() == 5
        assert await store.count_events(types=["message_sent"], session_ids=["e1", "e2"]) == 2
        seen: list[str] = []
        cursor = None
        while True:
            page = await store.search_events(limit=2, cursor=cursor, order_by="timestamp_desc")
            seen += [e.id for e in page.items]
            if not page.cursor:
                break
            cursor = page.cursor
        assert len(seen) == 5 == len(set(seen))

    # ---------------------------------------------------------------- 8 retention

    async def _aged(self, store: SessionStoreBase) -> None:
        old = NOW - 100 * DAY
        specs = [
            ("done", SessionStatus.COMPLETED, [], old),
            ("busy", SessionStatus.ACTIVE, [], old),
            ("kept", SessionStatus.COMPLETED, ["pinned"], old),
            ("fresh", SessionStatus.COMPLETED, [], NOW - DAY),
            ("gone", SessionStatus.FAILED, [], old),
        ]
        for sid, status, tags, updated in specs:
            deleted = NOW - 40 * DAY if sid == "gone" else None
            await store.save_session(
                Session(
                    id=sid,
                    agent_id="a",
                    status=status,
                    tags=tags,
                    created_at=old,
                    updated_at=updated,
                    deleted_at=deleted,
                )
            )
        await store.save_run(Run(id="gone_run", session_id="gone", started_at=old))
        await store.append_events([_ev("gone"), _ev("gone")])
        await store.save_session(
            Session(
                id="gone",
                agent_id="a",
                status=SessionStatus.FAILED,
                created_at=old,
                updated_at=old,
                deleted_at=NOW - 40 * DAY,
            )
        )

    async def test_soft_and_hard_delete(self, store: SessionStoreBase) -> None:
        await self._aged(store)
        policy = RetentionPolicy()
        dry = await store.run_maintenance(policy, dry_run=True, now=NOW)
        assert (dry.sessions_soft_deleted, dry.sessions_hard_deleted, dry.dry_run) == (1, 1, True)
        assert (await store.get_session("done")).deleted_at is None  # a dry run changes nothing
        assert (await store.get_session("gone")).id == "gone"
        real = await store.run_maintenance(policy, now=NOW)
        assert (real.sessions_soft_deleted, real.sessions_hard_deleted) == (1, 1)
        assert real.errors == [] and real.duration_ms >= 0
        assert (await store.get_session("done")).deleted_at == NOW
        assert (await store.get_session("done")).updated_at == NOW - 100 * DAY  # untouched
        for sid in ("busy", "kept", "fresh"):
            assert (await store.get_session(sid)).deleted_at is None
        await _raises("session_not_found", store.get_session("gone"))
        await _raises("run_not_found", store.get_run("gone_run"))
        assert await store.get_events("gone") == []
        assert [s.id for s in (await store.search_sessions(include_deleted=False)).items] == [
            "fresh",
            "kept",
            "busy",
        ]
        again = await store.run_maintenance(policy, now=NOW)
        assert (again.sessions_soft_deleted, again.sessions_hard_deleted) == (0, 0)
        later = await store.hard_delete_expired_sessions(policy, now=NOW + 31 * DAY)
        assert later == 1
        await _raises("session_not_found", store.get_session("done"))

    async def test_hard_delete_works_through_every_batch(self, store: SessionStoreBase) -> None:
        for i in range(23):
            await store.save_session(Session(id=f"x{i}", agent_id="a", deleted_at=NOW - 60 * DAY))
        count = await store.hard_delete_expired_sessions(RetentionPolicy(batch_size=5), now=NOW)
        assert count == 23
        assert (await store.search_sessions(include_deleted=True)).items == []

    async def test_pruning_keeps_protected_types_and_the_counter(
        self, store: SessionStoreBase
    ) -> None:
        await store.save_session(Session(id="p", agent_id="a"))
        kinds = [
            EventType.SESSION_CREATED,
            EventType.MESSAGE_SENT,
            EventType.MESSAGE_STREAMED,
            EventType.RUN_STARTED,
            EventType.MESSAGE_STREAMED,
            EventType.MESSAGE_SENT,
            EventType.TOKEN_USAGE_UPDATED,
            EventType.ERROR_OCCURRED,
            EventType.MESSAGE_SENT,
            EventType.RUN_COMPLETED,
        ]
        stored = await store.append_events([_ev("p", k, id=f"p{i}") for i, k in enumerate(kinds)])
        await store.append_event(
            Event(type=EventType.HISTORY_REWOUND, session_id="p", data={"to_sequence": 10})
        )
        policy = RetentionPolicy(max_events_per_session=6)
        dry = await store.run_maintenance(policy, dry_run=True, now=NOW)
        assert dry.events_pruned == 5 and len(await store.get_events("p")) == 11
        assert await store.prune_session_events("p", policy) == 5
        left = await store.get_events("p")
        # streamed and usage first (3), then the oldest plain messages (2, 6)
        assert [e.sequence_number for e in left] == [1, 4, 8, 9, 10, 11]
        assert await store.get_latest_sequence("p") == 11
        assert (await store.append_event_with_sequence(_ev("p"))).sequence_number == 12
        again = await store.append_event_with_sequence(_ev("p", id="p1"))  # a pruned id
        assert again.sequence_number == 13
        tight = RetentionPolicy(max_events_per_session=1)
        assert await store.prune_session_events("p", tight) == 3  # then only protected ones remain
        assert {e.type for e in await store.get_events("p")} <= {
            "session_created",
            "run_started",
            "error_occurred",
            "run_completed",
            "history_rewound",
        }
        assert stored[0].sequence_number == 1

    async def test_maintenance_steps_are_isolated_and_policies_checked(
        self, store: SessionStoreBase
    ) -> None:
        for bad in (
            {"max_events_per_session": 0},
            {"hard_delete_after_days": -1},
            {"batch_size": 0},
            {"exempt_statuses": ["asleep"]},
            {"prune_event_types_first": ["nope"]},
            {"exempt_tags": "pinned"},
            {"max_completed_session_age_days": True},
        ):
            with pytest.raises(StoreError):
                RetentionPolicy(**bad)
        with pytest.raises(StoreError):
            RetentionPolicy.from_dict({"max_events": 5})
        await _raises("validation_error", store.run_maintenance("policy"))  # type: ignore[arg-type]
        await _raises(
            "validation_error", store.run_maintenance(RetentionPolicy(), now=datetime(2026, 1, 1))
        )
        none = RetentionPolicy(max_completed_session_age_days=None, hard_delete_after_days=None)
        report = await store.run_maintenance(none)
        assert (
            report.sessions_soft_deleted,
            report.sessions_hard_deleted,
            report.events_pruned,
        ) == (0, 0, 0)

    async def test_health_check_finds_runs_without_a_session(self, store: SessionStoreBase) -> None:
        await store.save_session(Session(id="ok", agent_id="a"))
        await store.save_run(Run(id="fine", session_id="ok"))
        await store.append_event(_ev("no_record_is_fine"))
        assert await store.health_check() == []
        await store.save_run(Run(id="orphan", session_id="missing"))
        problems = await store.health_check()
        assert len(problems) == 1 and "orphan" in problems[0]
