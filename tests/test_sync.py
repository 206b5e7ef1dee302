"""The blocking facade (agent_session_store.sync): the whole contract suite through it, threads,
every server backend, and the async store's refusal to be used from a second event loop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from agent_session_store import sync
from agent_session_store.base import SessionStoreBase
from agent_session_store.errors import StoreError
from agent_session_store.models import Event, EventType, Run, RunStatus, Session
from agent_session_store.testing import DurableSessionStoreContract, SessionStoreContract
from agent_session_store.urls import open_session_store
from service_urls import PG_DSN, REDIS_URL


class AsyncOverSync:
    """The async interface again, each call a blocking sync call on a worker thread: the
    contract suite, written against the async interface, then exercises the sync facade."""

    def __init__(self, store: sync.SyncSessionStore, pool: ThreadPoolExecutor) -> None:
        self._sync = store
        self._pool = pool
        # Suites that watch the backend's internals find it where a composite keeps it.
        self.session_store = store.async_store

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._sync, name)
        if not callable(method):
            return method
        if name in ("stream_events", "iter_export"):
            return functools.partial(self._stream, method)

        async def call(*args: Any, **kwargs: Any) -> Any:
            loop = asyncio.get_running_loop()
            if args and isinstance(args[0], AsyncIterable):  # import_records: sync takes sync
                args = ([item async for item in args[0]], *args[1:])
            return await loop.run_in_executor(
                self._pool, functools.partial(method, *args, **kwargs)
            )

        return call

    async def _stream(self, method: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        it: Iterator[Any] = method(*args, **kwargs)
        done: Any = object()
        while (item := await loop.run_in_executor(self._pool, next, it, done)) is not done:
            yield item


@pytest.fixture
async def sync_adapter(store_url: str) -> AsyncIterator[Any]:
    # One thread per concurrent call: the suites run up to 300 long-polls at once.
    pool = ThreadPoolExecutor(max_workers=400)
    store = sync.open_session_store(store_url)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(pool, store.open)
    try:
        yield AsyncOverSync(store, pool)
    finally:
        await loop.run_in_executor(pool, store.close)
        pool.shutdown(wait=True)


class TestSyncOverMemory(SessionStoreContract):
    @pytest.fixture
    def store_url(self) -> str:
        return "memory://"

    @pytest.fixture
    def store(self, sync_adapter: Any) -> Any:
        return sync_adapter

    async def test_stream_events_with_filters_and_cleanup(self, store: Any) -> None:
        pytest.skip(
            "cancelling an asyncio task cannot stop a thread blocked in a sync call; the sync "
            "form (leaving the for loop) is test_leaving_a_sync_stream_releases_its_reader"
        )


class TestSyncOverSQLite(DurableSessionStoreContract):
    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path}/sync.db?auto_migrate=true"

    @pytest.fixture
    def store(self, sync_adapter: Any) -> Any:
        return sync_adapter

    async def test_stream_events_with_filters_and_cleanup(self, store: Any) -> None:
        pytest.skip(
            "cancelling an asyncio task cannot stop a thread blocked in a sync call; the sync "
            "form (leaving the for loop) is test_leaving_a_sync_stream_releases_its_reader"
        )


# ---------------------------------------------------------------- plain blocking use


def _ev(session_id: str = "s", **kw: Any) -> Event:
    return Event(type=EventType.MESSAGE_SENT, session_id=session_id, **kw)


@pytest.fixture(
    params=["memory", "sqlite", "postgres", "redis"],
)
def any_url(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> Iterator[str]:
    kind = request.param
    if kind == "memory":
        yield "memory://"
    elif kind == "sqlite":
        yield f"sqlite:///{tmp_path}/s.db?auto_migrate=true"
    elif kind == "postgres":
        yield f"{PG_DSN}?schema={unique_name}&auto_migrate=true"
        _drop_schema(unique_name)
    else:
        yield f"{REDIS_URL}?prefix={unique_name}:"
        _drop_prefix(f"{unique_name}:")


def _drop_schema(schema: str) -> None:
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


def _drop_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def test_blocking_calls_work_on_every_backend(any_url: str) -> None:
    """What `asyncio.run()` per call could not do on PostgreSQL and Redis (issue 14.1)."""
    with sync.open_session_store(any_url) as store:
        session = Session(id="s", agent_id="a")
        store.save_session(session)
        run = Run(session_id="s", status=RunStatus.RUNNING)
        store.save_run(run)
        first = store.append_event_with_sequence(_ev(run_id=run.id))
        batch = store.append_events([_ev(), _ev()])
        assert [e.sequence_number for e in [first, *batch]] == [1, 2, 3]
        assert store.get_events("s") == [first, *batch]
        assert store.get_latest_sequence("s") == 3
        assert store.get_active_run("s") == run
        assert store.get_session("s").agent_id == "a"
        with pytest.raises(StoreError) as info:
            store.get_session("nope")
        assert info.value.code == "session_not_found"
        streamed = store.stream_events("s")
        assert [next(streamed).sequence_number for _ in range(3)] == [1, 2, 3]
        streamed.close()


def test_threads_share_one_store_and_a_long_poll_blocks_nobody() -> None:
    with sync.open_session_store("memory://") as store:
        woke: list[list[Event]] = []
        reader = threading.Thread(
            target=lambda: woke.append(store.get_events("s", wait_timeout_ms=30_000))
        )
        reader.start()

        def writer(w: int) -> None:
            for i in range(25):
                store.append_event(_ev(data={"w": w, "i": i}))

        writers = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
        start = time.monotonic()
        for t in writers:
            t.start()
        for t in writers:
            t.join()
        reader.join(30)
        assert time.monotonic() - start < 20  # the waiting reader held nobody up
        assert len(woke) == 1 and woke[0] and woke[0][0].sequence_number == 1
        numbers = [e.sequence_number for e in store.get_events("s")]
        assert numbers == list(range(1, 201))


def test_leaving_a_sync_stream_releases_its_reader() -> None:
    with sync.open_session_store("memory://") as store:
        store.append_events([_ev(run_id="r1"), _ev(run_id="r2")])
        seen: list[int] = []

        def follow() -> None:
            for event in store.stream_events("s", run_id="r1"):
                seen.append(event.sequence_number or 0)
                if len(seen) == 2:
                    break  # closes the generator: its long-poll must end with it

        reader = threading.Thread(target=follow)
        reader.start()
        deadline = time.monotonic() + 10
        while seen != [1] and time.monotonic() < deadline:
            time.sleep(0.01)
        store.append_events([_ev(run_id="r2"), _ev(run_id="r1")])
        reader.join(10)
        assert seen == [1, 4] and not reader.is_alive()
        inner = store.async_store
        assert isinstance(inner, SessionStoreBase)
        assert not inner._waiters
        assert store.append_event_with_sequence(_ev()).sequence_number == 5


def test_close_releases_a_blocked_reader_and_later_calls_fail_clearly() -> None:
    store = sync.open_session_store("memory://").open()
    got: list[list[Event]] = []
    reader = threading.Thread(
        target=lambda: got.append(store.get_events("s", wait_timeout_ms=60_000))
    )
    reader.start()
    deadline = time.monotonic() + 10
    while not store.async_store._waiters and time.monotonic() < deadline:  # type: ignore[union-attr]
        time.sleep(0.01)  # until the reader waits
    store.close()
    reader.join(10)
    assert got == [[]]
    with pytest.raises(StoreError, match="closed"):
        store.get_events("s")
    store.close()  # idempotent


def test_sync_store_called_from_its_own_loop_is_refused() -> None:
    with sync.open_session_store("memory://") as store:
        inner = store.async_store

        async def misuse() -> str:
            try:
                store.get_latest_sequence("s")
            except StoreError as err:
                return str(err)
            return "no error"

        # Run the misuse on the sync store's own loop, where a blocking call would deadlock.
        message = store._call(misuse())
        assert "own event loop thread" in message
        assert inner is store.async_store


def test_sync_artifacts_and_composite(tmp_path: Path) -> None:
    with sync.open_store("memory://", f"file://{tmp_path}/art") as store:
        store.put("a/1", [b"he", b"llo"])
        assert store.get("a/1") == b"hello"
        assert b"".join(store.get_stream("a/1", chunk_size=2)) == b"hello"
        assert store.exists("a/1") and store.stat("a/1").size == 5
        assert store.list_keys("a/").keys == ["a/1"]
        store.delete("a/1")
        assert not store.exists("a/1")
        store.append_event(_ev())
        assert store.get_latest_sequence("s") == 1
    with sync.open_artifact_store("memory://") as artifacts:
        artifacts.put("k", b"v")
        assert artifacts.get("k") == b"v"


# ---------------------------------------------------------------- a second event loop


@pytest.mark.parametrize(
    "url",
    ["memory://", "sqlite", "postgres"],
)
def test_async_store_used_from_a_second_loop_fails_at_once(
    url: str, tmp_path: Path, unique_name: str
) -> None:
    """The old `asyncio.run()` per call pattern: a clear error on the second loop, not a hang
    or a late `Event loop is closed` from inside the driver."""
    if url == "sqlite":
        url = f"sqlite:///{tmp_path}/loop.db?auto_migrate=true"
    elif url == "postgres":
        url = f"{PG_DSN}?schema={unique_name}&auto_migrate=true"
    store = open_session_store(url)
    try:
        asyncio.run(store.append_event(_ev()))
        start = time.monotonic()
        with pytest.raises(StoreError) as info:
            asyncio.run(store.get_events("s"))
        assert time.monotonic() - start < 5
        assert info.value.code == "storage_error"
        assert "another event loop" in info.value.message
        assert "agent_session_store.sync" in info.value.message
        assert info.value.details == {"reason": "wrong_event_loop"}
    finally:
        with contextlib.suppress(StoreError):
            asyncio.run(store.close())
        if "postgresql" in url:
            _drop_schema(unique_name)
