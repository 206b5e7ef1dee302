"""The PostgreSQL backend: the shared contract, plus what only a real server can show.

Every test works in its own schema of the local ``test`` database and drops it afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from multiprocessing.synchronize import Barrier
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
from agent_session_store.testing import DurableSessionStoreContract, workers


def open_session_store(url: str) -> PostgresSessionStore:
    """``urls.open_session_store``, narrowed for tests that read backend attributes."""
    store = urls.open_session_store(url)
    assert isinstance(store, PostgresSessionStore), store
    return store


BASE_DSN = "postgresql://postgres@127.0.0.1:5432/test"
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


async def _realistic_data(conn: asyncpg.Connection, s: str) -> None:
    """Sessions over many agents and statuses, a few sessions with long logs and many runs,
    events of all sessions interleaved on disk as concurrent writers leave them; ANALYZE."""
    await conn.execute(
        f"""
        INSERT INTO {s}.sessions (id, agent_id, status, created_us, doc)
        SELECT 'ses_' || g, 'agent_' || (g % 20),
               (ARRAY['pending','active','paused','completed','failed','cancelled'])[g % 6 + 1],
               1700000000000000 + g * 1000, '{{}}'
        FROM generate_series(1, 30000) AS g;
        INSERT INTO {s}.runs (id, session_id, status, started_us, doc)
        SELECT 'run_' || g, CASE WHEN g <= 10000 THEN 'ses_big' ELSE 'ses_' || (g % 6000) END,
               (ARRAY['pending','running','completed','failed'])[g % 4 + 1],
               1700000000000000 + g * 1000, '{{}}'
        FROM generate_series(1, 30000) AS g;
        INSERT INTO {s}.events (session_id, seq, id, type, run_id, ts_us, data, metadata,
                                schema_version)
        SELECT 'ses_' || (g % 40), g / 40 + 1, 'evt_' || g,
               (ARRAY['message_sent','message_streamed','tool_call_started',
                      'tool_call_completed'])[(g / 40) % 4 + 1],
               'run_' || ((g / 40) % 2), 1700000000000000 + g, '{{"text":"hello"}}', '{{}}', 1
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
        ]:
            sql, args = pg.events_sql(q)
            cases.append((sql, args, index, paged))
        cases += [
            (pg.list_sessions_sql(False, False), [50, 100], "sessions_order", True),
            (pg.list_sessions_sql(True, False), [50, 100, "active"], "sessions_status", True),
            (pg.list_sessions_sql(False, True), [50, 0, "agent_3"], "sessions_agent", True),
            (pg.list_sessions_sql(False, True), [None, 0, "agent_3"], "sessions_agent", False),
            (
                pg.list_sessions_sql(True, True),
                [10, 5, "paused", "agent_3"],
                "sessions_agent_status",
                True,
            ),
            (pg.list_runs_sql(False), ["ses_17", None], "runs_session", False),
            (pg.list_runs_sql(False), ["ses_big", 20], "runs_session", True),
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
            assert len(ours) == 1 and "append_events" in ours[0]
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


def _pg_ctl(*args: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, "main", *args],
        check=True,
        capture_output=True,
    )


def _wait_until_ready() -> None:
    for _ in range(240):
        ready = subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"])
        if ready.returncode == 0:
            return
        time.sleep(0.25)
    raise AssertionError("PostgreSQL did not come back")


async def test_server_crash_and_restart(pg_url: str) -> None:
    """Kill the real server mid-run (immediate stop: no clean shutdown), then start it again.

    While it is down every call fails fast with storage_connection_failed; afterwards the
    same store object works, the waiting reader is woken, and every append that returned
    is stored with the number it was given, without gaps."""
    url = f"{pg_url}&connect_timeout=2&command_timeout=10"
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
            await asyncio.to_thread(_pg_ctl, "stop", "-m", "immediate")
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
            await asyncio.to_thread(_pg_ctl, "start")
            await asyncio.to_thread(_wait_until_ready)
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
        f"postgres://postgres:{secret}@127.0.0.1:5432/test?schema={schema}"
    )
    with pytest.raises(MigrationRequiredError) as info2:
        await unmigrated.open()
    failures.append(info2.value)
    assert "postgres:***@127.0.0.1" in info2.value.message
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
