"""The SQLite backend against the shared contract, plus what only SQLite has: schema versions,
damaged or unwritable files, group commit, WAL, and keeping blocking work off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_session_store import urls
from agent_session_store.base import EventQuery
from agent_session_store.errors import StoreError
from agent_session_store.models import Event, EventType, Run, Session
from agent_session_store.sqlite import (
    MIGRATIONS,
    SCHEMA_VERSION,
    SQLiteSessionStore,
    events_sql,
    sessions_sql,
)
from agent_session_store.testing import DurableSessionStoreContract


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


async def test_missing_database_needs_migration_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    err = await expect("migration_required", SQLiteSessionStore(path).open())
    assert "agent-session-store migrate" in err.message and "auto_migrate" in err.message
    assert str(path) in err.message
    assert not path.exists()


async def test_database_without_schema_needs_migration(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with contextlib.closing(raw(path)) as conn:
        conn.execute("CREATE TABLE unrelated (x)")
    err = await expect("migration_required", SQLiteSessionStore(path).open())
    assert "has no schema" in err.message


async def test_older_schema_needs_migration_then_explicit_migrate_opens(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with contextlib.closing(raw(path)) as conn:  # a file made by an older release
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute(f"INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION - 1}')")
    store = SQLiteSessionStore(path)
    err = await expect("migration_required", store.open())
    assert f"schema version {SCHEMA_VERSION - 1}" in err.message
    assert err.details["needed"] == SCHEMA_VERSION
    await store.migrate()
    await store.migrate()  # the explicit step is idempotent
    async with store:  # the same object opens once the schema is current
        stored = await store.append_event_with_sequence(ev())
        assert await store.get_events("s") == [stored]
    with contextlib.closing(raw(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT value FROM meta").fetchall() == [(str(SCHEMA_VERSION),)]


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
        assert conn.execute("SELECT value FROM meta").fetchall() == [(str(SCHEMA_VERSION),)]


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
            err = await expect("storage_error", store.append_event(ev()))
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
        changed = session.with_status("failed")
        await expect("storage_error", store.flush(changed, run.with_status("failed"), events))
        assert await store.get_session("s") == session
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
        await eventually(lambda: store._queue.qsize() == 0)  # ...and the writer has taken it
        tasks = [asyncio.ensure_future(c) for c in calls]
        await asyncio.sleep(0)  # each task runs up to its queued request
        assert store._queue.qsize() == len(calls)
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
    def ours() -> list[str]:
        return [t.name for t in threading.enumerate() if "agent-session-store-sqlite" in t.name]

    assert ours() == []
    store = await SQLiteSessionStore(tmp_path / "s.db", auto_migrate=True).open()
    waiting = asyncio.create_task(store.get_events("s", wait_timeout_ms=60_000))
    await store.append_events([ev("x") for _ in range(100)])  # decoded beside the commit
    await store.get_latest_sequence("s")
    await eventually(lambda: bool(store._watched))  # the reader's session is watched
    assert len(ours()) >= 3  # writer, readers, watcher
    await store.close()
    assert await waiting == []
    assert ours() == []
    await expect("storage_error", store.append_event(ev()))


async def test_watch_ends_with_the_last_waiter(store: SQLiteSessionStore) -> None:
    readers = [
        asyncio.create_task(store.get_events("s", after=0, wait_timeout_ms=30_000))
        for _ in range(3)
    ]
    await eventually(lambda: "s" in store._watched)
    stored = await store.append_event_with_sequence(ev())
    assert await asyncio.gather(*readers) == [[stored]] * 3
    assert store._watched == {}


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
    ],
)
async def test_event_pages_are_index_ranges_without_sorting(
    store: SQLiteSessionStore, query: EventQuery, index: str
) -> None:
    """Cost follows what is returned (contract 3.9): an index range, never a scan or a sort."""
    text = plan(store.path, *events_sql(query))
    assert index in text and "TEMP B-TREE" not in text and "SCAN" not in text, text


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


def test_migrations_are_numbered_in_order() -> None:
    assert [v for v, _ in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))
