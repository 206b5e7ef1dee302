"""The same data in every backend answers every query identically (contract 7.8).

One dataset — sessions of several agents, statuses, tags and soft deletes; runs with every
shape of token usage, cost and model; events of several types, providers and correlation ids,
with timestamp ties — is imported into each backend. Every query of contract 7, in every
ordering and with each filter, paged to the end, must give SQLite's answer on memory,
PostgreSQL, Redis and Redis Cluster.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent_session_store import Event, Run, RunStatus, Session, SessionExport, SessionStatus
from agent_session_store.base import SessionStoreBase
from agent_session_store.models import to_event_type
from backends import BACKENDS

T0 = datetime(2026, 5, 1, tzinfo=UTC)
Opener = Callable[[str], Any]


def _dataset() -> list[SessionExport]:
    rnd = random.Random(7)
    statuses = list(SessionStatus)
    kinds = [
        "message_sent",
        "tool_call_started",
        "tool_call_completed",
        "error_occurred",
        "myapp.note",
    ]
    exports = []
    for s in range(40):
        sid = f"ses_{s:02d}"
        session = Session(
            id=sid,
            agent_id=f"agent{s % 4}",
            status=statuses[s % len(statuses)],
            tags=[t for t in ("a", "b", "pinned") if rnd.random() < 0.4],
            created_at=T0 + timedelta(minutes=s // 2),  # ties on created_at
            updated_at=T0 + timedelta(hours=rnd.randrange(30)),
            deleted_at=T0 if s % 9 == 0 else None,
        )
        runs = []
        for r in range(rnd.randrange(4)):
            usage: dict[str, Any] = rnd.choice(
                [
                    {},
                    {"input_tokens": rnd.randrange(5000), "output_tokens": rnd.randrange(900)},
                    {"input_tokens": 10, "output_tokens": 5, "total_tokens": rnd.randrange(100)},
                    {"input_tokens": "many", "output_tokens": 3.7},
                ]
            )
            runs.append(
                Run(
                    id=f"run_{s:02d}_{r}",
                    session_id=sid,
                    status=rnd.choice(list(RunStatus)),
                    started_at=T0 + timedelta(minutes=rnd.randrange(600)),
                    token_usage=usage,
                    cost_usd=rnd.choice([None, None, round(rnd.random(), 4)]),
                    provider=rnd.choice([None, "anthropic", "openai"]),
                    provider_metadata=rnd.choice(
                        [{}, {"model": "claude-sonnet-4"}, {"model": "gpt-4o"}, {"model": "x"}]
                    ),
                )
            )
        events = [
            Event(
                id=f"evt_{s:02d}_{n}",
                type=to_event_type(rnd.choice(kinds)),
                session_id=sid,
                run_id=rnd.choice([None, *[r.id for r in runs]]),
                timestamp=T0 + timedelta(seconds=rnd.randrange(50)),  # many ties
                sequence_number=n,
                provider=rnd.choice([None, "anthropic", "openai"]),
                correlation_id=rnd.choice([None, "c1", "c2"]),
            )
            for n in range(1, rnd.randrange(1, 12))
        ]
        exports.append(SessionExport(session, runs, events, len(events)))
    return exports


async def _pages(call: Callable[..., Any], **kw: Any) -> list[Any]:
    """Every page of a paged query, small pages so the cursors are exercised."""
    out: list[Any] = []
    cursor = None
    while True:
        page = await call(limit=7, cursor=cursor, **kw)
        out += [item.to_dict() for item in page.items]
        if page.cursor is None:
            return out
        cursor = page.cursor


Filters = dict[str, dict[str, Any]]
SINCE, UNTIL = T0 + timedelta(minutes=100), T0 + timedelta(minutes=400)
SESSION_FILTERS: Filters = {
    "all": {},
    "agent": {"agent_id": "agent1"},
    "status": {"status": ["active", "completed"]},
    "tags": {"tags": ["a"]},
    "created": {
        "created_after": T0 + timedelta(minutes=3),
        "created_before": T0 + timedelta(minutes=12),
    },
    "updated": {"updated_after": T0 + timedelta(hours=5)},
    "deleted": {"include_deleted": True},
}
RUN_FILTERS: Filters = {
    "all": {},
    "session": {"session_id": "ses_03"},
    "agent": {"agent_id": "agent2"},
    "provider": {"provider": "openai"},
    "status": {"status": "completed"},
    "time": {"started_after": SINCE, "started_before": UNTIL},
    "tokens": {"min_tokens": 50},
}
EVENT_FILTERS: Filters = {
    "all": {},
    "sessions": {"session_ids": ["ses_01", "ses_05", "ses_07"]},
    "types": {"types": ["tool_call_started", "myapp.note"]},
    "providers": {"providers": "anthropic"},
    "time": {"since": T0 + timedelta(seconds=10), "until": T0 + timedelta(seconds=20)},
    "correlation": {"correlation_id": "c2"},
}
SUMMARY_FILTERS: Filters = {
    "all": {},
    "agent": {"agent_id": "agent3"},
    "provider": {"provider": "anthropic"},
    "time": {"since": SINCE, "until": UNTIL},
    "session": {"session_id": "ses_11"},
}


def _rounded(table: dict[str, dict[str, float | int]]) -> dict[str, dict[str, float]]:
    return {k: {f: round(v, 9) for f, v in row.items()} for k, row in table.items()}


async def _answers(store: SessionStoreBase) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for order in ("updated_at_desc", "created_at_asc", "created_at_desc"):
        for name, kw in SESSION_FILTERS.items():
            out[f"sessions/{order}/{name}"] = await _pages(
                store.search_sessions, order_by=order, **kw
            )
    out["sessions/total"] = (await store.search_sessions(include_total=True)).total_count
    for order in ("started_at_desc", "started_at_asc", "token_usage_desc"):
        for name, kw in RUN_FILTERS.items():
            out[f"runs/{order}/{name}"] = await _pages(store.search_runs, order_by=order, **kw)
    for order in ("timestamp_asc", "timestamp_desc", "sequence_asc"):
        for name, kw in EVENT_FILTERS.items():
            out[f"events/{order}/{name}"] = await _pages(store.search_events, order_by=order, **kw)
    for name, kw in EVENT_FILTERS.items():
        out[f"count/{name}"] = await store.count_events(**kw)
    for sid in ("ses_00", "ses_03", "ses_17", "ses_39"):
        out[f"stats/{sid}"] = repr(await store.get_session_stats(sid))
    for name, kw in SUMMARY_FILTERS.items():
        out[f"usage/{name}"] = repr(await store.get_usage_summary(**kw))
        cost = await store.get_cost_summary(**kw)
        out[f"cost/{name}"] = (
            round(cost.total_cost_usd, 9),
            cost.run_count,
            _rounded(cost.by_provider),
            _rounded(cost.by_model),
            cost.unmapped_runs,
        )
    return out


@pytest.fixture(scope="module")
def dataset() -> list[SessionExport]:
    return _dataset()


@pytest.fixture
async def reference(open_backend: Opener, dataset: list[SessionExport]) -> dict[str, Any]:
    store: SessionStoreBase = await open_backend("sqlite")
    for export in dataset:
        await store.import_session(export)
    return await _answers(store)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "sqlite"])
async def test_every_backend_answers_like_sqlite(
    open_backend: Opener, dataset: list[SessionExport], reference: dict[str, Any], backend: str
) -> None:
    store: SessionStoreBase = await open_backend(backend)
    for export in dataset:
        await store.import_session(export)
    answers = await _answers(store)
    assert answers.keys() == reference.keys()
    differ = [key for key in reference if answers[key] != reference[key]]
    assert not differ, f"{backend} answers differently: {differ[:5]}"
    assert any(reference[k] for k in reference if k.startswith("sessions/"))
    assert reference["sessions/total"] > 0 and reference["count/all"] > 100
