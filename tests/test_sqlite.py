"""The SQLite backend against the shared contract, plus what only SQLite has: schema versions,
damaged or unwritable files, group commit, WAL, and keeping blocking work off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent_session_store import urls
from agent_session_store.base import EventQuery
from agent_session_store.codec import encode_event, encode_run, encode_session
from agent_session_store.errors import StorageError, StoreError
from agent_session_store.models import (
    Event,
    EventType,
    Run,
    RunStatus,
    Session,
    SessionStatus,
    to_micros,
)
from agent_session_store.query import EventSearch, Position, RunFilter, RunSearch, SessionSearch
from agent_session_store.retention import RetentionPolicy
from agent_session_store.sqlite import (
    MIGRATIONS,
    SCHEMA_VERSION,
    SQLiteSessionStore,
    events_sql,
    sessions_sql,
)
from agent_session_store.sqlite.queries import (
    DELETED_BEFORE,
    EVENT_STATS,
    count_expired_sql,
    run_groups_sql,
    search_events_sql,
    search_runs_sql,
    search_sessions_sql,
)
from agent_session_store.sqlite.reads import _NEWEST_PAYLOADS
from agent_session_store.sqlite.schema import EVENT_COLUMNS, LAST_CHANGE, LAST_SEQ_AND_CHANGE
from agent_session_store.sqlite.watcher import _CHANGED_SINCE
from agent_session_store.testing import DurableSessionStoreContract
from agent_session_store.testing.waiting import QueryCount


def open_session_store(url: str) -> SQLiteSessionStore:
    """``urls.open_session_store``, narrowed for tests that read backend attributes."""
    store = urls.open_session_store(url)
    assert isinstance(store, SQLiteSessionStore), store
    return store


class TestSQLiteSessionStore(DurableSessionStoreContract):
    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path}/s.db?auto_migrate=true"


def ev(session_id: str = "s", **kw: Any) -> Event:
    return Event(type=EventType.MESSAGE_SENT, session_id=session_id, **kw)


async def expect(code: str, awaitable: Any) -> StoreError:
    with pytest.raises(StoreError) as info:
        await awaitable
    assert info.value.code == code, str(info.value)
    return info.value


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteSessionStore]:
    async with SQLiteSessionStore(tmp_path / "s.db", auto_migrate=True) as s:
        yield s


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait for a condition another thread brings about (bounded, so a bug fails the test)."""
    for _ in range(20_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never became true")


def watched(store: SQLiteSessionStore) -> dict[str, int]:
    """The sessions the store's cross-process watcher follows."""
    return {} if store._watcher is None else store._watcher.watched(store)


SCHEMA_VERSION_ROW = "SELECT value FROM meta WHERE key = 'schema_version'"


def raw(path: Path | str) -> sqlite3.Connection:
    """A plain sqlite3 connection to the store's file, as another program would open it."""
    return sqlite3.connect(path, isolation_level=None, timeout=30)


# ---------------------------------------------------------------- opening and URLs


def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_session_store("sqlite:///data/rel.db")
    assert relative.path == str(tmp_path / "data" / "rel.db")
    absolute = open_session_store(f"sqlite:///{tmp_path}/abs.db?auto_migrate=true")
    assert absolute.path == str(tmp_path / "abs.db") and absolute.auto_migrate
    tuned = open_session_store(
        "sqlite:///t.db?synchronous=normal&busy_timeout=2.5&readers=2&max_event_bytes=1000"
    )
    assert (tuned.synchronous, tuned.busy_timeout, tuned.max_event_bytes) == ("normal", 2.5, 1000)
    assert not tuned.auto_migrate
    assert tuned._readers.size == 2


def test_reader_threads_default_to_the_free_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """One per core the event loop leaves, 1 to 4 (sqlite/readers.py says why)."""
    import os

    from agent_session_store.sqlite import readers

    for cores, expected in ((1, 1), (2, 1), (3, 2), (5, 4), (64, 4)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda _pid, n=cores: set(range(n)))
        assert readers.default_readers() == expected
        assert open_session_store("sqlite:///d.db")._readers.size == expected


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///x.db?bogus=1",
        "sqlite:///x.db?auto_migrate=maybe",
        "sqlite:///x.db?synchronous=off",
        "sqlite:///x.db?busy_timeout=soon",
        "sqlite:///x.db?readers=0",
        "sqlite://host/x.db",
        "sqlite://",
        "sqlite:///:memory:",
    ],
)
def test_bad_urls_are_validation_errors(url: str) -> None:
    with pytest.raises(StoreError) as info:
        open_session_store(url)
    assert info.value.code == "validation_error"


# ---------------------------------------------------------------- schema versions


@pytest.mark.parametrize("kind", ["missing", "zero bytes", "empty database"])
async def test_a_blank_file_gets_its_schema_without_auto_migrate(tmp_path: Path, kind: str) -> None:
    """Issue 14.5: the embedded default starts with no flag, as every peer's SQLite store does."""
    path = tmp_path / "new.db"
    if kind == "zero bytes":
        path.touch()
    elif kind == "empty database":
        with contextlib.closing(raw(path)) as conn:
            conn.execute("PRAGMA user_version = 0")  # a valid SQLite file with no tables
            conn.execute("VACUUM")
    async with open_session_store(f"sqlite:///{path}") as store:
        stored = await store.append_event_with_sequence(ev())
        assert await store.get_events("s") == [stored]
    with contextlib.closing(raw(path)) as conn:
        assert conn.execute(SCHEMA_VERSION_ROW).fetchall() == [(str(SCHEMA_VERSION),)]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_database_without_schema_needs_migration(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with contextlib.closing(raw(path)) as conn:
        conn.execute("CREATE TABLE unrelated (x)")
    err = await expect("migration_required", SQLiteSessionStore(path).open())
    assert "has no schema" in err.message


#: The schema version 1 made, verbatim: what a file written by the first release holds.
V1_DDL = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    """CREATE TABLE IF NOT EXISTS events (
        session_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        run_id TEXT,
        timestamp_us INTEGER NOT NULL,
        data TEXT NOT NULL,
        metadata TEXT NOT NULL,
        schema_version INTEGER NOT NULL,
        provider TEXT,
        correlation_id TEXT,
        PRIMARY KEY (session_id, seq)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS events_by_run ON events (session_id, run_id, seq)"
    " WHERE run_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS events_by_type ON events (session_id, type, seq)",
    "CREATE TABLE IF NOT EXISTS seqs (session_id TEXT PRIMARY KEY,"
    " last_seq INTEGER NOT NULL) WITHOUT ROWID",
    """CREATE TABLE IF NOT EXISTS sessions (
        id TEXT PRIMARY KEY,
        agent_id TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at_us INTEGER NOT NULL,
        doc TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS sessions_by_created ON sessions (created_at_us, id)",
    "CREATE INDEX IF NOT EXISTS sessions_by_status ON sessions (status, created_at_us, id)",
    "CREATE INDEX IF NOT EXISTS sessions_by_agent ON sessions (agent_id, created_at_us, id)",
    "CREATE INDEX IF NOT EXISTS sessions_by_agent_status"
    " ON sessions (agent_id, status, created_at_us, id)",
    """CREATE TABLE IF NOT EXISTS runs (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at_us INTEGER NOT NULL,
        doc TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS runs_by_session ON runs (session_id, started_at_us, id)",
    "CREATE INDEX IF NOT EXISTS runs_by_session_status"
    " ON runs (session_id, status, started_at_us, id)",
    "INSERT INTO meta VALUES ('schema_version', '1')",
)


def make_v1_database(path: Path) -> tuple[Session, Run, list[Event]]:
    """A version-1 file with a session, a run and events, written as release 1 wrote them."""
    session = Session(id="old", agent_id="a", updated_at=datetime(2025, 5, 5, 1, 2, 3, 4, UTC))
    run = Run(id="r1", session_id="old")
    events = [
        ev("old", id=f"e{n}", run_id="r1", data={"n": n}).replace(sequence_number=n)
        for n in (1, 2, 3)
    ]
    with contextlib.closing(raw(path)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        for statement in V1_DDL:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
            ("old", "a", "active", to_micros(session.created_at), encode_session(session)),
        )
        conn.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?)",
            ("r1", "old", "running", to_micros(run.started_at), encode_run(run)),
        )
        for e in events:
            conn.execute(
                f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*encode_event(e), e.sequence_number),
            )
        conn.execute("INSERT INTO seqs VALUES ('old', 3)")
    return session, run, events


async def test_a_v1_database_needs_migration_then_migrates_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    session, run, events = make_v1_database(path)
    store = SQLiteSessionStore(path)
    err = await expect("migration_required", store.open())
    assert "schema version 1" in err.message and err.details["needed"] == SCHEMA_VERSION
    await store.migrate()
    await store.migrate()  # the explicit step is idempotent
    async with store:  # the same object opens once the schema is current
        assert await store.get_session("old") == session  # updated_at kept to the µs
        assert await store.list_sessions() == [session]
        assert await store.get_run("r1") == run
        assert await store.get_events("old") == events
        assert await store.get_events("old", order="desc", limit=2) == events[:0:-1]
        assert await store.get_latest_sequence("old") == 3
        stored = await store.append_event_with_sequence(ev("old"), expected_sequence=3)
        assert stored.sequence_number == 4
        assert (await store.get_session("old")).updated_at > session.updated_at  # C5
    with contextlib.closing(raw(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute(SCHEMA_VERSION_ROW).fetchall() == [(str(SCHEMA_VERSION),)]


def add_v1_query_rows(path: Path) -> tuple[Session, Run]:
    """A tagged, soft-deleted session and a costed run with usage, as release 1 stored them:
    only in their docs, which the version 3 migration must read back into columns."""
    gone = Session(
        id="tagged",
        agent_id="b",
        status=SessionStatus.COMPLETED,
        tags=["x", "y"],
        updated_at=datetime(2025, 1, 1, tzinfo=UTC),
        deleted_at=datetime(2025, 2, 1, tzinfo=UTC),
    )
    run = Run(
        id="r2",
        session_id="tagged",
        status=RunStatus.COMPLETED,
        provider="anthropic",
        provider_metadata={"model": "claude-sonnet-4"},
        token_usage={"input_tokens": 1000, "output_tokens": 500.7},
        cost_usd=0.25,
    )
    with contextlib.closing(raw(path)) as conn:
        conn.execute(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
            ("tagged", "b", "completed", to_micros(gone.created_at), encode_session(gone)),
        )
        conn.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?)",
            ("r2", "tagged", "completed", to_micros(run.started_at), encode_run(run)),
        )
    return gone, run


async def test_migrating_to_v3_backfills_what_queries_need(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    session, run, _ = make_v1_database(path)
    gone, costed = add_v1_query_rows(path)
    async with SQLiteSessionStore(path, auto_migrate=True) as store:
        assert await store.health_check() == []  # tag rows and run agents built in step
        assert [s.id for s in (await store.search_sessions()).items] == ["old"]
        found = await store.search_sessions(tags=["x", "y"], include_deleted=True)
        assert found.items == [gone]
        assert (await store.search_sessions(tags=["x"])).items == []  # deleted_at backfilled
        assert [r.id for r in (await store.search_runs(agent_id="b")).items] == ["r2"]
        assert (await store.search_runs(provider="anthropic")).items == [costed]
        assert [r.id for r in (await store.search_runs(min_tokens=1500)).items] == ["r2"]
        usage = await store.get_usage_summary()
        assert (usage.run_count, usage.total_input_tokens, usage.total_tokens) == (2, 1000, 1500)
        cost = await store.get_cost_summary()
        assert cost.total_cost_usd == 0.25 and cost.unmapped_runs == 1
        stats = await store.get_session_stats("old")
        assert (stats.event_count, stats.run_count, stats.latest_sequence) == (3, 1, 3)
        assert (await store.search_events(session_ids="old", order_by="sequence_asc")).items
        report = await store.run_maintenance(
            RetentionPolicy(), now=datetime(2025, 6, 1, tzinfo=UTC)
        )
        assert report.sessions_hard_deleted == 1 and report.errors == []
        assert await store.get_run("r1") == run
        assert (await store.get_session("old")).id == session.id


def make_v3_database(path: Path) -> list[Event]:
    """A version-3 file (the schema before ``events_by_seq`` was dropped) with events."""
    events = [
        ev(f"s{n % 2}", id=f"e{n}", run_id="r1", data={"n": n}).replace(sequence_number=n // 2 + 1)
        for n in range(6)
    ]
    with contextlib.closing(raw(path)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.create_function("iso_micros", 1, lambda text: None)
        conn.create_function("fact", 2, lambda doc, index: None)
        for version, statements in MIGRATIONS:
            if version <= 3:
                for statement in statements:
                    conn.execute(statement)
        conn.execute("INSERT INTO meta VALUES ('schema_version', '3')")
        for e in events:
            conn.execute(
                f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*encode_event(e), e.sequence_number),
            )
        conn.execute("INSERT INTO seqs VALUES ('s0', 3, 1), ('s1', 3, 1)")
    return events


def event_indexes(path: Path) -> set[str]:
    with contextlib.closing(raw(path)) as conn:
        sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'"
        return {r[0] for r in conn.execute(sql)}


async def test_migrating_v3_to_v4_drops_the_sequence_index_and_keeps_the_events(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v3.db"
    events = make_v3_database(path)
    assert "events_by_seq" in event_indexes(path)
    err = await expect("migration_required", SQLiteSessionStore(path).open())
    assert "schema version 3" in err.message and err.details["needed"] == SCHEMA_VERSION
    async with SQLiteSessionStore(path, auto_migrate=True) as store:
        assert await store.get_events("s0") == events[0::2]
        page = await store.search_events(order_by="sequence_asc", limit=4)
        assert [e.id for e in page.items] == ["e0", "e1", "e2", "e3"]  # (sequence, id)
        rest = await store.search_events(cursor=page.cursor, order_by="sequence_asc")
        assert [e.id for e in rest.items] == ["e4", "e5"]
        stored = await store.append_event_with_sequence(ev("s1"), expected_sequence=3)
        assert stored.sequence_number == 4
    assert "events_by_seq" not in event_indexes(path)
    assert {"events_by_time", "events_by_type", "events_by_session_time"} <= event_indexes(path)
    with contextlib.closing(raw(path)) as conn:
        assert conn.execute(SCHEMA_VERSION_ROW).fetchall() == [(str(SCHEMA_VERSION),)]


async def test_auto_migrate_upgrades_a_v1_database_on_open(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    session, _, events = make_v1_database(path)
    async with SQLiteSessionStore(path, auto_migrate=True) as store:
        assert await store.get_session("old") == session
        assert await store.get_events("old") == events


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    await SQLiteSessionStore(path).migrate()
    with contextlib.closing(raw(path)) as conn:
        conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    err = await expect("storage_error", SQLiteSessionStore(path, auto_migrate=True).open())
    assert "999" in err.message and "upgrade" in err.message


async def test_processes_migrating_at_once_all_succeed(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    code = (
        "import asyncio, sys\n"
        "from agent_session_store.sqlite import SQLiteSessionStore\n"
        "asyncio.run(SQLiteSessionStore(sys.argv[1]).migrate())\n"
    )
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, str(path), stderr=subprocess.PIPE
        )
        for _ in range(4)
    ]
    outcomes = [(await p.wait(), (await p.stderr.read()).decode()) for p in procs]  # type: ignore[union-attr]
    assert outcomes == [(0, "")] * 4
    async with SQLiteSessionStore(path) as store:  # no auto_migrate needed now
        assert await store.get_latest_sequence("s") == 0
    with contextlib.closing(raw(path)) as conn:
        assert conn.execute(SCHEMA_VERSION_ROW).fetchall() == [(str(SCHEMA_VERSION),)]


# ---------------------------------------------------------------- damaged or unwritable files


@pytest.mark.parametrize("auto_migrate", [False, True])
async def test_a_file_that_is_not_sqlite_is_a_clear_storage_error(
    tmp_path: Path, auto_migrate: bool
) -> None:
    path = tmp_path / "notes.db"
    text = "these are my notes, not a database\n" * 200
    path.write_text(text)
    err = await expect("storage_error", SQLiteSessionStore(path, auto_migrate=auto_migrate).open())
    assert str(path) in err.message and "not a SQLite database" in err.message
    assert isinstance(err.__cause__, sqlite3.DatabaseError)
    assert path.read_text() == text  # and it was left alone


@contextlib.contextmanager
def read_only_directory(path: Path) -> Iterator[None]:
    """Make a directory really refuse new files, also for root (who ignores mode bits):
    root gets the immutable attribute, everyone else a 0o555 mode."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)
        undo = ["chattr", "-i", str(path)]
    else:
        path.chmod(0o555)
        undo = ["chmod", "755", str(path)]
    try:
        with pytest.raises(OSError):  # the set-up itself must hold, or the test proves nothing
            (path / "probe").touch()
        yield
    finally:
        subprocess.run(undo, check=True)


async def test_new_database_in_read_only_directory(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    with read_only_directory(folder):
        store = SQLiteSessionStore(folder / "s.db", auto_migrate=True)
        err = await expect("storage_error", store.open())
        assert str(folder / "s.db") in err.message and "writable" in err.message
        assert isinstance(err.__cause__, sqlite3.Error)
        await expect("storage_error", store.migrate())


async def test_existing_database_in_directory_made_read_only(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "s.db"
    async with SQLiteSessionStore(path, auto_migrate=True) as store:
        await store.append_event(ev())
    with read_only_directory(folder):  # WAL needs to create its -wal and -shm files there
        err = await expect("storage_error", SQLiteSessionStore(path).open())
        assert str(path) in err.message and "writable" in err.message
    async with SQLiteSessionStore(path) as store:  # writable again: all still there
        assert await store.get_latest_sequence("s") == 1


async def test_lock_held_too_long_is_a_storage_error_not_a_sqlite_one(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SQLiteSessionStore(path, auto_migrate=True, busy_timeout=0.2) as store:
        with contextlib.closing(raw(path)) as other:
            other.execute("BEGIN IMMEDIATE")  # another program keeps the write lock
            # a StorageError, with the contract's "retrying may succeed" code
            err = await expect("storage_connection_failed", store.append_event(ev()))
            assert isinstance(err, StorageError) and err.details["reason"] == "busy"
            assert "locked" in err.message and str(path) in err.message
            assert isinstance(err.__cause__, sqlite3.OperationalError)
            other.execute("ROLLBACK")
        stored = await store.append_event_with_sequence(ev())  # nothing was consumed
        assert stored.sequence_number == 1


# ---------------------------------------------------------------- atomicity at the storage level


def fail_on_event(path: Path, event_id: str) -> None:
    """A real trigger in the file that makes inserting one event id fail inside SQLite."""
    with contextlib.closing(raw(path)) as conn:
        conn.execute(
            f"CREATE TRIGGER fail_{event_id} BEFORE INSERT ON events "
            f"WHEN NEW.id = '{event_id}' BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )


async def test_flush_failing_inside_sqlite_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SQLiteSessionStore(path, auto_migrate=True) as store:
        fail_on_event(path, "boom")
        session = Session(id="s", agent_id="a")
        run = Run(id="r", session_id="s")
        events = [ev(id="e1"), ev(id="boom"), ev(id="e3")]
        err = await expect("storage_error", store.flush(session, run, events))
        assert "injected failure" in err.message
        assert isinstance(err.__cause__, sqlite3.IntegrityError)
        await expect("session_not_found", store.get_session("s"))
        await expect("run_not_found", store.get_run("r"))
        assert await store.get_latest_sequence("s") == 0
        assert await store.get_events("s") == []
        # an existing session and run are not changed either
        await store.flush(session, run, [ev(id="ok")])
        flushed = await store.get_session("s")  # updated_at touched by the flush (C5)
        assert flushed.replace(updated_at=session.updated_at) == session
        changed = session.with_status("failed")
        await expect("storage_error", store.flush(changed, run.with_status("failed"), events))
        assert await store.get_session("s") == flushed
        assert await store.get_run("r") == run
        assert [e.id for e in await store.get_events("s")] == ["ok"]
        # e1 was not kept: it is still new, and numbering goes on from 1
        again = await store.append_events([ev(id="e1"), ev(id="e3")])
        assert [e.sequence_number for e in again] == [2, 3]


# ---------------------------------------------------------------- group commit


async def hold_writer_then_submit(
    store: SQLiteSessionStore, path: Path, calls: list[Any]
) -> list[Any]:
    """Make ``calls`` reach the writer thread together, so they share one transaction.

    Another connection holds the write lock; a first write (the plug) is taken by the writer
    thread, which then waits for the lock. Everything submitted meanwhile queues behind it
    and is drained as one group once the lock is released.
    """
    with contextlib.closing(raw(path)) as other:
        other.execute("BEGIN IMMEDIATE")
        plug = asyncio.create_task(store.save_session(Session(id="plug", agent_id="a")))
        await asyncio.sleep(0)  # the plug is queued...
        await eventually(lambda: store._writer.queue.qsize() == 0)  # ...and the writer has taken it
        tasks = [asyncio.ensure_future(c) for c in calls]
        # each task runs up to its queued request (a large payload is encoded in a thread first)
        await eventually(lambda: store._writer.queue.qsize() == len(calls))
        other.execute("COMMIT")
    await plug
    return list(await asyncio.gather(*tasks, return_exceptions=True))


async def test_concurrent_appenders_share_a_commit_and_a_failure_stays_its_own(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    async with SQLiteSessionStore(path, auto_migrate=True) as store:
        await store.append_event(ev("s", id="already"))
        fail_on_event(path, "boom")
        before = (store.transactions, store.requests)
        calls: list[Coroutine[Any, Any, Any]] = [
            store.append_event_with_sequence(ev("s", data={"i": i})) for i in range(6)
        ]
        calls.append(store.append_events([ev("s", id="x1"), ev("s", id="boom")]))  # fails
        calls += [store.append_event_with_sequence(ev("s", data={"i": i})) for i in range(6, 9)]
        calls.append(store.append_events([ev("s", id="x2"), ev("s", id="already")]))
        calls.append(store.append_event_with_sequence(ev("other")))
        calls.append(store.delete_session("gone"))
        results = await hold_writer_then_submit(store, path, calls)
        # the plug, then ONE transaction for all 13 requests
        assert (store.transactions - before[0], store.requests - before[1]) == (2, 14)
        failed = results[6]
        assert isinstance(failed, StoreError) and failed.code == "storage_error"
        singles = [r for i, r in enumerate(results[:10]) if i != 6]
        assert [e.sequence_number for e in singles] == list(range(2, 11))
        assert [e.data["i"] for e in singles] == list(range(9))
        x2, already = results[10]
        assert (x2.id, x2.sequence_number, already.sequence_number) == ("x2", 11, 1)
        assert results[11].sequence_number == 1 and results[12] is None
        stored = await store.get_events("s")
        assert [e.sequence_number for e in stored] == list(range(1, 12))
        assert stored[1:10] == singles and stored[10] == x2
        assert "x1" not in {e.id for e in stored}  # rolled back with its own request only
        assert await store.get_latest_sequence("s") == 11


async def limit_file_pages(store: SQLiteSessionStore, spare_pages: int) -> None:
    """A real "database or disk is full": cap the writer connection's file size (SQLite's
    max_page_count) a few pages above what the file holds now."""

    def cap(_: None) -> None:
        conn = store._writer.conn
        assert conn is not None
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages + spare_pages}")

    await store._writer.submit(cap, in_tx=False)


async def test_a_full_disk_fails_only_the_request_that_filled_it(tmp_path: Path) -> None:
    """Issue 12.3: SQLITE_FULL rolls back the whole transaction, not just a savepoint; the
    request that hit it gets its own error and the rest of the group is written anyway."""
    path = tmp_path / "s.db"
    async with SQLiteSessionStore(path, auto_migrate=True) as store:
        await store.append_event(ev("s", id="first"))
        await limit_file_pages(store, 30)
        big = ev("s", id="big", data={"text": "x" * 1_000_000})  # ~250 pages
        calls: list[Coroutine[Any, Any, Any]] = [
            store.append_event_with_sequence(ev("s", id=f"a{i}")) for i in range(3)
        ]
        calls.append(store.append_event_with_sequence(big))
        calls += [store.append_event_with_sequence(ev("s", id=f"b{i}")) for i in range(3)]
        calls.append(store.save_session(Session(id="s", agent_id="a")))
        results = await hold_writer_then_submit(store, path, calls)
        failed = results[3]
        assert isinstance(failed, StoreError) and failed.code == "storage_error", failed
        assert "is full" in failed.message and "savepoint" not in failed.message
        assert failed.details.get("sqlite_error") == "SQLITE_FULL"
        others = [r for i, r in enumerate(results[:7]) if i != 3]
        assert [e.id for e in others] == ["a0", "a1", "a2", "b0", "b1", "b2"]
        assert [e.sequence_number for e in others] == [2, 3, 4, 5, 6, 7]
        assert results[7] is None
        assert await store.get_events("s", after=1) == others
        assert (await store.get_session("s")).agent_id == "a"
        assert await store.get_latest_sequence("s") == 7


async def test_conditional_appends_in_one_group_see_each_other(tmp_path: Path) -> None:
    """Within one group commit each request checks the counter the previous ones left, and a
    refused one leaves it as it was."""
    path = tmp_path / "s.db"
    async with SQLiteSessionStore(path, auto_migrate=True) as store:
        await store.append_event(ev("s", id="one"))
        calls = [
            store.append_event_with_sequence(ev("s", id="a"), expected_sequence=1),
            store.append_event_with_sequence(ev("s", id="b"), expected_sequence=1),  # stale
            store.append_events([ev("s", id="c"), ev("s", id="d")], expected_sequence=2),
            store.append_event_with_sequence(ev("s", id="a"), expected_sequence=0),  # a retry
            store.flush(
                Session(id="s", agent_id="x"), Run(id="r", session_id="s"), [], expected_sequence=3
            ),  # stale
            store.append_event_with_sequence(ev("s", id="e"), expected_sequence=4),
        ]
        a, b, cd, retry, flushed, e = await hold_writer_then_submit(store, path, calls)
        assert a.sequence_number == 2 and retry == a
        assert isinstance(b, StoreError) and b.code == "sequence_conflict"
        assert b.details == {"session_id": "s", "expected": 1, "actual": 2}
        assert [x.sequence_number for x in cd] == [3, 4]
        assert isinstance(flushed, StoreError) and flushed.details["actual"] == 4
        assert e.sequence_number == 5
        assert [x.id for x in await store.get_events("s")] == ["one", "a", "c", "d", "e"]
        await expect("session_not_found", store.get_session("s"))


async def test_updated_at_follows_the_order_of_requests_in_a_group(tmp_path: Path) -> None:
    """C5 within one group commit: a save after an append keeps the saved value; an append
    after a save moves it to the commit time."""
    path = tmp_path / "s.db"
    old = datetime(2020, 1, 1, tzinfo=UTC)
    async with SQLiteSessionStore(path, auto_migrate=True) as store:
        calls = [
            store.append_event(ev("kept")),
            store.save_session(Session(id="kept", agent_id="a", updated_at=old)),
            store.save_session(Session(id="moved", agent_id="a", updated_at=old)),
            store.append_event(ev("moved")),
            store.append_event(ev("norecord")),
        ]
        await hold_writer_then_submit(store, path, calls)
        assert (await store.get_session("kept")).updated_at == old
        moved = await store.get_session("moved")
        assert moved.updated_at > old
        listed = {s.id: s.updated_at for s in await store.list_sessions()}
        assert (listed["kept"], listed["moved"]) == (old, moved.updated_at)
        await expect("session_not_found", store.get_session("norecord"))


async def test_delete_inside_a_group_resets_numbering_for_later_requests(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SQLiteSessionStore(path, auto_migrate=True) as store:
        await store.append_events([ev("s"), ev("s")])
        calls = [
            store.append_event_with_sequence(ev("s", id="third")),
            store.delete_session("s"),
            store.append_event_with_sequence(ev("s", id="fresh")),
            store.append_event_with_sequence(ev("s", id="third")),  # deleted, so new again
        ]
        third, _, fresh, third_again = await hold_writer_then_submit(store, path, calls)
        assert third.sequence_number == 3
        assert (fresh.sequence_number, third_again.sequence_number) == (1, 2)
        assert [e.id for e in await store.get_events("s")] == ["fresh", "third"]


async def test_many_concurrent_appenders_each_get_their_own_results(
    store: SQLiteSessionStore,
) -> None:
    async def appender(w: int) -> list[Event]:
        out = []
        for i in range(25):
            if i % 5 == 4:
                out += await store.append_events(
                    [ev(f"w{w}", data={"i": i, "k": k}) for k in (0, 1)]
                )
            else:
                out.append(await store.append_event_with_sequence(ev(f"w{w}", data={"i": i})))
        return out

    results = await asyncio.gather(*(appender(w) for w in range(16)))
    assert store.requests / store.transactions > 1  # they did share commits
    for w, got in enumerate(results):
        assert [e.sequence_number for e in got] == list(range(1, 31))
        assert all(e.session_id == f"w{w}" for e in got)
        assert await store.get_events(f"w{w}") == got


# ---------------------------------------------------------------- WAL, threads, loop


async def test_database_is_in_wal_mode(store: SQLiteSessionStore) -> None:
    await store.append_event(ev())
    assert await asyncio.to_thread(os.path.exists, store.path + "-wal")
    with contextlib.closing(raw(store.path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_blocking_work_runs_off_the_event_loop(store: SQLiteSessionStore) -> None:
    """While a large batch is written and read back, the loop keeps turning: a task that
    only yields counts many turns. Were SQLite work done on the loop, it would count none."""
    events = [ev("big", data={"i": i, "text": "x" * 200}) for i in range(20_000)]
    turns = 0
    done = False

    async def ticker() -> None:
        nonlocal turns
        while not done:
            turns += 1
            await asyncio.sleep(0)

    async def measured(work: Any) -> int:
        nonlocal done, turns
        done, turns = False, 0
        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        start = turns
        await work
        done = True
        await task
        return turns - start

    assert await measured(store.append_events(events)) > 50
    assert await measured(store.get_events("big")) > 50
    assert await store.get_latest_sequence("big") == 20_000


async def test_close_stops_every_thread(tmp_path: Path) -> None:
    earlier = set(threading.enumerate())  # another test's store is not this one's business

    def ours() -> list[str]:
        return [
            t.name
            for t in threading.enumerate()
            if t not in earlier and "agent-session-store-sqlite" in t.name
        ]

    store = await SQLiteSessionStore(tmp_path / "s.db", auto_migrate=True).open()
    waiting = asyncio.create_task(store.get_events("s", wait_timeout_ms=60_000))
    await store.append_events([ev("x") for _ in range(100)])  # decoded beside the commit
    await store.get_latest_sequence("s")
    await eventually(lambda: bool(watched(store)))  # the reader's session is watched
    assert len(ours()) >= 3  # writer, readers, watcher
    await store.close()
    assert await waiting == []
    assert ours() == []
    await expect("storage_error", store.append_event(ev()))


@pytest.mark.parametrize("turns", [1, 2, 3, 4])
async def test_readers_starting_while_the_store_closes_get_nothing(
    tmp_path: Path, turns: int
) -> None:
    """Issue 12.7: a long-poll reader caught by close() at any step of its start returns []."""
    store = await SQLiteSessionStore(tmp_path / "s.db", auto_migrate=True).open()
    readers = [
        asyncio.create_task(store.get_events(f"s{i}", wait_timeout_ms=30_000)) for i in range(20)
    ]
    for _ in range(turns):
        await asyncio.sleep(0)
    await store.close()
    assert await asyncio.gather(*readers) == [[]] * 20


async def test_watch_ends_with_the_last_waiter(store: SQLiteSessionStore) -> None:
    readers = [
        asyncio.create_task(store.get_events("s", after=0, wait_timeout_ms=30_000))
        for _ in range(3)
    ]
    await eventually(lambda: "s" in watched(store))
    stored = await store.append_event_with_sequence(ev())
    assert await asyncio.gather(*readers) == [[stored]] * 3
    assert watched(store) == {}


# ---------------------------------------------------------------- the cross-process watcher

APPEND_FROM_ANOTHER_PROCESS = (
    "import asyncio, sys\n"
    "from agent_session_store.models import Event, EventType\n"
    "from agent_session_store.sqlite import SQLiteSessionStore\n"
    "async def main():\n"
    "    async with SQLiteSessionStore(sys.argv[1]) as store:\n"
    "        await store.append_event(Event(type=EventType.MESSAGE_SENT, session_id=sys.argv[2]))\n"
    "asyncio.run(main())\n"
)


async def append_from_another_process(path: Path | str, session_id: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", APPEND_FROM_ANOTHER_PROCESS, str(path), session_id
    )
    assert await proc.wait() == 0


def test_a_second_event_loop_is_refused_at_once_not_left_waiting(tmp_path: Path) -> None:
    """Issue 12.4: after the first asyncio.run() returns, the store does not quietly wait on a
    dead loop (readers woken only at their timeout): a new loop is refused at once, with a
    message that says what to do, as on every backend."""
    path = tmp_path / "s.db"
    store = SQLiteSessionStore(path, auto_migrate=True)

    async def first() -> None:
        await store.open()
        assert await store.get_events("s", wait_timeout_ms=50) == []  # the watcher ran here

    async def second() -> float:
        started = time.monotonic()
        with pytest.raises(StoreError) as info:
            await store.get_events("s", wait_timeout_ms=30_000)
        assert info.value.details["reason"] == "wrong_event_loop"
        assert "another event loop" in info.value.message
        await store.close()
        return time.monotonic() - started

    asyncio.run(first())
    assert asyncio.run(second()) < 5


def _forked_child_waits(path: str) -> None:
    """In a child forked while the parent's watcher runs: is a reader here woken at once?"""

    async def main() -> float:
        async with SQLiteSessionStore(path) as store:
            waiting = asyncio.create_task(store.get_events("child", wait_timeout_ms=30_000))
            await eventually(lambda: "child" in watched(store))
            await append_from_another_process(path, "child")
            appended = time.monotonic()
            assert len(await waiting) == 1
            return time.monotonic() - appended

    os._exit(0 if asyncio.run(main()) < 5 else 1)


def test_a_process_forked_with_an_open_store_watches_for_itself(tmp_path: Path) -> None:
    """One watcher per file per process: a forked child must not inherit the parent's (its
    thread does not exist in the child)."""
    path = str(tmp_path / "s.db")
    ready, done = threading.Event(), threading.Event()

    async def parent() -> None:  # on its own thread: the forking thread runs no event loop
        async with SQLiteSessionStore(path, auto_migrate=True) as store:
            waiting = asyncio.create_task(store.get_events("parent", wait_timeout_ms=60_000))
            await eventually(lambda: "parent" in watched(store))  # the watcher thread runs
            await store.append_event(ev("parent"))
            await waiting
            # Now every thread of the store idles outside SQLite (its watcher waits for a
            # waiter): forking cannot catch one holding a SQLite lock.
            await eventually(lambda: watched(store) == {})
            ready.set()
            await asyncio.to_thread(done.wait)

    side = threading.Thread(target=asyncio.run, args=(parent(),))
    side.start()
    try:
        assert ready.wait(30)
        child = multiprocessing.get_context("fork").Process(
            target=_forked_child_waits, args=(path,)
        )
        child.start()
        child.join(60)
        assert child.exitcode == 0
    finally:
        done.set()
        side.join(30)


async def test_a_session_watched_while_the_watcher_polls_is_not_missed(
    store: SQLiteSessionStore,
) -> None:
    """Issue 12.4: the watcher reads data_version BEFORE it copies the watched sessions. Here a
    session is watched, and changed by another connection, just after the copy; the next
    version change must still reach it."""
    watcher = store._watcher
    assert watcher is not None
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()
    copy = watcher._watched_now
    armed = True

    def copy_then_race() -> list[str]:
        nonlocal armed
        sids = copy()
        if armed:  # once: between the copy and the counters check of this poll
            armed = False
            watcher.watch("someone", "late", 0, lambda _: woken.set(), loop)
            code = [sys.executable, "-c", APPEND_FROM_ANOTHER_PROCESS, store.path, "late"]
            subprocess.run(code, check=True)
        return sids

    watcher._watched_now = copy_then_race  # type: ignore[method-assign]
    waiting = asyncio.create_task(store.get_events("first", wait_timeout_ms=30_000))
    try:
        async with asyncio.timeout(60):  # includes starting the other process, on a busy box
            await woken.wait()
    finally:
        watcher.unwatch("someone", "late")
        await store.append_event(ev("first"))
        await waiting


async def test_a_poll_that_read_before_a_newer_commit_wakes_nobody_unsure(
    store: SQLiteSessionStore,
) -> None:
    """The watcher reads what changed, then takes its lock to apply it; this store's own
    commits move its subscriber on in between (under load the watcher thread is descheduled
    there). The stale row must not move the subscriber back, nor wake every reader "unsure"
    (seen in CI: the 1,000-filtered-waiters test counted 10 re-queries)."""
    watcher = store._watcher
    assert watcher is not None
    queries = QueryCount(store)
    read, go = threading.Event(), threading.Event()
    armed = False
    real_check = watcher._check_changes

    class Held:
        """The watcher's connection, whose change read is held after it has fetched."""

        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def execute(self, sql: str, params: Any = ()) -> Any:
            nonlocal armed
            cursor = self.conn.execute(sql, params)
            if sql == _CHANGED_SINCE and armed:
                armed = False
                rows = cursor.fetchall()
                read.set()
                go.wait(60)
                return _Rows(rows)
            return cursor

    watcher._check_changes = lambda conn, cursor: real_check(Held(conn), cursor)  # type: ignore[method-assign, arg-type]
    await store.append_event(ev())  # 1
    waiting = asyncio.create_task(
        store.get_events("s", type="tool_call_started", wait_timeout_ms=60_000)
    )
    await eventually(lambda: store._waiters.sleeping("s") == 1)
    before = queries.calls
    armed = True
    await store.append_event(ev())  # 2: the watcher reads it and is held
    assert await asyncio.to_thread(read.wait, 60)
    await store.append_event(ev())  # 3, applied by this store while the watcher is held
    go.set()
    hit = await store.append_event_with_sequence(
        Event(type=EventType.TOOL_CALL_STARTED, session_id="s")
    )  # 4: for the reader
    assert await asyncio.wait_for(waiting, 30) == [hit]
    assert queries.calls - before == 1, f"{queries.calls - before - 1} re-queries, none usable"
    assert watched(store) == {}


class _Rows:
    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows

    def fetchall(self) -> list[Any]:
        return self.rows


def watcher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "agent-session-store-sqlite-watcher"]


def thread_cpu_seconds(thread: threading.Thread) -> float:
    """CPU time one thread has used (Linux), so other work in the process does not count."""
    stat = Path(f"/proc/self/task/{thread.native_id}/schedstat").read_text()
    return int(stat.split()[0]) / 1e9


async def test_one_idle_watcher_per_file_per_process(tmp_path: Path) -> None:
    """Issue 12.15: ten stores on one file, 1,000 idle waiters: one watcher thread, using
    well under 1 % of a CPU while nothing changes."""
    path = tmp_path / "s.db"
    stores = [await SQLiteSessionStore(path, auto_migrate=True).open() for _ in range(10)]
    try:
        waiting = [
            asyncio.create_task(stores[i % 10].get_events(f"s{i}", wait_timeout_ms=60_000))
            for i in range(1000)
        ]
        await eventually(lambda: all(len(watched(s)) == 100 for s in stores))
        [thread] = watcher_threads()
        await asyncio.sleep(0.6)  # past the quiet period
        before, start = thread_cpu_seconds(thread), time.monotonic()
        await asyncio.sleep(1)
        busy = (thread_cpu_seconds(thread) - before) / (time.monotonic() - start)
        assert busy < 0.01, f"the idle watcher used {busy:.1%} of a CPU"
        # and it still wakes a reader of any of those stores at once
        await append_from_another_process(path, "s7")
        assert len(await waiting[7]) == 1
    finally:
        for s in stores:
            await s.close()
    assert watcher_threads() == []
    # released by close; each task still needs its turn on the loop to finish
    _, pending = await asyncio.wait(waiting, timeout=10)
    assert not pending, f"{len(pending)} readers still waiting after close"


# ---------------------------------------------------------------- query plans


def plan(path: str, sql: str, params: list[Any]) -> str:
    with contextlib.closing(raw(path)) as conn:
        return " | ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (EventQuery("s", after=10, limit=5), "PRIMARY KEY"),
        (EventQuery("s", before=10), "PRIMARY KEY"),
        (EventQuery("s", run_id="r"), "events_by_run"),
        (EventQuery("s", type="tool_call_started", after=3), "events_by_type"),
        (EventQuery("s", limit=1000, desc=True), "PRIMARY KEY"),
        (EventQuery("s", after=10, before=500, limit=5, desc=True), "PRIMARY KEY"),
        (EventQuery("s", run_id="r", limit=5, desc=True), "events_by_run"),
        (EventQuery("s", type="tool_call_started", before=9, desc=True), "events_by_type"),
    ],
)
async def test_event_pages_are_index_ranges_without_sorting(
    store: SQLiteSessionStore, query: EventQuery, index: str
) -> None:
    """Cost follows what is returned (contract 3.9): an index range, never a scan or a sort."""
    text = plan(store.path, *events_sql(query))
    assert index in text and "TEMP B-TREE" not in text and "SCAN" not in text, text


async def test_newest_payloads_walk_the_primary_key_backwards(store: SQLiteSessionStore) -> None:
    """get_newest_payloads(limit=50) of a long session is one indexed read of 50 rows."""
    text = plan(store.path, _NEWEST_PAYLOADS, ["s", 50])
    assert "PRIMARY KEY" in text and "TEMP B-TREE" not in text and "SCAN" not in text, text


@pytest.mark.parametrize(
    ("status", "agent_id", "index"),
    [
        (None, None, "sessions_by_created"),
        ("active", None, "sessions_by_status"),
        (None, "a", "sessions_by_agent"),
        ("active", "a", "sessions_by_agent_status"),
    ],
)
async def test_list_sessions_walks_an_index_in_list_order(
    store: SQLiteSessionStore, status: str | None, agent_id: str | None, index: str
) -> None:
    """Filters skip rows through an index (contract 3.3): no sort, no filtering scan."""
    for i in range(50):  # enough rows for the planner to care
        await store.save_session(Session(id=f"s{i}", agent_id=f"a{i % 3}"))
    text = plan(store.path, *sessions_sql(status, agent_id, 50, 0))
    assert index in text and "TEMP B-TREE" not in text, text


async def test_the_watchers_change_check_reads_only_what_changed(
    store: SQLiteSessionStore,
) -> None:
    """Issue 12.15: the watcher's look at the file is an index range over the counters moved
    since its last look, whatever the number of watched sessions."""
    await store.append_events([ev(f"s{i}") for i in range(50)])
    writers: tuple[tuple[str, list[Any]], ...] = ((LAST_CHANGE, []), (LAST_SEQ_AND_CHANGE, ["s1"]))
    for sql, params in ((_CHANGED_SINCE, [10]), *writers):
        text = plan(store.path, sql, params)
        scans = [s for s in text.split(" | ") if s.startswith("SCAN") and s != "SCAN CONSTANT ROW"]
        assert "seqs_by_change" in text and not scans and "TEMP B-TREE" not in text, text
    with contextlib.closing(raw(store.path)) as conn:
        assert {r[2] for r in conn.execute(_CHANGED_SINCE, (0,))} == {1}  # one commit
        assert conn.execute(_CHANGED_SINCE, (1,)).fetchall() == []
    await store.append_event(ev("s7"))
    with contextlib.closing(raw(store.path)) as conn:
        assert conn.execute(_CHANGED_SINCE, (1,)).fetchall() == [("s7", 2, 2)]


def test_migrations_are_numbered_in_order() -> None:
    assert [v for v, _ in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))


# ---------------------------------------------------------------- query plans (contract 7.8)


async def fill(path: Path) -> None:
    """Rows as wide as real ones (1 KB session docs, 300-byte payloads), so the planner
    weighs an index walk against a scan as it would in use."""
    async with SQLiteSessionStore(path, auto_migrate=True) as store:
        await asyncio.gather(
            *(
                store.save_session(
                    Session(
                        id=f"s{i}",
                        agent_id=f"a{i % 4}",
                        status=(
                            SessionStatus.ACTIVE,
                            SessionStatus.COMPLETED,
                            SessionStatus.FAILED,
                        )[i % 3],
                        tags=["t", f"u{i % 5}"] if i % 2 else [],
                        metadata={"notes": "n" * 1000},
                    )
                )
                for i in range(200)
            )
        )
        await asyncio.gather(
            *(
                store.save_run(
                    Run(
                        id=f"r{i}",
                        session_id=f"s{i % 20}",
                        provider=("anthropic", "openai")[i % 2],
                        token_usage={"input_tokens": i, "output_tokens": 2 * i},
                    )
                )
                for i in range(200)
            )
        )
        await store.append_events(
            [
                ev(
                    f"s{i % 20}",
                    run_id=f"r{i % 200}",
                    provider=("anthropic", None)[i % 2],
                    correlation_id=f"c{i % 7}" if i % 3 == 0 else None,
                    data={"text": "x" * 300},
                )
                for i in range(2000)
            ]
        )


@pytest.fixture(scope="module")
def filled_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("plans") / "q.db"
    asyncio.run(fill(path))
    return str(path)


@pytest.fixture
async def filled(filled_path: str) -> AsyncIterator[SQLiteSessionStore]:
    async with SQLiteSessionStore(filled_path) as store:
        yield store


def assert_index_walk(text: str, index: str) -> None:
    """The named index is walked; no sort of the matches, no scan of a table."""
    assert index in text, text
    assert "TEMP B-TREE" not in text, text
    for step in text.split(" | "):
        assert not step.startswith("SCAN") or "USING" in step, text


NOW_US = to_micros(datetime(2026, 1, 1, tzinfo=UTC))
AFTER = (NOW_US, "m")

SESSION_PLANS = [
    (SessionSearch(), "sessions_by_updated"),
    (SessionSearch(order_by="created_at_asc"), "sessions_by_created"),
    (SessionSearch(order_by="created_at_desc", include_deleted=True), "sessions_by_created"),
    (SessionSearch(agent_id="a1"), "sessions_by_agent_updated"),
    (SessionSearch(agent_id="a1", order_by="created_at_asc"), "sessions_by_agent"),
    (SessionSearch(statuses=("active",)), "sessions_by_status_updated"),
    (SessionSearch(statuses=("active", "failed")), "sessions_by_status_updated"),
    (SessionSearch(statuses=("failed",), order_by="created_at_desc"), "sessions_by_status"),
    (SessionSearch(tags=("t",)), "session_tags_by_updated"),
    (SessionSearch(tags=("t", "u1"), order_by="created_at_asc"), "session_tags_by_created"),
    (SessionSearch(updated_after_us=NOW_US), "sessions_by_updated"),
    (SessionSearch(created_before_us=NOW_US, order_by="created_at_desc"), "sessions_by_created"),
]


@pytest.mark.parametrize(("q", "index"), SESSION_PLANS)
@pytest.mark.parametrize("after", [None, AFTER])
def test_search_sessions_walks_an_index_in_page_order(
    filled_path: str, q: SessionSearch, index: str, after: Position | None
) -> None:
    assert_index_walk(plan(filled_path, *search_sessions_sql(q, after, 50)), index)


RUN_PLANS = [
    (RunSearch(), "runs_by_started"),
    (RunSearch(order_by="started_at_asc"), "runs_by_started"),
    (RunSearch(order_by="token_usage_desc", min_tokens=10), "runs_by_tokens"),
    (RunSearch(session_id="s1"), "runs_by_session"),
    (RunSearch(agent_id="a1"), "runs_by_agent"),
    (RunSearch(provider="openai"), "runs_by_provider"),
    (RunSearch(statuses=("running", "failed")), "runs_by_status"),
    (RunSearch(started_after_us=NOW_US), "runs_by_started"),
]


@pytest.mark.parametrize(("q", "index"), RUN_PLANS)
@pytest.mark.parametrize("after", [None, AFTER])
def test_search_runs_walks_an_index_in_page_order(
    filled_path: str, q: RunSearch, index: str, after: Position | None
) -> None:
    assert_index_walk(plan(filled_path, *search_runs_sql(q, after, 50)), index)


EVENT_PLANS = [
    (EventSearch(), "events_by_time"),
    (EventSearch(order_by="timestamp_desc"), "events_by_time"),
    (EventSearch(session_ids=("s1",)), "events_by_session_time"),
    (EventSearch(session_ids=("s1", "s2"), order_by="sequence_asc"), "PRIMARY KEY"),
    (EventSearch(run_ids=("r1", "r2")), "events_by_run_time"),
    (EventSearch(types=("message_sent",)), "events_by_type_time"),
    (EventSearch(providers=("anthropic",)), "events_by_provider_time"),
    (EventSearch(correlation_id="c1"), "events_by_correlation_time"),
    (EventSearch(since_us=NOW_US, until_us=NOW_US + 10), "events_by_time"),
]


@pytest.mark.parametrize(("q", "index"), EVENT_PLANS)
@pytest.mark.parametrize("after", [None, AFTER])
def test_search_events_walks_an_index_in_page_order(
    filled_path: str, q: EventSearch, index: str, after: Position | None
) -> None:
    assert_index_walk(plan(filled_path, *search_events_sql(q, after, 100)), index)


@pytest.mark.parametrize(
    ("q", "index"),
    [
        (EventSearch(order_by="sequence_asc"), "SCAN events"),
        (EventSearch(types=("message_sent",), order_by="sequence_asc"), "events_by_type_time"),
        (EventSearch(since_us=NOW_US, order_by="sequence_asc"), "events_by_time"),
    ],
)
def test_sequence_order_across_sessions_sorts_what_the_filters_find(
    filled_path: str, q: EventSearch, index: str
) -> None:
    """No index of its own since version 4 (no default ordering, contract 7.8): the matches
    are found the cheapest way there is, then sorted."""
    text = plan(filled_path, *search_events_sql(q, AFTER, 100))
    assert index in text and "TEMP B-TREE" in text, text
    assert "events_by_seq" not in text, text


@pytest.mark.parametrize(
    ("f", "index"),
    [
        (RunFilter(session_id="s1"), "runs_by_session"),
        (RunFilter(agent_id="a1"), "runs_by_agent"),
        (RunFilter(provider="openai", since_us=NOW_US), "runs_by_provider"),
        (RunFilter(since_us=NOW_US, until_us=NOW_US + 10), "runs_by_started"),
    ],
)
def test_run_aggregates_read_only_the_matched_runs(
    filled_path: str, f: RunFilter, index: str
) -> None:
    text = plan(filled_path, *run_groups_sql(f))
    assert f"SEARCH runs USING INDEX {index}" in text, text


def test_stats_and_retention_reads_are_index_searches(filled_path: str) -> None:
    every = plan(filled_path, *run_groups_sql(RunFilter()))
    assert every == "SCAN runs USING COVERING INDEX runs_by_group", every  # in group order
    text = plan(filled_path, EVENT_STATS, ["s1"] * 3)
    assert text.count("COVERING INDEX events_by_session_time (session_id=?)") == 3, text
    assert "SEARCH sessions USING INDEX sessions_by_deleted" in plan(
        filled_path, DELETED_BEFORE, [NOW_US]
    )
    where = count_expired_sql(NOW_US, ("active",), ("pinned",))
    assert "SEARCH sessions USING INDEX sessions_by_updated (updated_at_us<?)" in plan(
        filled_path, *where
    )


async def test_every_page_of_a_search_is_its_own_index_range(filled: SQLiteSessionStore) -> None:
    """The plans above hold for real pages: paging a filtered search visits each match once."""
    seen: list[str] = []
    cursor = None
    while True:
        page = await filled.search_sessions(
            tags=["t"], status=["active", "failed"], limit=7, cursor=cursor
        )
        seen += [s.id for s in page.items]
        if page.cursor is None:
            break
        cursor = page.cursor
    expected = [
        s.id
        for s in sorted(
            [s for s in await filled.list_sessions() if "t" in s.tags and s.status != "completed"],
            key=lambda s: (s.updated_at, s.id),
            reverse=True,
        )
    ]
    assert seen == expected and len(expected) > 20


# ---------------------------------------------------------------- derived rows kept in step


async def test_tag_rows_and_run_agents_follow_every_write(store: SQLiteSessionStore) -> None:
    await store.save_run(Run(id="early", session_id="s"))  # before its session exists
    await store.save_session(Session(id="s", agent_id="a", tags=["t", "t", "u"]))
    assert [r.id for r in (await store.search_runs(agent_id="a")).items] == ["early"]
    await store.save_session(Session(id="s", agent_id="b", tags=["u"]))
    assert (await store.search_runs(agent_id="a")).items == []
    assert [r.id for r in (await store.search_runs(agent_id="b")).items] == ["early"]
    assert (await store.search_sessions(tags=["t"])).items == []
    await store.save_session(Session(id="q", agent_id="b", tags=["u"]))
    await store.append_event(ev("s"))  # a touch moves the tag rows' sort value too
    assert [s.id for s in (await store.search_sessions(tags=["u"])).items] == ["s", "q"]
    await store.soft_delete_expired_sessions(
        RetentionPolicy(max_completed_session_age_days=1, exempt_statuses=()),
        now=datetime(2100, 1, 1, tzinfo=UTC),
    )
    assert (await store.search_sessions(tags=["u"])).items == []
    assert len((await store.search_sessions(tags=["u"], include_deleted=True)).items) == 2
    await store.delete_session("s")
    assert await store.health_check() == []
    with contextlib.closing(raw(store.path)) as conn:
        assert conn.execute("SELECT session_id, tag FROM session_tags").fetchall() == [("q", "u")]


async def test_health_check_finds_each_injected_inconsistency(store: SQLiteSessionStore) -> None:
    await store.save_session(Session(id="s", agent_id="a", tags=["t"]))
    await store.save_run(Run(id="r", session_id="s"))
    await store.append_events([ev("s"), ev("s")])
    assert await store.health_check() == []
    injections = [
        ("UPDATE seqs SET last_seq = 1 WHERE session_id = 's'", "counter 1 is below event 2"),
        ("DELETE FROM session_tags", "session_tags rows are out of step"),
        ("UPDATE runs SET agent_id = 'z'", "agent_id copy differs"),
    ]
    for sql, found in injections:
        with contextlib.closing(raw(store.path)) as conn:
            conn.execute(sql)
        problems = await store.health_check()
        assert any(found in p for p in problems), problems


async def test_saves_name_only_the_columns_that_changed(tmp_path: Path) -> None:
    """SQLite rewrites every index over a column an UPDATE names, even to the same value:
    re-saving a session and run (each flush does) must name only what changed. ``UPDATE OF``
    triggers fire exactly when their columns are named, so they show it."""
    path = tmp_path / "s.db"
    async with SQLiteSessionStore(path, auto_migrate=True) as store:
        session = Session(id="s", agent_id="a", tags=["t"])
        run = Run(id="r", session_id="s", provider="openai")
        await store.flush(session, run, [ev()])
        probe = sqlite3.connect(path)
        probe.executescript(
            "CREATE TABLE probe (what TEXT);"
            "CREATE TRIGGER probe_sessions AFTER UPDATE OF agent_id, status, created_at_us,"
            " deleted_at_us, tags ON sessions BEGIN INSERT INTO probe VALUES ('session'); END;"
            "CREATE TRIGGER probe_runs AFTER UPDATE OF session_id, status, started_at_us,"
            " provider, model, input_tokens, output_tokens, total_tokens, cost_usd, agent_id"
            " ON runs BEGIN INSERT INTO probe VALUES ('run'); END;"
        )
        probe.close()

        def fired() -> list[str]:
            with contextlib.closing(sqlite3.connect(path)) as conn:
                got = [r[0] for r in conn.execute("SELECT what FROM probe")]
                conn.execute("DELETE FROM probe")
                conn.commit()
                return got

        await store.flush(session.replace(metadata={"k": 1}), run, [ev()])
        await store.flush(session, run.replace(metadata={"k": 2}), [])
        await store.save_session(session.replace(context={"c": 1}))
        await store.save_run(run)
        assert fired() == []
        await store.flush(session.with_status("completed"), run, [ev()])
        assert fired() == ["session"]
        await store.save_run(run.with_status(RunStatus.COMPLETED))
        assert fired() == ["run"]
        got = await store.get_session("s")
        assert got is not None and got.status == SessionStatus.COMPLETED
        assert got.metadata == {} and got.context == {}  # the last save, as given
        stored = await store.get_run("r")
        assert stored is not None and stored.status == RunStatus.COMPLETED
        assert [s.id for s in (await store.search_sessions(tags=["t"])).items] == ["s"]
