"""Retry loops end: a fault that never clears gives a typed, retryable error within the
loop's deadline (hardening item 1), on the real backends, with the fault injected.

Each test is marked with a timeout so that an unbounded loop fails the test instead of
hanging the suite.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from agent_session_store import open_session_store
from agent_session_store.artifacts import s3 as s3_module
from agent_session_store.artifacts.memory import InMemoryArtifactStore
from agent_session_store.artifacts.s3 import S3ArtifactStore
from agent_session_store.errors import StorageError, StoreError
from agent_session_store.models import Event, EventType
from agent_session_store.postgres import store as pg_module
from agent_session_store.retry import RetryPolicy
from agent_session_store.sqlite.connection import Database
from backends import PG
from moto_s3 import S3Endpoint

pytestmark = pytest.mark.timeout(60)


def _events(session_id: str, n: int) -> list[Event]:
    return [
        Event(type=EventType.MESSAGE_STREAMED, session_id=session_id, data={"i": i})
        for i in range(n)
    ]


def _assert_gave_up(err: StoreError, attempts: int | None = None) -> None:
    assert isinstance(err, StorageError) and err.code == "storage_connection_failed", err
    assert err.details.get("reason") == "busy", err.details
    if attempts is not None:
        assert err.details.get("attempts") == attempts, err.details


# ---------------------------------------------------------------------------- PostgreSQL


async def test_postgres_serialization_failure_that_never_clears_gives_up_in_time(
    unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trigger makes the server abort every append with 40001: the store re-runs the
    transaction TX_RETRY allows, then raises storage_connection_failed (busy); nothing is stored."""
    policy = RetryPolicy(attempts=6, timeout=1.0, first_delay=0.005, max_delay=0.05)
    monkeypatch.setattr(pg_module, "TX_RETRY", policy, raising=False)
    store = open_session_store(f"{PG}?schema={unique_name}&auto_migrate=true")
    await store.open()
    conn = await asyncpg.connect(PG)
    try:
        await store.append_events(_events("s", 1))
        await conn.execute(
            f"""
            CREATE FUNCTION "{unique_name}".always_40001() RETURNS trigger LANGUAGE plpgsql
            AS $$ BEGIN
                RAISE EXCEPTION 'injected' USING ERRCODE = 'serialization_failure';
            END $$;
            CREATE TRIGGER always_40001 BEFORE INSERT ON "{unique_name}".events
            FOR EACH ROW EXECUTE FUNCTION "{unique_name}".always_40001();
            """
        )
        started = time.monotonic()
        with pytest.raises(StoreError) as info:
            await store.append_events(_events("s", 2))
        took = time.monotonic() - started
        _assert_gave_up(info.value, attempts=6)
        assert info.value.details.get("sqlstate") == "40001"
        assert took < 5.0, took
        assert await store.get_latest_sequence("s") == 1
    finally:
        await store.close()
        await conn.execute(f'DROP SCHEMA IF EXISTS "{unique_name}" CASCADE')
        await conn.close()


# ---------------------------------------------------------------------------- SQLite


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_sqlite_busy_that_never_clears_stops_at_the_busy_timeout(tmp_path: Path) -> None:
    """SQLITE_BUSY returned at once (no busy handler), for ever: retry_busy tries again
    with backoff and re-raises the busy error at its deadline, not later."""
    path = tmp_path / "busy.db"
    sqlite3.connect(path).execute("PRAGMA journal_mode = WAL").fetchone()
    holder = _hold_write_lock(path)
    tries = 0
    other = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)

    def begin() -> None:
        nonlocal tries
        tries += 1
        other.execute("BEGIN IMMEDIATE")

    db = Database(str(path), "full", busy_timeout=0.3)
    outcome: list[BaseException | None] = []
    thread = threading.Thread(target=lambda: outcome.append(_catch(db.retry_busy, begin)))
    started = time.monotonic()
    thread.start()
    thread.join(5.0)
    took = time.monotonic() - started
    holder.rollback()
    holder.close()
    thread.join()  # ends now that the lock is gone, whatever the loop does
    other.close()
    assert took < 2.0, f"retry_busy still running after {took:.1f} s"
    (exc,) = outcome
    assert isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc), exc
    assert tries > 3  # it did retry, with pauses, not once
    err = db.error(exc, "append")
    _assert_gave_up(err)


def _catch(fn: Any, arg: Any) -> BaseException | None:
    try:
        fn(arg)
    except BaseException as exc:
        return exc
    return None


async def test_sqlite_store_locked_for_ever_fails_retryable_then_recovers(
    tmp_path: Path,
) -> None:
    """Another process keeps the write lock: an append fails with storage_connection_failed (busy)
    within about busy_timeout, and succeeds once the lock is released."""
    path = tmp_path / "locked.db"
    store = open_session_store(f"sqlite:///{path}?auto_migrate=true&busy_timeout=0.3")
    await store.open()
    try:
        await store.append_events(_events("s", 1))
        holder = _hold_write_lock(path)
        try:
            started = time.monotonic()
            with pytest.raises(StoreError) as info:
                await store.append_events(_events("s", 1))
            took = time.monotonic() - started
        finally:
            holder.rollback()
            holder.close()
        _assert_gave_up(info.value)
        assert took < 3.0, took
        await store.append_events(_events("s", 1))
        assert await store.get_latest_sequence("s") == 2
    finally:
        await store.close()


# ---------------------------------------------------------------------------- S3


def _s3(s3_endpoint: S3Endpoint, prefix: str) -> S3ArtifactStore:
    url = s3_endpoint.store_url(prefix, part_size=str(5 << 20), multipart_threshold=str(5 << 20))
    return S3ArtifactStore.from_url(url)


async def test_s3_conflict_that_never_clears_gives_up_at_the_deadline(
    s3_endpoint: S3Endpoint, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every create-only put answered 409 ConditionalRequestConflict (a fault wrapper around
    the real client call): the put retries until CONFLICT_RETRY's deadline, then raises."""
    monkeypatch.setattr(
        s3_module,
        "CONFLICT_RETRY",
        RetryPolicy(timeout=0.5, first_delay=0.01, max_delay=0.05),
        raising=False,
    )
    async with _s3(s3_endpoint, f"{unique_name}/") as store:
        real_call = store._call
        calls = 0

        async def conflicting(operation: str, key: str | None, fn: Any, **kw: Any) -> Any:
            nonlocal calls
            if operation == "put":
                calls += 1
                raise StorageError(
                    "injected 409", details={"s3_code": "ConditionalRequestConflict"}
                )
            return await real_call(operation, key, fn, **kw)

        monkeypatch.setattr(store, "_call", conflicting)
        started = time.monotonic()
        with pytest.raises(StoreError) as info:
            await store.put("k", b"x", if_absent=True)
        took = time.monotonic() - started
        _assert_gave_up(info.value)
        assert info.value.details["s3_code"] == "ConditionalRequestConflict"
        assert calls > 3 and 0.4 < took < 5.0, (calls, took)
        monkeypatch.setattr(store, "_call", real_call)
        assert not await store.exists("k")


async def test_s3_object_that_keeps_changing_gives_up_after_its_attempts(
    s3_endpoint: S3Endpoint, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large get whose object is overwritten between its ranged reads every time (the
    rest of the object reported changed by a fault wrapper) re-reads CHANGED_RETRY's
    attempts and then raises storage_connection_failed (busy)."""
    async with _s3(s3_endpoint, f"{unique_name}/") as store:
        await store.put("big", bytes(6 << 20))
        reads = 0

        async def always_changed(*args: Any) -> bytes:
            nonlocal reads
            reads += 1
            raise s3_module._Changed()

        monkeypatch.setattr(store, "_get_rest", always_changed)
        with pytest.raises(StoreError) as info:
            await store.get("big")
        attempts = 5  # CHANGED_RETRY.attempts
        _assert_gave_up(info.value, attempts=attempts)
        assert reads == attempts


# ---------------------------------------------------------------------------- ADK


class _AlwaysTaken(InMemoryArtifactStore):
    """Every create-only put finds its key taken, as if other writers always won."""

    async def put(self, key: str, data: Any, **opts: Any) -> None:
        if opts.get("if_absent"):
            from agent_session_store.artifacts._common import already_exists

            raise already_exists(key)
        await super().put(key, data, **opts)


async def test_adk_save_artifact_gives_up_when_every_version_is_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    adk = pytest.importorskip("agent_session_store.integrations.adk")
    from google.genai import types

    monkeypatch.setattr(adk, "_VERSION_RETRY", RetryPolicy(attempts=20, timeout=5.0), raising=False)
    service = adk.StoreArtifactService(_AlwaysTaken())
    part = types.Part.from_bytes(data=b"x", mime_type="text/plain")
    with pytest.raises(StoreError) as info:
        await asyncio.wait_for(
            service.save_artifact(
                app_name="a", user_id="u", session_id="s", filename="f", artifact=part
            ),
            10.0,
        )
    _assert_gave_up(info.value, attempts=20)
