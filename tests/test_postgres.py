"""The PostgreSQL backend: the shared contract, plus what only a real server can show.

Every test works in its own schema of the local ``test`` database and drops it afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import pickle
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from agent_session_store import urls
from agent_session_store.base import EventQuery
from agent_session_store.errors import (
    MigrationRequiredError,
    SessionNotFoundError,
    StorageConnectionFailedError,
    StorageError,
    StoreError,
    ValidationError,
)
from agent_session_store.models import Event, EventType, Run, Session
from agent_session_store.postgres import MIGRATIONS, SCHEMA_VERSION, PostgresSessionStore
from agent_session_store.query import (
    EventSearch,
    RunFacts,
    RunFilter,
    RunSearch,
    SessionSearch,
    run_facts,
)
from agent_session_store.retention import RetentionPolicy
from agent_session_store.testing import DurableSessionStoreContract, workers
from agent_session_store.testing.waiting import asleep
from service_urls import PG_DSN, pg_dsn


def open_session_store(url: str) -> PostgresSessionStore:
    """``urls.open_session_store``, narrowed for tests that read backend attributes."""
    store = urls.open_session_store(url)
    assert isinstance(store, PostgresSessionStore), store
    return store


BASE_DSN = PG_DSN
PG_VERSION = os.environ.get("PG_VERSION") or sorted(os.listdir("/etc/postgresql"))[0]


def _drop_schema(schema: str) -> None:
    async def drop() -> None:
        conn = await asyncpg.connect(BASE_DSN)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture
def schema(unique_name: str) -> Iterator[str]:
    yield unique_name
    _drop_schema(unique_name)


@pytest.fixture
def pg_url(schema: str) -> str:
    return f"{BASE_DSN}?schema={schema}&auto_migrate=true"


class TestPostgresSessionStore(DurableSessionStoreContract):
    @pytest.fixture
    def store_url(self, pg_url: str) -> str:
        return pg_url


@pytest.fixture
async def pg(pg_url: str) -> AsyncIterator[PostgresSessionStore]:
    store = PostgresSessionStore.from_url(pg_url)
    async with store:
        yield store


async def _raw(sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(BASE_DSN)
    try:
        return await conn.fetch(sql, *args) if args or ";" not in sql else await conn.execute(sql)
    finally:
        await conn.close()


def _events(session_id: str, n: int, **kw: Any) -> list[Event]:
    return [
        Event(type=EventType.MESSAGE_STREAMED, session_id=session_id, data={"i": i}, **kw)
        for i in range(n)
    ]


# ---------------------------------------------------------------------------- migrations


async def test_missing_schema_needs_migration_and_says_how(schema: str) -> None:
    store = PostgresSessionStore.from_url(f"{BASE_DSN}?schema={schema}")
    with pytest.raises(MigrationRequiredError) as info:
        await store.open()
    assert "migrate" in info.value.message and "auto_migrate=true" in info.value.message
    await store.migrate()
    async with store:
        await store.append_event(_events("s", 1)[0])
        assert await store.get_latest_sequence("s") == 1


async def test_migrations_are_recorded_and_idempotent(schema: str, pg_url: str) -> None:
    async with PostgresSessionStore.from_url(pg_url) as store:
        await store.migrate()
        await store.migrate()
    rows = await _raw(f'SELECT version, name FROM "{schema}".schema_migrations ORDER BY 1')
    assert [(r["version"], r["name"]) for r in rows] == [(v, n) for v, n, _ in MIGRATIONS]
    assert rows[-1]["version"] == SCHEMA_VERSION


async def test_older_schema_needs_migration(schema: str, pg_url: str) -> None:
    async with PostgresSessionStore.from_url(pg_url):
        pass
    await _raw(f'DELETE FROM "{schema}".schema_migrations WHERE version = $1', SCHEMA_VERSION)
    store = PostgresSessionStore.from_url(f"{BASE_DSN}?schema={schema}")
    with pytest.raises(MigrationRequiredError) as info:
        await store.open()
    assert f"needs {SCHEMA_VERSION}" in info.value.message
    await store.close()


async def _wake_language(schema: str) -> str:
    rows = await _raw(
        "SELECT l.lanname FROM pg_proc AS p JOIN pg_language AS l ON l.oid = p.prolang"
        " JOIN pg_namespace AS n ON n.oid = p.pronamespace"
        " WHERE n.nspname = $1 AND p.proname = 'wake'",
        schema,
    )
    return str(rows[0]["lanname"])


async def test_a_version_6_database_gets_the_wake_that_keeps_its_plan(
    schema: str, pg_url: str
) -> None:
    """Schema 7: ``wake`` (every append's NOTIFY) is PL/pgSQL, whose plan is kept per
    connection; as an SQL function it was planned on every call, about a fifth of a one-event
    append. A version 6 database gets it on migrate, and its appends still wake readers in
    other store objects."""
    async with PostgresSessionStore.from_url(pg_url):
        pass
    assert await _wake_language(schema) == "plpgsql"
    q = f'"{schema}"'
    await _raw(  # version 6: an SQL wake (one that sends nothing) and no version 7 row
        f"CREATE OR REPLACE FUNCTION {q}.wake(p_sessions text[], p_seqs bigint[],"
        " p_types text[], p_runs text[], p_ts bigint[]) RETURNS void LANGUAGE sql"
        " AS 'SELECT NULL::void'"
    )
    await _raw(f"DELETE FROM {q}.schema_migrations WHERE version = 7")
    store = PostgresSessionStore.from_url(f"{BASE_DSN}?schema={schema}")
    with pytest.raises(MigrationRequiredError):
        await store.open()
    await store.migrate()
    assert await _wake_language(schema) == "plpgsql"
    async with store, PostgresSessionStore.from_url(pg_url) as reader:
        waiting = asyncio.create_task(reader.get_events("s", wait_timeout_ms=60_000))
        await asleep(reader, "s")
        await store.append_event(Event(type=EventType.TOOL_CALL_STARTED, session_id="s"))
        got = await asyncio.wait_for(waiting, 30)
        assert [e.type for e in got] == [EventType.TOOL_CALL_STARTED]


async def _migrate_in_child(barrier: Barrier, url: str) -> int:
    store = PostgresSessionStore.from_url(url)
    barrier.wait(timeout=60)
    await store.migrate()
    async with store:
        return await store.get_latest_sequence("s")


async def test_concurrent_migrate_from_several_processes(schema: str) -> None:
    url = f"{BASE_DSN}?schema={schema}"
    results = await asyncio.get_running_loop().run_in_executor(
        None, workers.run_processes, _migrate_in_child, [(url,)] * 4
    )
    assert results == [0, 0, 0, 0]
    rows = await _raw(f'SELECT version FROM "{schema}".schema_migrations')
    assert sorted(r["version"] for r in rows) == [v for v, _, _ in MIGRATIONS]


# ---------------------------------------------------------------------------- query plans


def _doc(key: str, width: int) -> str:
    """SQL for a JSON document about ``width`` bytes wide, different per row (``key``), that
    does not compress away: the planner weighs heap pages, which empty documents hide."""
    return (
        f"json_build_object('id', {key}, 'metadata', json_build_object('note', "
        f"substr(repeat(md5({key}) || md5(reverse({key})), {width // 64 + 1}), 1, {width})))"
        "::text"
    )


async def _realistic_data(conn: asyncpg.Connection, s: str) -> None:
    """Sessions over many agents and statuses, a few sessions with long logs and many runs,
    events of all sessions interleaved on disk as concurrent writers leave them; documents
    as wide as real ones (1.5 KB sessions, 1 KB runs, 400 B payloads); ANALYZE."""
    await conn.execute(
        f"""
        INSERT INTO {s}.sessions (id, agent_id, status, created_us, doc)
        SELECT 'ses_' || g, 'agent_' || (g % 20),
               (ARRAY['pending','active','paused','completed','failed','cancelled'])[g % 6 + 1],
               1700000000000000 + g * 1000, {_doc("'ses_' || g", 1500)}
        FROM generate_series(1, 30000) AS g;
        INSERT INTO {s}.runs (id, session_id, status, started_us, doc)
        SELECT 'run_' || g, CASE WHEN g <= 10000 THEN 'ses_big' ELSE 'ses_' || (g % 6000) END,
               (ARRAY['pending','running','completed','failed'])[g % 4 + 1],
               1700000000000000 + g * 1000, {_doc("'run_' || g", 1000)}
        FROM generate_series(1, 30000) AS g;
        INSERT INTO {s}.events (session_id, seq, id, type, run_id, ts_us, data, metadata,
                                schema_version)
        SELECT 'ses_' || (g % 40), g / 40 + 1, 'evt_' || g,
               (ARRAY['message_sent','message_streamed','tool_call_started',
                      'tool_call_completed'])[(g / 40) % 4 + 1],
               'run_' || ((g / 40) % 2), 1700000000000000 + g, {_doc("'evt_' || g", 400)},
               '{{}}', 1
        FROM generate_series(0, 199999) AS g;
        INSERT INTO {s}.counters (session_id, last_seq)
        SELECT session_id, max(seq) FROM {s}.events GROUP BY session_id;
        ANALYZE {s}.sessions; ANALYZE {s}.runs; ANALYZE {s}.events; ANALYZE {s}.counters;
        """
    )


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


async def _plan_problems(
    conn: asyncpg.Connection, sql: str, args: list[Any], index: str, paged: bool
) -> list[str]:
    wanted = set(index.split("|"))
    """What is wrong with a query's plan, under both custom and generic planning (a prepared
    statement switches to the generic plan after five runs, so both must hold).

    Never a sequential scan; always the intended index; and for a page much smaller than
    what matches, no sort: the page must come off the index in order, costing what it returns.
    """
    problems = []
    for mode in ("force_custom_plan", "force_generic_plan"):
        await conn.execute(f"SET plan_cache_mode = {mode}")
        stmt = await conn.prepare(f"EXPLAIN (FORMAT JSON) {sql}")
        plan = json.loads(await stmt.fetchval(*args))[0]["Plan"]
        nodes = list(_plan_nodes(plan))
        types = [n["Node Type"] for n in nodes]
        used = {n.get("Index Name") for n in nodes} - {None}
        if "Seq Scan" in types:
            problems.append(f"{mode}: scans a whole table: {types}")
        if paged and ("Sort" in types or "Incremental Sort" in types):
            problems.append(f"{mode}: sorts every match to return a page: {types}")
        if not used & wanted:
            problems.append(f"{mode}: does not use {index} (uses {used})")
    await conn.execute("RESET plan_cache_mode")
    return problems


async def test_every_read_is_an_index_scan(schema: str, pg: PostgresSessionStore) -> None:
    conn = await asyncpg.connect(BASE_DSN)
    try:
        await _realistic_data(conn, f'"{schema}"')
        cases: list[tuple[str, list[Any], str, bool]] = []
        for q, index, paged in [
            (EventQuery("ses_7", after=1000, limit=1000), "events_pkey", True),
            (EventQuery("ses_7", limit=100), "events_pkey", True),
            (EventQuery("ses_7", after=10, before=200), "events_pkey", False),
            (EventQuery("ses_7", type="tool_call_started", after=5, limit=50), "events_type", True),
            (EventQuery("ses_7", run_id="run_1", limit=50), "events_run", True),
            (
                EventQuery("ses_7", run_id="run_1", type="message_sent"),
                "events_run|events_type",  # either narrows to the session's matches
                False,
            ),
            (EventQuery("ses_7", since_us=1700000000100000, limit=20), "events_pkey", True),
            # order="desc": the same indexes, read backwards
            (EventQuery("ses_7", limit=1000, desc=True), "events_pkey", True),
            (EventQuery("ses_7", before=4000, limit=100, desc=True), "events_pkey", True),
            (
                EventQuery("ses_7", type="tool_call_started", limit=50, desc=True),
                "events_type",
                True,
            ),
            (EventQuery("ses_7", run_id="run_1", limit=50, desc=True), "events_run", True),
        ]:
            sql, args = pg.events_sql(q)
            cases.append((sql, args, index, paged))
        cases += [
            (pg.newest_payloads_sql(), ["ses_7", 50], "events_pkey", True),
            (pg.list_sessions_sql(False, False), [50, 100], "sessions_order", True),
            (pg.list_sessions_sql(True, False), [50, 100, "active"], "sessions_status", True),
            (pg.list_sessions_sql(False, True), [50, 0, "agent_3"], "sessions_agent", True),
            (
                pg.list_sessions_sql(False, True),
                [None, 0, "agent_3"],
                "sessions_agent|sessions_agent_updated",  # all of them: either, then sorted
                False,
            ),
            (
                pg.list_sessions_sql(True, True),
                [10, 5, "paused", "agent_3"],
                "sessions_agent_status",
                True,
            ),
            (pg.list_runs_sql(False), ["ses_17", None], "runs_session", False),
            # a third of all runs are ses_big's: walking the run order and filtering is as good
            (pg.list_runs_sql(False), ["ses_big", 20], "runs_session|runs_started", True),
            (
                pg.list_runs_sql(True),
                ["ses_big", 10, "completed"],
                "runs_session_status",
                True,
            ),
            (pg.active_run_sql(), ["ses_17"], "runs_session_status", False),
            (pg.active_run_sql(), ["ses_big"], "runs_session_status", True),
        ]
        problems = {}
        for sql, args, index, paged in cases:
            found = await _plan_problems(conn, sql, args, index, paged)
            if found:
                problems[f"{sql} {args}"] = found
        assert problems == {}, json.dumps(problems, indent=1)
        # The check has teeth: without its index, a query is reported.
        await conn.execute(f'DROP INDEX "{schema}".sessions_agent')
        sql = pg.list_sessions_sql(False, True)
        assert await _plan_problems(conn, sql, [50, 0, "agent_3"], "sessions_agent", True)
    finally:
        await conn.close()


async def _query_data(conn: asyncpg.Connection, s: str) -> None:
    """100,000 sessions (1.5 KB documents; statuses as skewed as real ones: most completed,
    1 % active), 30,000 runs, 100,000 events with payloads as wide as real ones, tags on a
    tenth of the sessions, a few soft-deleted, providers and correlation ids on some events;
    the triggers fill the columns; ANALYZE."""
    await conn.execute(
        f"""
        INSERT INTO {s}.sessions (id, agent_id, status, created_us, updated_us, doc)
        SELECT 'ses_' || g, 'agent_' || (g % 20),
               CASE WHEN g % 100 = 0 THEN 'active' WHEN g % 100 = 1 THEN 'paused'
                    WHEN g % 100 < 5 THEN 'failed' WHEN g % 100 = 5 THEN 'pending'
                    WHEN g % 100 = 6 THEN 'cancelled' ELSE 'completed' END,
               1700000000000000 + g * 1000, 1700000000000000 + ((g * 7919) % 100000) * 1000,
               json_build_object(
                   'id', 'ses_' || g, 'agent_id', 'agent_' || (g % 20), 'status', 'active',
                   'metadata', json_build_object('note', substr(repeat(
                       md5(g::text) || md5(reverse(g::text)), 24), 1, 1500)),
                   'context', '{{}}'::json,
                   'tags', CASE WHEN g % 10 = 0 THEN '["t", "pinned"]'::json
                                ELSE '["other"]'::json END,
                   'created_at', '2024-01-01T00:00:00.000000Z',
                   'updated_at', '2024-01-01T00:00:00.000000Z',
                   'deleted_at', CASE WHEN g % 50 = 0 THEN '2024-02-01T00:00:00.000000Z' END
               )::text
        FROM generate_series(1, 100000) AS g;
        INSERT INTO {s}.runs (id, session_id, status, started_us, doc)
        SELECT 'run_' || g, CASE WHEN g <= 10000 THEN 'ses_big' ELSE 'ses_' || (g % 6000) END,
               (ARRAY['pending','running','completed','failed'])[g % 4 + 1],
               1700000000000000 + g * 1000,
               json_build_object(
                   'id', 'run_' || g, 'provider', (ARRAY['anthropic','openai','google'])[g % 3 + 1],
                   'provider_metadata', json_build_object('model', 'm' || (g % 5)),
                   'token_usage', json_build_object('input_tokens', g % 1000,
                                                    'output_tokens', g % 300),
                   'cost_usd', CASE WHEN g % 2 = 0 THEN 0.01 END,
                   'input', json_build_object('text', repeat('i', 300))
               )::text
        FROM generate_series(1, 30000) AS g;
        INSERT INTO {s}.events (session_id, seq, id, type, run_id, ts_us, data, metadata,
                                schema_version, provider, correlation_id)
        SELECT 'ses_' || (g % 40), g / 40 + 1, 'evt_' || g,
               (ARRAY['message_sent','message_streamed','tool_call_started',
                      'tool_call_completed'])[(g / 40) % 4 + 1],
               'run_' || ((g / 40) % 2), 1700000000000000 + g,
               '{{"text":"' || repeat('x', 300) || '"}}', '{{}}', 1,
               CASE WHEN g % 4 = 0 THEN 'anthropic' END,
               CASE WHEN g % 100 = 0 THEN 'corr_' || (g % 1000) END
        FROM generate_series(0, 99999) AS g;
        INSERT INTO {s}.counters (session_id, last_seq)
        SELECT session_id, max(seq) FROM {s}.events GROUP BY session_id;
        ANALYZE {s}.sessions; ANALYZE {s}.runs; ANALYZE {s}.events; ANALYZE {s}.counters;
        """
    )


async def test_every_query_is_served_by_an_index(schema: str, pg: PostgresSessionStore) -> None:
    """Contract 7.8: each search in each ordering, alone and after each single filter, comes
    off an index in order, starting at the keyset position: a page costs limit / (share of
    rows matching), however deep. Where most rows match, the planner may walk the ordering's
    index and filter rather than use the filter's own: both are accepted; a sort of every
    match or a sequential scan never. Tags (GIN) and one session's aggregates read only the
    matching rows."""
    conn = await asyncpg.connect(BASE_DSN)
    S, R, E = SessionSearch, RunSearch, EventSearch
    at = (1700000000000000 + 15000 * 1000, "ses_9")
    try:
        await _query_data(conn, f'"{schema}"')
        cases: list[tuple[tuple[str, list[Any]], str, bool]] = [
            (pg.search_sessions_sql(S(), None, 50), "sessions_updated", True),
            (pg.search_sessions_sql(S(), at, 50), "sessions_updated", True),
            (pg.search_sessions_sql(S(include_deleted=True), at, 50), "sessions_updated", True),
            (pg.search_sessions_sql(S(order_by="created_at_asc"), at, 50), "sessions_order", True),
            (
                pg.search_sessions_sql(S(order_by="created_at_desc"), None, 50),
                "sessions_order",
                True,
            ),
            (pg.search_sessions_sql(S(agent_id="agent_3"), at, 50), "sessions_agent_updated", True),
            (
                pg.search_sessions_sql(S(agent_id="agent_3", order_by="created_at_asc"), at, 50),
                "sessions_agent",
                True,
            ),
            (
                pg.search_sessions_sql(S(statuses=("active",)), at, 50),
                "sessions_status_updated",
                True,
            ),
            (
                pg.search_sessions_sql(S(statuses=("paused",), order_by="created_at_desc"), at, 50),
                "sessions_status|sessions_order",
                True,
            ),
            # several statuses: one ordered range per status, merged, never a sort of all
            (
                pg.search_sessions_sql(S(statuses=("active", "paused")), at, 50),
                "sessions_status_updated",
                True,
            ),
            (
                pg.search_sessions_sql(
                    S(statuses=("failed", "completed"), order_by="created_at_asc"), at, 50
                ),
                "sessions_status|sessions_order",
                True,
            ),
            (
                pg.search_sessions_sql(S(updated_after_us=1700000000000000 + 10**6), at, 50),
                "sessions_updated",
                True,
            ),
            (
                pg.search_sessions_sql(
                    S(created_before_us=1700000000000000 + 2 * 10**7, order_by="created_at_desc"),
                    None,
                    50,
                ),
                "sessions_order",
                True,
            ),
            (
                pg.search_sessions_sql(S(tags=("t",)), at, 50),
                "sessions_tags|sessions_updated",
                False,
            ),
            (
                pg.search_sessions_sql(S(agent_id="agent_3"), None, None),
                "sessions_agent|sessions_agent_updated",
                False,
            ),
            (pg.search_runs_sql(R(), None, 50), "runs_started", True),
            (pg.search_runs_sql(R(order_by="started_at_asc"), None, 50), "runs_started", True),
            (
                pg.search_runs_sql(R(order_by="token_usage_desc"), (500, "run_9"), 50),
                "runs_tokens",
                True,
            ),
            (
                pg.search_runs_sql(R(session_id="ses_big"), None, 50),
                "runs_session|runs_started",
                True,
            ),
            (
                pg.search_runs_sql(R(session_id="ses_big", order_by="token_usage_desc"), None, 50),
                "runs_session_tokens",
                True,
            ),
            (
                pg.search_runs_sql(R(provider="openai"), None, 50),
                "runs_provider_started|runs_started",
                True,
            ),
            (
                pg.search_runs_sql(R(statuses=("failed",)), None, 50),
                "runs_status_started|runs_started",
                True,
            ),
            (
                pg.search_runs_sql(R(min_tokens=900, order_by="token_usage_desc"), None, 50),
                "runs_tokens",
                True,
            ),
            (
                pg.search_runs_sql(R(agent_id="agent_3"), None, 50),
                "runs_started|runs_session|sessions_agent",
                False,
            ),
            (
                pg.run_groups_sql(RunFilter(session_id="ses_17")),
                "runs_session|runs_session_tokens",
                False,
            ),
            (pg.search_events_sql(E(), None, 100), "events_ts", True),
            (
                pg.search_events_sql(
                    E(order_by="timestamp_desc"), (1700000000050000, "evt_1"), 100
                ),
                "events_ts",
                True,
            ),
            (pg.search_events_sql(E(session_ids=("ses_7",)), None, 100), "events_session_ts", True),
            (
                pg.search_events_sql(E(run_ids=("run_1",)), None, 100),
                "events_run_ts|events_ts",
                True,
            ),
            (
                pg.search_events_sql(E(types=("tool_call_started",)), None, 100),
                "events_type_ts|events_ts",
                True,
            ),
            (
                pg.search_events_sql(E(providers=("anthropic",)), None, 100),
                "events_provider_ts",
                True,
            ),
            (
                pg.search_events_sql(E(correlation_id="corr_100"), None, 100),
                "events_corr_ts",
                False,
            ),
            (pg.search_events_sql(E(since_us=1700000000050000), None, 100), "events_ts", True),
            (
                pg.search_events_sql(E(session_ids=("ses_7",), order_by="sequence_asc"), None, 100),
                "events_pkey",
                False,
            ),
            (
                pg.search_events_sql(E(session_ids=("ses_7",)), None, None),
                "events_session_ts|events_pkey",
                False,
            ),
        ]
        problems = {}
        for (sql, args), index, paged in cases:
            found = await _plan_problems(conn, sql, args, index, paged)
            if found:
                problems[f"{sql} {args}"] = found
        assert problems == {}, json.dumps(problems, indent=1)
        await conn.execute(f'DROP INDEX "{schema}".sessions_updated')  # the check has teeth
        sql, args = pg.search_sessions_sql(S(), None, 50)
        assert await _plan_problems(conn, sql, args, "sessions_updated", True)
    finally:
        await conn.close()


async def test_run_columns_are_run_facts(schema: str, pg: PostgresSessionStore) -> None:
    """The trigger's SQL mirrors query.run_facts() for every odd value a run may hold."""
    usages: list[dict[str, Any]] = [
        {},
        {"input_tokens": 10, "output_tokens": 5},
        {"input_tokens": 10.9, "output_tokens": -2.5},
        {"input_tokens": True, "output_tokens": "7", "total_tokens": None},
        {"input_tokens": 3, "total_tokens": 99.99},
        {"input_tokens": 3, "total_tokens": False},
        {"input_tokens": 1e3, "output_tokens": [1], "total_tokens": {"x": 1}},
        {"input_tokens": 2**40, "output_tokens": 2**40},
    ]
    runs = [
        Run(
            id=f"r{i}",
            session_id="s",
            token_usage=usage,
            cost_usd=None if i % 2 else 0.25 * i,
            provider=None if i % 3 else "p",
            provider_metadata={"model": "m"} if i % 2 else {"model": 5},
        )
        for i, usage in enumerate(usages)
    ]
    for run in runs:
        await pg.save_run(run)
    await pg.flush(Session(id="f", agent_id="a"), runs[1].replace(id="rf", session_id="f"), [])
    rows = await _raw(
        f"SELECT id, input_tokens, output_tokens, total_tokens, cost_usd, provider, model "
        f'FROM "{schema}".runs WHERE $1 ORDER BY id',
        True,
    )
    got = {r["id"]: RunFacts(*list(r.values())[1:]) for r in rows}
    expected = {run.id: run_facts(run) for run in runs} | {"rf": run_facts(runs[1])}
    assert got == expected


# ---------------------------------------------------------------------------- batches, data


async def test_a_batch_is_one_round_trip(schema: str) -> None:
    """20,000 events (far past the 65,535 bind-parameter limit of one row per value) go in
    one statement, counted by the driver's query logger on the store's own pool."""
    statements: list[str] = []

    async def count(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(lambda q: statements.append(q.query))

    pool = await asyncpg.create_pool(BASE_DSN, min_size=1, max_size=1, init=count)
    reset = "RESET ALL"  # the given pool's own query on each release, not the store's
    try:
        store = PostgresSessionStore(pool=pool, schema=schema, auto_migrate=True)
        async with store:
            await store.append_events(_events("warm-up", 2))  # the driver learns the types
            statements.clear()
            out = await store.append_events(_events("big", 20_000))
            assert [e.sequence_number for e in out] == list(range(1, 20_001))
            ours = [q for q in statements if reset not in q]
            assert len(ours) == 1 and "append_call" in ours[0]
            statements.clear()
            batch = _events("a", 10) + _events("b", 10)
            await store.flush(Session(id="a", agent_id="x"), Run(session_id="a"), batch)
            ours = [q for q in statements if reset not in q]
            assert len(ours) == 1 and "flush" in ours[0]
    finally:
        await pool.close()


async def test_odd_data_round_trips_exactly(schema: str, pg: PostgresSessionStore) -> None:
    edge_times = [
        datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2038, 1, 19, 3, 14, 8, 123457, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]
    given = [
        Event(
            type=EventType.MESSAGE_RECEIVED,
            session_id="séssion-🤖-中文",
            run_id="run-ø",
            timestamp=t,
            data={"text": "emoji 🎉👩‍👩‍👧 and ümlaut, RTL עברית, \u2028 sep", "ключ": [1.5, -0.0]},
            metadata={"𝔘𝔫𝔦𝔠𝔬𝔡𝔢": True},
        )
        for t in edge_times
    ]
    stored = await pg.append_events(given)
    assert await pg.get_events("séssion-🤖-中文") == stored
    assert [e.timestamp for e in stored] == edge_times
    # a payload of 4-byte characters just under the limit, stored whole
    blob = "🦀" * ((pg.max_event_bytes - 64) // 4)
    big = await pg.append_event_with_sequence(
        Event(type=EventType.TOOL_CALL_COMPLETED, session_id="big", data={"out": blob})
    )
    [again] = await pg.get_events("big")
    assert again == big and again.data["out"] == blob
    size = await _raw(
        f'SELECT octet_length(data) AS n FROM "{schema}".events WHERE id = $1', big.id
    )
    assert pg.max_event_bytes - 64 <= size[0]["n"] <= pg.max_event_bytes


async def test_nul_in_a_payload_is_refused_before_writing(
    schema: str, pg: PostgresSessionStore
) -> None:
    for data in ({"s": "a\u0000b"}, {"k\u0000": 1}, {"deep": [{"x": "\x00"}]}):
        with pytest.raises(ValidationError) as info:
            await pg.append_events(
                [*_events("s", 2), Event(type=EventType.MESSAGE_SENT, session_id="s", data=data)]
            )
        assert "NUL" in info.value.message
    rows = await _raw(f'SELECT count(*) AS n FROM "{schema}".events')
    assert rows[0]["n"] == 0


# ---------------------------------------------------------------------------- sequences


async def test_a_rolled_back_append_consumes_no_number(
    schema: str, pg: PostgresSessionStore
) -> None:
    """A real server-side failure after numbering (a trigger refusing one row) rolls the
    counter back with everything else."""
    await pg.append_events(_events("s", 3))
    await _raw(
        f"""
        CREATE FUNCTION "{schema}".refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.data LIKE '%refuse me%' THEN RAISE EXCEPTION 'refused by test trigger';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse BEFORE INSERT ON "{schema}".events
        FOR EACH ROW EXECUTE FUNCTION "{schema}".refuse();
        """
    )
    bad = Event(type=EventType.MESSAGE_SENT, session_id="s", data={"t": "refuse me"})
    with pytest.raises(StorageError) as info:
        await pg.append_events([*_events("s", 5), bad])
    assert info.value.code == "storage_error"
    assert isinstance(info.value.__cause__, asyncpg.PostgresError)
    with pytest.raises(StorageError):
        await pg.flush(Session(id="s2", agent_id="a"), Run(session_id="s2"), [bad])
    assert await pg.get_latest_sequence("s") == 3
    nxt = await pg.append_events(_events("s", 2))
    assert [e.sequence_number for e in nxt] == [4, 5]
    with pytest.raises(SessionNotFoundError):
        await pg.get_session("s2")


async def test_same_new_ids_raced_into_different_sessions(pg_url: str) -> None:
    """Appends of one id into different sessions are not serialized by a counter lock; the
    unique index decides, and the loser re-numbers without a gap and without an error."""
    ids = [f"evt_{i}" for i in range(60)]
    stores = [PostgresSessionStore.from_url(pg_url) for _ in range(6)]
    for s in stores:
        await s.open()
    try:

        async def writer(k: int) -> list[Event]:
            order = ids if k % 2 == 0 else ids[::-1]
            out: list[Event] = []
            for start in range(0, len(order), 5):  # batches whose ids overlap other writers'
                chunk = [
                    Event(id=i, type=EventType.MESSAGE_SENT, session_id=f"s{k}", data={"k": k})
                    for i in order[start : start + 5]
                ]
                out += await stores[k].append_events(chunk)
            return out

        results = await asyncio.gather(*(writer(k) for k in range(6)))
        by_id = [{e.id: e for e in r} for r in results]
        assert all(view == by_id[0] for view in by_id), "writers disagree on a stored event"
        total = 0
        for k in range(6):
            mine = await stores[0].get_events(f"s{k}")
            assert [e.sequence_number for e in mine] == list(range(1, len(mine) + 1))
            assert await stores[0].get_latest_sequence(f"s{k}") == len(mine)
            total += len(mine)
        assert total == len(ids)
    finally:
        for s in stores:
            await s.close()


# ---------------------------------------------------------------------------- LISTEN / NOTIFY


async def _until(condition: Callable[[], bool]) -> None:
    """Wait for a state change the test cannot await directly (no fixed sleep)."""
    async with asyncio.timeout(60):
        while not condition():  # noqa: ASYNC110 - the state has no event to await
            await asyncio.sleep(0.01)


class _RacingReader(PostgresSessionStore):
    """Commits an append from another store object right after the reader's first query came
    back empty: the window where a wake-up would be lost if LISTEN started late."""

    other: PostgresSessionStore | None = None

    async def _get_events(self, query: EventQuery) -> list[Event]:
        found = await super()._get_events(query)
        other, self.other = self.other, None
        if other is not None and not found:
            await other.append_event(
                Event(type=EventType.TOOL_CALL_STARTED, session_id=query.session_id)
            )
        return found


async def test_append_racing_the_readers_query_still_wakes_it(pg_url: str) -> None:
    async with (
        PostgresSessionStore.from_url(pg_url) as writer,
        _RacingReader.from_url(pg_url) as reader,
    ):
        reader.other = writer
        got = await asyncio.wait_for(reader.get_events("s", wait_timeout_ms=60_000), 30)
        assert [e.type for e in got] == [EventType.TOOL_CALL_STARTED]
        assert reader.other is None  # the racing append did happen


class _GatedListener(PostgresSessionStore):
    """Holds LISTEN (re)connects until the test opens the gate."""

    gate: asyncio.Event

    async def _listen(self) -> None:
        await self.gate.wait()
        await super()._listen()


async def test_waiter_wakes_after_its_listener_connection_is_killed(pg_url: str) -> None:
    """The listener's backend is terminated and an append commits while nobody listens:
    its NOTIFY is gone, yet the waiter gets the event once the listener is back."""
    reader = _GatedListener.from_url(pg_url)
    reader.gate = asyncio.Event()
    reader.gate.set()
    async with reader, PostgresSessionStore.from_url(pg_url) as writer:
        waiting = asyncio.create_task(reader.get_events("s", wait_timeout_ms=120_000))
        await _until(lambda: reader._listen_conn is not None)
        assert reader._listen_conn is not None
        old_pid = reader._listen_conn.get_server_pid()
        reader.gate.clear()
        await _raw("SELECT pg_terminate_backend($1)", old_pid)
        await _until(lambda: reader._listen_conn is None)
        appended = await writer.append_event_with_sequence(_events("s", 1)[0])
        reader.gate.set()
        assert await asyncio.wait_for(waiting, 60) == [appended]
        assert reader._listen_conn is not None
        assert reader._listen_conn.get_server_pid() != old_pid
        # and the new listener delivers later appends as usual
        again = asyncio.create_task(reader.get_events("s", after=1, wait_timeout_ms=120_000))
        await _until(lambda: bool(reader._waiters))
        second = await writer.append_event_with_sequence(_events("s", 1)[0])
        assert await asyncio.wait_for(again, 60) == [second]


async def test_concurrent_appends_share_a_wal_flush(pg_url: str, schema: str) -> None:
    """Issue 13: a commit that NOTIFYs holds a server-wide lock until its WAL flush is done,
    so appends that NOTIFY inside their own transaction commit one after another. With each
    flush held back 100 ms (commit_delay), 10 concurrent appends into 10 sessions take one or
    two flushes when their commits share them, and 10 x 100 ms in a row. Readers in another
    store are still woken."""
    if (await _raw("SHOW fsync"))[0][0] != "on":
        pytest.skip("commit_delay only applies with fsync on")
    writers = 10
    pool = await asyncpg.create_pool(
        BASE_DSN,
        min_size=writers,
        max_size=writers,
        server_settings={"commit_delay": "100000", "commit_siblings": "0"},
    )
    try:
        store = PostgresSessionStore(pool=pool, schema=schema, auto_migrate=True)
        async with store, PostgresSessionStore.from_url(pg_url) as reader:
            sids = [f"s{k}" for k in range(writers)]
            await asyncio.gather(*(store.append_events(_events(sid, 1)) for sid in sids))
            waiting = asyncio.create_task(reader.get_events("s0", after=1, wait_timeout_ms=60_000))
            await _until(lambda: reader._listen_conn is not None and bool(reader._waiters))
            started = time.perf_counter()
            done = await asyncio.gather(*(store.append_events(_events(sid, 1)) for sid in sids))
            took = time.perf_counter() - started
            assert took < 0.6, f"{writers} appends took {took:.2f} s: their commits ran in a row"
            assert await asyncio.wait_for(waiting, 30) == done[0]
    finally:
        await pool.close()


async def test_overlapping_appends_wake_readers_in_another_store(pg_url: str) -> None:
    """Issue 13: appends of one store that overlap commit without NOTIFY and hand their
    wakes to the announcer; a reader in another store (another LISTEN connection, as in
    another process) still wakes for every session, and each append returns its events."""
    sessions = 24
    async with (
        PostgresSessionStore.from_url(pg_url) as store,
        PostgresSessionStore.from_url(pg_url) as reader,
    ):
        sids = [f"w{k}" for k in range(sessions)]
        waiting = [
            asyncio.create_task(reader.get_events(sid, wait_timeout_ms=600_000)) for sid in sids
        ]
        await _until(
            lambda: reader._listen_conn is not None and len(reader._waiters.sessions()) == sessions
        )
        for flush in (False, True):
            if flush:  # the flush path (session, run and events in one call) too
                waiting = [
                    asyncio.create_task(reader.get_events(sid, after=1, wait_timeout_ms=600_000))
                    for sid in sids
                ]
                await _until(lambda: len(reader._waiters.sessions()) == sessions)
            before = store._announcer.calls
            done = await asyncio.gather(
                *(
                    store.flush(
                        Session(id=sid, agent_id="a"),
                        Run(id=f"r_{sid}", session_id=sid),
                        _events(sid, 1, run_id=f"r_{sid}"),
                    )
                    if flush
                    else store.append_events(_events(sid, 1))
                    for sid in sids
                )
            )
            async with asyncio.timeout(60):  # no wake: they would sleep for 10 minutes
                assert await asyncio.gather(*waiting) == done
            assert store._announcer.calls > before  # the quiet path ran


async def test_a_failed_wake_fails_its_appends_typed_and_the_next_ones_work(
    pg_url: str,
) -> None:
    """The events are committed before the wake goes out: when it cannot, the appends
    waiting on it get a typed error (a retry finds them stored), none hangs, and the
    announcer serves the next ones."""
    async with PostgresSessionStore.from_url(pg_url) as store:
        good = store._announcer._sql
        store._announcer._sql = "SELECT 1 / ($1::text[] IS NULL)::int"  # division by zero
        results = await asyncio.wait_for(
            asyncio.gather(
                *(store.append_events(_events(f"f{k}", 1)) for k in range(8)),
                return_exceptions=True,
            ),
            60,
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        assert failed, "no append went the quiet way"
        assert all(isinstance(r, StoreError) and r.code == "storage_error" for r in failed)
        store._announcer._sql = good
        for k in range(8):  # every event is stored once, whatever its append heard
            assert len(await store.get_events(f"f{k}")) == 1
        again = await asyncio.gather(*(store.append_events(_events(f"f{k}", 1)) for k in range(8)))
        assert [e[0].sequence_number for e in again] == [2] * 8


async def test_given_pool_is_used_and_left_open(pg_url: str, schema: str) -> None:
    pool = await asyncpg.create_pool(BASE_DSN, min_size=1, max_size=4)
    try:
        store = PostgresSessionStore(pool=pool, schema=schema, auto_migrate=True)
        async with store, PostgresSessionStore.from_url(pg_url) as writer:
            waiting = asyncio.create_task(store.get_events("s", wait_timeout_ms=60_000))
            await _until(lambda: store._listen_conn is not None)
            e = await writer.append_event_with_sequence(_events("s", 1)[0])
            assert await asyncio.wait_for(waiting, 30) == [e]
        assert await pool.fetchval("SELECT 1") == 1
    finally:
        await pool.close()


# ---------------------------------------------------------------------------- faults


class OwnCluster:
    """A throw-away PostgreSQL cluster in a temp dir on a free port, with password auth:
    the tests that stop, crash or misconfigure a server use it, never the shared one."""

    password = "own-cluster-s3cret"

    def __init__(self) -> None:
        self.bin = f"/usr/lib/postgresql/{PG_VERSION}/bin"
        self.dir = tempfile.mkdtemp(prefix="ass-pg-")
        self.data = os.path.join(self.dir, "data")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        pwfile = os.path.join(self.dir, "pw")
        with open(pwfile, "w") as f:
            f.write(self.password)
        if os.geteuid() == 0:  # initdb refuses root: the cluster belongs to 'postgres'
            shutil.chown(self.dir, "postgres")
            shutil.chown(pwfile, "postgres")
        try:
            self._run(
                "initdb", "-D", self.data, "-U", "postgres", "-A", "scram-sha-256",
                f"--pwfile={pwfile}", "--no-sync",
            )  # fmt: skip
            self.start()
        except BaseException:
            self.remove()
            raise

    def _run(self, tool: str, *args: str) -> None:
        cmd = [os.path.join(self.bin, tool), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, cwd=self.dir, timeout=120)

    def url(self, schema: str, password: str | None = None) -> str:
        pw = self.password if password is None else password
        return f"postgresql://postgres:{pw}@127.0.0.1:{self.port}/postgres?schema={schema}"

    def start(self) -> None:
        opts = f"-c listen_addresses=127.0.0.1 -c port={self.port} -k {self.dir} -c fsync=off"
        log = os.path.join(self.dir, "log")  # the server must not inherit our pipes
        self._run("pg_ctl", "-D", self.data, "-o", opts, "-l", log, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[OwnCluster]:
    cluster = OwnCluster()  # removes itself if it cannot start
    try:
        yield cluster
    finally:
        cluster.remove()


async def test_server_crash_and_restart(own_cluster: OwnCluster, unique_name: str) -> None:
    """Kill the real server mid-run (immediate stop: no clean shutdown), then start it again.

    While it is down every call fails fast with storage_connection_failed; afterwards the
    same store object works, the waiting reader is woken, and every append that returned
    is stored with the number it was given, without gaps."""
    url = f"{own_cluster.url(unique_name)}&auto_migrate=true&connect_timeout=2&command_timeout=10"
    async with PostgresSessionStore.from_url(url) as store:
        acked: dict[str, int] = {}
        outages: list[StoreError] = []
        stop = asyncio.Event()

        async def appender(w: int) -> None:
            i = 0
            while not stop.is_set():
                event = Event(id=f"w{w}_{i}", type=EventType.MESSAGE_STREAMED, session_id="s")
                try:
                    stored = await store.append_event_with_sequence(event)
                except StorageConnectionFailedError as err:
                    outages.append(err)  # retry the same id: appends are idempotent
                    await asyncio.sleep(0.05)
                    continue
                assert stored.sequence_number is not None
                acked[stored.id] = stored.sequence_number
                i += 1

        writers = [asyncio.create_task(appender(w)) for w in range(4)]
        reader = asyncio.create_task(store.get_events("waiting", wait_timeout_ms=240_000))
        await _until(lambda: len(acked) >= 100 and store._listen_conn is not None)
        try:
            await asyncio.to_thread(own_cluster.stop, "immediate")
            calls: list[Awaitable[Any]] = [
                store.get_events("s"),
                store.get_latest_sequence("s"),
                store.save_session(Session(id="x", agent_id="a")),
                store.append_event(_events("x", 1)[0]),
                store.get_events("other", wait_timeout_ms=100_000),
            ]
            for call in calls:
                with pytest.raises(StorageConnectionFailedError) as info:
                    await call
                assert info.value.__cause__ is not None
        finally:
            await asyncio.to_thread(own_cluster.start)
        resumed_at = len(acked)
        await _until(lambda: len(acked) >= resumed_at + 100)
        stop.set()
        await asyncio.gather(*writers)
        assert outages, "the writers never saw the outage"
        woke = await store.append_event_with_sequence(_events("waiting", 1)[0])
        assert await asyncio.wait_for(reader, 60) == [woke]
        stored = await store.get_events("s")
        assert [e.sequence_number for e in stored] == list(range(1, len(stored) + 1))
        by_id = {e.id: e.sequence_number for e in stored}
        assert {i: by_id.get(i) for i in acked} == acked


async def test_credentials_never_appear_in_errors(schema: str) -> None:
    secret = "pa55-s3cr3t-word"
    unreachable = (
        f"postgresql://postgres:{secret}@127.0.0.1:1/test?schema={schema}&connect_timeout=2"
    )
    store = open_session_store(unreachable)
    assert isinstance(store, PostgresSessionStore) and secret not in repr(store)
    failures: list[StoreError] = []
    for attempt in (store.open(), store.migrate(), store.get_events("s")):
        with pytest.raises(StorageConnectionFailedError) as info:
            await attempt
        failures.append(info.value)
    # reachable (trust auth ignores the password) but not migrated: the message shows the URL
    unmigrated = PostgresSessionStore.from_url(
        pg_dsn(scheme="postgres", password=secret) + f"?schema={schema}"
    )
    with pytest.raises(MigrationRequiredError) as info2:
        await unmigrated.open()
    failures.append(info2.value)
    assert "postgres:***@" in info2.value.message
    for err in failures:
        for text in (str(err), repr(err), repr(err.details), repr(pickle.loads(pickle.dumps(err)))):
            assert secret not in text


async def test_url_options(schema: str) -> None:
    with pytest.raises(ValidationError):
        open_session_store(f"{BASE_DSN}?schema={schema}&max_size=many")
    with pytest.raises(ValidationError):
        open_session_store(f"{BASE_DSN}?schema={schema}&auto_migrate=perhaps")
    # options the store does not know go to the driver
    url = f"{BASE_DSN}?schema={schema}&auto_migrate=true&max_size=2&sslmode=disable"
    async with open_session_store(url) as store:
        assert store._max_size == 2 and store.schema == schema
        assert (await store.append_event_with_sequence(_events("s", 1)[0])).sequence_number == 1


# ---------------------------------------------------------------------------- write races


async def _session_state(store: PostgresSessionStore, sid: str) -> tuple[bool, bool, list[Any]]:
    try:
        await store.get_session(sid)
        has_session = True
    except SessionNotFoundError:
        has_session = False
    runs = await store.list_runs(sid)
    events = [(e.id, e.sequence_number) for e in await store.get_events(sid)]
    return has_session, bool(runs), events


async def test_delete_session_racing_flush_ends_in_a_serial_state(pg_url: str) -> None:
    """Issue 12 item 2: a session with events but no record; a flush and a delete_session of
    it race on separate connections. Each pair must end as one of the two serial orders."""
    async with (
        PostgresSessionStore.from_url(f"{pg_url}&max_size=20") as flusher,
        PostgresSessionStore.from_url(f"{pg_url}&max_size=20") as deleter,
    ):
        bad: dict[str, Any] = {}
        for rnd in range(4):
            sids = [f"r{rnd}_{k}" for k in range(40)]
            for sid in sids:
                await flusher.append_events(_events(sid, 3))
            flushed = {sid: _events(sid, 2) for sid in sids}
            calls: list[Awaitable[Any]] = []
            for sid in sids:
                calls.append(
                    flusher.flush(Session(id=sid, agent_id="a"), Run(session_id=sid), flushed[sid])
                )
                calls.append(deleter.delete_session(sid))
            await asyncio.gather(*calls)
            for sid in sids:
                state = await _session_state(flusher, sid)
                after_delete = (True, True, [(e.id, i + 1) for i, e in enumerate(flushed[sid])])
                if state not in ((False, False, []), after_delete):
                    bad[sid] = state
        assert bad == {}, f"{len(bad)} of 160 races ended in a non-serial state: {bad}"


async def test_re_append_racing_delete_session_is_one_or_the_other(pg_url: str) -> None:
    """Issue 12 item 2: re-appending a stored event (naming its own session, or another one)
    while its session is deleted returns an answer matching the final state; never an error."""
    async with (
        PostgresSessionStore.from_url(f"{pg_url}&max_size=20") as writer,
        PostgresSessionStore.from_url(f"{pg_url}&max_size=20") as deleter,
    ):
        bad: dict[str, Any] = {}
        for rnd in range(30):
            sids = [f"r{rnd}_{k}" for k in range(20)]
            again: dict[str, Event] = {}
            for k, sid in enumerate(sids):
                stored = await writer.append_events(_events(sid, 3))
                target = sid if k % 3 == 0 else f"{sid}_other"
                again[sid] = Event(
                    id=stored[1].id,
                    type=stored[1].type,
                    session_id=target,
                    timestamp=stored[1].timestamp,
                    data=stored[1].data,
                )
            calls: list[Awaitable[Any]] = []
            for sid in sids:
                calls.append(writer.append_event_with_sequence(again[sid]))
                calls.append(deleter.delete_session(sid))
            results = await asyncio.gather(*calls, return_exceptions=True)
            for i, sid in enumerate(sids):
                got = results[2 * i]
                if isinstance(got, BaseException):
                    bad[sid] = repr(got)
                    continue
                target = again[sid].session_id
                left = [(e.id, e.sequence_number) for e in await writer.get_events(target)]
                if (got.session_id, got.sequence_number) == (sid, 2):
                    ok = left == []  # it saw the stored event; the delete came after
                else:  # the delete came first: stored afresh in the session it names
                    ok = (got.session_id, got.sequence_number) == (target, 1)
                    ok = ok and left == [(got.id, 1)]
                if not ok:
                    bad[sid] = (got.session_id, got.sequence_number, left)
        assert bad == {}, f"{len(bad)} of 600 races went wrong: {bad}"


# ---------------------------------------------------------------------------- plan staleness


async def _statement_reads(conn: Any, schema: str) -> tuple[int, int]:
    """Rows read by sequential scans and blocks fetched, in the schema, so far in this
    transaction (the server's per-transaction counters)."""
    row = await conn.fetchrow(
        "SELECT (SELECT coalesce(sum(seq_tup_read), 0) FROM pg_stat_xact_user_tables "
        "        WHERE schemaname = $1), "
        "       (SELECT coalesce(sum(pg_stat_get_xact_blocks_fetched(c.oid)), 0) "
        "        FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
        "        WHERE n.nspname = $1)",
        schema,
    )
    assert row is not None
    return int(row[0]), int(row[1])


async def test_append_cost_does_not_grow_with_the_table(schema: str) -> None:
    """Issue 13: the append path keeps one generic plan per pooled connection, made at its
    first call, here on empty tables. Once every table has grown (events, counters,
    sessions, runs), an append must still read what it touches, not scan: no more blocks
    into 100,000-row tables than into nearly empty ones (plus index depth). Cases: one
    event, a batch of 100, a retry of a stored batch (the dedup), a flush, a run save."""
    pool = await asyncpg.create_pool(BASE_DSN, min_size=1, max_size=1)
    try:
        store = PostgresSessionStore(pool=pool, schema=schema, auto_migrate=True)
        async with store:
            for table in ("events", "counters", "sessions", "runs"):
                await _raw(f'ALTER TABLE "{schema}".{table} SET (autovacuum_enabled = false)')
            retried = store._encode_batch(_events("r", 100))[0]
            for _ in range(10):  # past the five calls after which a generic plan may stick
                await store.append_events(_events("s", 1))
                await store.append_events(_events("s", 100))
                await store.flush(Session(id="f", agent_id="a"), Run(session_id="f"), [])
                await store.save_run(Run(session_id="f"))
            await store._fetch(store._sql_append_quiet, *store.append_args(retried), None)

            async def costs() -> dict[str, tuple[int, int]]:
                """Each write as the store's procedures run it, on its one pooled connection,
                in a transaction of its own (rolled back), with the reads it made."""
                one, _ = store._encode_batch(_events("s", 1))
                hundred, _ = store._encode_batch(_events("s", 100))
                flushed, _ = store._encode_batch(_events("f", 1))
                run = Run(session_id="f")
                cases: list[tuple[str, str, list[Any]]] = [
                    ("append 1", store._sql_append_quiet, [*store.append_args(one), None]),
                    ("append 100", store._sql_append_quiet, [*store.append_args(hundred), None]),
                    ("retry 100", store._sql_append_quiet, [*store.append_args(retried), None]),
                    (
                        "flush",
                        store._sql_flush_quiet,
                        [
                            *store.flush_args(
                                Session(id="f", agent_id="a"), "{}", run, "{}", flushed
                            ),
                            None,
                        ],
                    ),
                    (
                        "save_run",
                        f'SELECT "{schema}".save_run($1, $2, $3, $4, $5)',
                        [run.id, run.session_id, run.status.value, 0, "{}"],
                    ),
                ]
                found = {}
                async with pool.acquire() as conn:
                    for name, sql, args in cases:
                        tx = conn.transaction()
                        await tx.start()
                        try:
                            seq0, blocks0 = await _statement_reads(conn, schema)
                            await conn.fetch(sql, *args)
                            seq1, blocks1 = await _statement_reads(conn, schema)
                            found[name] = (seq1 - seq0, blocks1 - blocks0)
                        finally:
                            await tx.rollback()
                return found

            small = await costs()
            await _raw(
                f"""INSERT INTO "{schema}".events (session_id, seq, id, type, ts_us, data,
                                                 metadata, schema_version)
                SELECT 'other_' || (g % 100), g, 'evt_bulk_' || g, 'message_sent', 0,
                       repeat('x', 300), '{{}}', 1
                FROM generate_series(1, 100000) AS g;
                INSERT INTO "{schema}".counters (session_id, last_seq)
                SELECT 'bulk_' || g, 1 FROM generate_series(1, 100000) AS g;
                INSERT INTO "{schema}".sessions (id, agent_id, status, created_us, doc,
                                                 updated_us)
                SELECT 'bulk_' || g, 'a', 'active', g, '{{"x": "' || repeat('x', 200) || '"}}', g
                FROM generate_series(1, 100000) AS g;
                INSERT INTO "{schema}".runs (id, session_id, status, started_us, doc)
                SELECT 'run_bulk_' || g, 'bulk_' || g, 'completed', g,
                       '{{"x": "' || repeat('x', 200) || '"}}'
                FROM generate_series(1, 100000) AS g"""
            )
            big = await costs()
            for name in small:
                # a few more levels in each index, never the thousands of pages a scan of a
                # grown table reads
                assert big[name][0] == 0, f"{name} scans a table: {big[name]}"
                assert big[name][1] <= 3 * small[name][1] + 30, (name, small[name], big[name])
    finally:
        await pool.close()


async def _index_rows_read(conn: Any, schema: str) -> int:
    """Rows fetched by index and sequential scans in the schema, so far in this transaction."""
    value = await conn.fetchval(
        "SELECT coalesce(sum(coalesce(idx_tup_fetch, 0) + seq_tup_read), 0) "
        "FROM pg_stat_xact_user_tables WHERE schemaname = $1",
        schema,
    )
    return int(value)


async def test_an_import_chunk_reads_what_it_writes_not_the_session(schema: str) -> None:
    """A copy streams 1,000-event chunks into one session: each chunk must probe the indexes
    once per row, whatever the session already holds and however stale the statistics (a
    join the planner turned around read the whole session per chunk, 0.08x raw at 1M)."""
    pool = await asyncpg.create_pool(BASE_DSN, min_size=1, max_size=1)
    try:
        store = PostgresSessionStore(pool=pool, schema=schema, auto_migrate=True)
        async with store:
            await _raw(f'ALTER TABLE "{schema}".events SET (autovacuum_enabled = false)')

            async def one_chunk(start: int) -> int:
                events = [
                    Event(
                        id=f"imp_{start + i}",
                        type=EventType.MESSAGE_SENT,
                        session_id="s",
                        sequence_number=start + i,
                    )
                    for i in range(1000)
                ]
                args = store.import_args("s", None, [], store._numbered(events), start + 999)
                async with pool.acquire() as conn:
                    tx = conn.transaction()
                    await tx.start()
                    try:
                        before = await _index_rows_read(conn, schema)
                        await conn.fetch(store._sql_import, *args)
                        return await _index_rows_read(conn, schema) - before
                    finally:
                        await tx.rollback()

            await store.append_events(_events("s", 10))
            small = await one_chunk(11)
            await _raw(
                f"""INSERT INTO "{schema}".events (session_id, seq, id, type, ts_us, data,
                                                 metadata, schema_version)
                SELECT 's', g, 'evt_bulk_' || g, 'message_sent', 0, repeat('x', 300), '{{}}', 1
                FROM generate_series(11, 60010) AS g"""
            )
            big = await one_chunk(60011)
            assert big <= 2 * small + 100, f"one chunk read {big} rows (with 10 events: {small})"
    finally:
        await pool.close()


# ---------------------------------------------------------------------------- schema v1 -> v2

V1_SCHEMA = (Path(__file__).parent / "postgres_v1_schema.sql").read_text(encoding="utf-8")


async def test_a_version_1_database_migrates_with_its_data(schema: str) -> None:
    """A schema built by the released version 1 (its exact DDL and functions), written by
    those functions, migrates in place: everything reads back, numbering continues, and
    the v2 behaviour (conditional append, updated_at touch) works on the old rows."""
    from agent_session_store.codec import encode_event, encode_run, encode_session
    from agent_session_store.postgres.schema import render

    v1 = render(V1_SCHEMA, schema)
    q = f'"{schema}"'
    session = Session(id="s", agent_id="a", updated_at=datetime(2020, 1, 2, 3, 4, 5, 6, UTC))
    run = Run(session_id="s")
    old = _events("s", 5) + _events("other", 2)
    conn = await asyncpg.connect(BASE_DSN)
    try:
        async with conn.transaction():
            await conn.execute(f"CREATE SCHEMA {q}")
            await conn.execute(
                f"CREATE TABLE {q}.schema_migrations (version integer PRIMARY KEY, "
                "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            await conn.execute(v1)
            await conn.execute(
                f"INSERT INTO {q}.schema_migrations (version, name) VALUES (1, $1)",
                MIGRATIONS[0][1],
            )
        rows = [encode_event(e, 1 << 20) for e in old]
        flushed = await conn.fetch(
            f"SELECT * FROM {q}.flush($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
            "$11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
            session.id,
            session.agent_id,
            session.status.value,
            int(session.created_at.timestamp() * 1_000_000),
            encode_session(session),
            run.id,
            run.session_id,
            run.status.value,
            int(run.started_at.timestamp() * 1_000_000),
            encode_run(run),
            *zip(*rows),
        )
        assert sorted(r["seq"] for r in flushed) == [1, 1, 2, 2, 3, 4, 5]
    finally:
        await conn.close()

    store = PostgresSessionStore.from_url(f"{BASE_DSN}?schema={schema}")
    with pytest.raises(MigrationRequiredError):
        await store.open()
    await store.migrate()
    async with store:
        assert await store.get_session("s") == session  # updated_at as the doc has it
        assert await store.list_sessions() == [session]
        assert await store.get_run(run.id) == run
        got = await store.get_events("s")
        assert [(e.id, e.sequence_number, e.data) for e in got] == [
            (e.id, i + 1, e.data) for i, e in enumerate(old[:5])
        ]
        assert [e.sequence_number for e in await store.get_events("other")] == [1, 2]
        assert [e.id for e in await store.get_events("s", order="desc", limit=2)] == [
            old[4].id,
            old[3].id,
        ]
        with pytest.raises(StoreError) as info:
            await store.append_events(_events("s", 1), expected_sequence=4)
        assert info.value.code == "sequence_conflict"
        [new] = await store.append_events(_events("s", 1), expected_sequence=5)
        assert new.sequence_number == 6
        assert (await store.get_session("s")).updated_at > session.updated_at  # touched
    # workers still running version 1 code keep working during a rolling upgrade
    late = encode_event(_events("s", 1)[0], 1 << 20)
    again = await _raw(
        f"SELECT seq FROM {q}.append_events($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        *([value] for value in late),
    )
    assert [r["seq"] for r in again] == [7]
    rows2 = await _raw(f"SELECT version FROM {q}.schema_migrations ORDER BY 1")
    assert [r["version"] for r in rows2] == [v for v, _, _ in MIGRATIONS] == [1, 2, 3, 4, 5, 6, 7]


async def test_a_version_2_database_migrates_its_rows_into_the_query_columns(
    schema: str,
) -> None:
    """Version 3 derives the query columns from the documents: rows written by version 2
    (its tables and functions) are backfilled, so every query answers for them at once,
    and version 2 code still running (a rolling upgrade) fills them too."""
    from agent_session_store.codec import encode_run, encode_session
    from agent_session_store.postgres.schema import FUNCTIONS, render

    q = f'"{schema}"'
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    sessions = [
        Session(id="a", agent_id="x", tags=["t1", "t2"], created_at=t0, updated_at=t0),
        Session(id="b", agent_id="y", created_at=t0, updated_at=t0, deleted_at=t0),
    ]
    runs = [
        Run(
            id="r1",
            session_id="a",
            started_at=t0,
            provider="anthropic",
            provider_metadata={"model": "claude-sonnet-4"},
            token_usage={"input_tokens": 1000, "output_tokens": 500.7},
        ),
        Run(id="r2", session_id="a", started_at=t0, token_usage={"total_tokens": 7}, cost_usd=2.5),
    ]
    conn = await asyncpg.connect(BASE_DSN)
    try:
        async with conn.transaction():
            await conn.execute(f"CREATE SCHEMA {q}")
            await conn.execute(
                f"CREATE TABLE {q}.schema_migrations (version integer PRIMARY KEY, "
                "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for version, name, sql in MIGRATIONS[:2]:
                await conn.execute(render(sql, schema))
                await conn.execute(
                    f"INSERT INTO {q}.schema_migrations VALUES ($1, $2)", version, name
                )
            await conn.execute(render(FUNCTIONS, schema))  # v2's write functions, unchanged
        for session in sessions:  # as version 2's save_session writes them
            await conn.execute(
                f"INSERT INTO {q}.sessions (id, agent_id, status, created_us, doc, updated_us) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                session.id,
                session.agent_id,
                session.status.value,
                int(session.created_at.timestamp() * 1_000_000),
                encode_session(session),
                int(session.updated_at.timestamp() * 1_000_000),
            )
        for run in runs:
            await conn.execute(
                f"SELECT {q}.save_run($1, $2, $3, $4, $5)",
                run.id,
                run.session_id,
                run.status.value,
                int(run.started_at.timestamp() * 1_000_000),
                encode_run(run),
            )
    finally:
        await conn.close()
    store = PostgresSessionStore.from_url(f"{BASE_DSN}?schema={schema}")
    with pytest.raises(MigrationRequiredError):
        await store.open()
    await store.migrate()
    async with store:
        assert [s.id for s in (await store.search_sessions(tags=["t2"])).items] == ["a"]
        assert [s.id for s in (await store.search_sessions()).items] == ["a"]
        everyone = await store.search_sessions(include_deleted=True)
        assert [s.id for s in everyone.items] == ["a", "b"]  # a's runs touched it
        usage = await store.get_usage_summary()
        assert (usage.total_input_tokens, usage.total_output_tokens, usage.total_tokens) == (
            1000,
            500,
            1507,
        )
        assert (await store.get_cost_summary()).total_cost_usd == pytest.approx(
            2.5 + (1000 * 3 + 500 * 15) / 1e6
        )
        ordered = await store.search_runs(order_by="token_usage_desc")
        assert [r.id for r in ordered.items] == ["r1", "r2"]
        assert (
            await store.hard_delete_expired_sessions(
                RetentionPolicy(hard_delete_after_days=1), now=t0 + timedelta(days=2)
            )
            == 1
        )
    # version 2 code writing after the migration fills the columns through the triggers
    late = Run(id="r3", session_id="a", provider="openai", token_usage={"input_tokens": 5})
    await _raw(
        f"SELECT {q}.save_run($1, $2, $3, $4, $5)",
        late.id,
        late.session_id,
        late.status.value,
        int(late.started_at.timestamp() * 1_000_000),
        encode_run(late),
    )
    async with PostgresSessionStore.from_url(f"{BASE_DSN}?schema={schema}") as store:
        assert (await store.get_usage_summary(provider="openai")).total_tokens == 5


# ---------------------------------------------------------------------------- error codes


async def test_terminated_backends_are_connection_failures(schema: str) -> None:
    """Issue 12 item 9: backends killed under load (pg_terminate_backend, as a failover or an
    admin does) give storage_connection_failed, never storage_error, whatever asyncpg calls
    it (InternalClientError "cannot switch to state ..." among others); the store recovers."""
    pids: set[int] = set()

    async def remember(conn: asyncpg.Connection) -> None:
        pids.add(conn.get_server_pid())

    pool = await asyncpg.create_pool(BASE_DSN, min_size=4, max_size=4, init=remember)
    codes: dict[str, int] = {}
    raw: list[BaseException] = []
    try:
        store = PostgresSessionStore(pool=pool, schema=schema, auto_migrate=True)
        async with store:
            stop = asyncio.Event()

            async def worker(w: int) -> None:
                sid = f"s{w}"
                for i in itertools.count():
                    if stop.is_set():
                        return
                    calls: list[Callable[[], Awaitable[Any]]] = [
                        lambda: store.append_events(_events(sid, 20)),
                        lambda: store.get_events(sid, limit=50, order="desc"),
                        lambda: store.save_session(Session(id=sid, agent_id="a")),
                        lambda: store.flush(
                            Session(id=sid, agent_id="a"), Run(session_id=sid), _events(sid, 2)
                        ),
                    ]
                    try:
                        await calls[i % 4]()
                        codes["ok"] = codes.get("ok", 0) + 1
                    except StoreError as err:
                        codes[err.code] = codes.get(err.code, 0) + 1
                    except BaseException as exc:
                        raw.append(exc)

            workers_ = [asyncio.create_task(worker(w)) for w in range(8)]
            killer = await asyncpg.connect(BASE_DSN)
            try:
                for _ in range(60):
                    await asyncio.sleep(0.02)
                    victims = list(pids)
                    pids.clear()
                    await killer.execute(
                        "SELECT pg_terminate_backend(p) FROM unnest($1::int[]) AS p", victims
                    )
            finally:
                stop.set()
                await asyncio.gather(*workers_)
                await killer.close()
            assert raw == []
            assert codes.get("storage_connection_failed", 0) > 0, codes  # the faults happened
            assert set(codes) <= {"ok", "storage_connection_failed"}, codes
            # and the store works again
            await store.append_events(_events("after", 1))
            assert await store.get_latest_sequence("after") == 1
    finally:
        await pool.close()


async def test_command_timeout_is_not_an_unreachable_database(schema: str, pg_url: str) -> None:
    """A statement stuck behind a lock past command_timeout says so (storage_error), instead of
    'cannot reach the database'; the store keeps working once the lock is gone."""
    async with PostgresSessionStore.from_url(f"{pg_url}&command_timeout=0.5") as store:
        await store.append_events(_events("s", 1))
        holder = await asyncpg.connect(BASE_DSN)
        try:
            tx = holder.transaction()
            await tx.start()
            await holder.execute(
                f'SELECT 1 FROM "{schema}".counters WHERE session_id = $1 FOR UPDATE', "s"
            )
            with pytest.raises(StoreError) as info:
                await store.append_events(_events("s", 1))
            await tx.rollback()
        finally:
            await holder.close()
        assert info.value.code == "storage_error"
        assert info.value.details["reason"] == "command_timeout"
        assert "command_timeout (0.5 s)" in info.value.message
        assert "cannot reach" not in info.value.message
        assert len(await store.append_events(_events("s", 1))) == 1


async def test_wrong_credentials_and_missing_database_say_what_to_fix(
    own_cluster: OwnCluster, schema: str
) -> None:
    """Issue 14 item 10: each of wrong password, unknown role and missing database has its own
    message naming the fix; none is 'cannot reach the database' and none shows the password."""
    wrong = own_cluster.url(schema, password="not-the-password")
    cases = {
        "password_rejected": (wrong, ["rejected the password", "PGPASSWORD", ".pgpass"]),
        "unknown_role": (
            pg_dsn(user="nosuchrole") + f"?schema={schema}",
            ["no role 'nosuchrole'", "CREATE ROLE"],
        ),
        "unknown_database": (
            pg_dsn(database="nosuchdb") + f"?schema={schema}",
            ["no database 'nosuchdb'", "createdb", "CREATE DATABASE"],
        ),
    }
    for reason, (url, phrases) in cases.items():
        store = open_session_store(url)
        for attempt in (store.open, store.migrate):
            with pytest.raises(StoreError) as info:
                await attempt()
            err = info.value
            assert err.code == "storage_error", (reason, err)
            assert err.details.get("reason") == reason, (reason, err)
            assert all(p in err.message for p in phrases), (reason, err.message)
            assert "cannot reach" not in err.message
            assert "not-the-password" not in str(err) + repr(err.details)
            assert err.__cause__ is not None
        await store.close()
    # the right password works on the same server
    async with open_session_store(f"{own_cluster.url(schema)}&auto_migrate=true") as store:
        assert (await store.append_event_with_sequence(_events("s", 1)[0])).sequence_number == 1


async def test_settings_the_server_refuses_are_validation_errors(schema: str) -> None:
    """A startup parameter the server refuses (given in a DSN, which goes to the driver as
    is) is a validation_error quoting the server, not 'cannot reach the database'."""
    for dsn, phrase in (
        (f"{BASE_DSN}?statement_timeout=soon", 'invalid value for parameter "statement_timeout"'),
        (f"{BASE_DSN}?no_such_setting=1", 'unrecognized configuration parameter "no_such_setting"'),
    ):
        store = PostgresSessionStore(dsn, schema=schema, auto_migrate=True)
        with pytest.raises(ValidationError) as info:
            await store.open()
        assert phrase in info.value.message and "cannot reach" not in info.value.message
        await store.close()


async def test_unknown_url_option_is_refused_with_the_valid_ones(schema: str) -> None:
    """Issue 14 item 10: an unknown ?option is a validation_error listing the valid options,
    raised before anything connects; known driver options still pass."""
    with pytest.raises(ValidationError) as info:
        open_session_store(f"{BASE_DSN}?schema={schema}&max_sise=3&pool=big")
    message = info.value.message
    assert "'max_sise', 'pool'" in message
    for valid in ("schema", "max_size", "command_timeout", "sslmode", "application_name"):
        assert valid in message
    url = f"{BASE_DSN}?schema={schema}&auto_migrate=true&application_name=my-worker"
    async with open_session_store(url) as store:
        assert await store._fetchval("SELECT current_setting('application_name')") == "my-worker"


async def test_health_check_finds_each_injected_inconsistency(
    pg: PostgresSessionStore, schema: str
) -> None:
    await pg.save_session(Session(id="s", agent_id="a"))
    await pg.append_events(_events("s", 3))
    await pg.save_run(Run(id="ok", session_id="s"))
    assert await pg.health_check() == []
    await _raw(f"""UPDATE "{schema}".counters SET last_seq = 1 WHERE session_id = 's'""")
    assert await pg.health_check() == ["session 's': counter 1 is below event 3"]
    await _raw(f"""DELETE FROM "{schema}".counters WHERE session_id = 's'""")
    assert await pg.health_check() == ["session 's': counter 0 is below event 3"]
    await pg.save_run(Run(id="orphan", session_id="gone"))
    problems = await pg.health_check()
    assert len(problems) == 2 and "'orphan'" in problems[0]
