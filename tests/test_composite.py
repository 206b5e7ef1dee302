"""The composite store (contract 5): both contracts through it, error pass-through, artifact
isolation, no global lock, no cross-store cascade."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent_session_store.artifacts.files import FileArtifactStore
from agent_session_store.artifacts.memory import InMemoryArtifactStore
from agent_session_store.composite import CompositeSessionStore
from agent_session_store.errors import StoreError
from agent_session_store.memory import InMemorySessionStore
from agent_session_store.models import Event, EventType, Session
from agent_session_store.ports import ArtifactStore, SessionStore
from agent_session_store.retention import RetentionPolicy
from agent_session_store.testing import ArtifactStoreContract, SessionStoreContract
from agent_session_store.urls import open_store


class TestSessionContractThroughComposite(SessionStoreContract):
    @pytest.fixture
    def store_url(self) -> str:
        return "memory://"

    @pytest.fixture
    async def store(self, store_url: str) -> AsyncIterator[Any]:
        async with open_store(store_url, "memory://") as composite:
            yield composite


class TestArtifactContractThroughComposite(ArtifactStoreContract):
    @pytest.fixture
    def artifact_url(self, tmp_path: Path) -> str:
        return f"file://{tmp_path}/artifacts"

    @pytest.fixture
    async def artifact_store(self, artifact_url: str) -> AsyncIterator[Any]:
        async with open_store("memory://", artifact_url) as composite:
            yield composite


class Faulty:
    """A real artifact store whose calls can be made to raise arbitrary exceptions."""

    def __init__(self, inner: ArtifactStore) -> None:
        self.inner = inner
        self.fault: BaseException | None = None

    def _check(self) -> None:
        if self.fault is not None:
            raise self.fault

    async def __aenter__(self) -> Faulty:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._check()
        await self.inner.close()

    async def put(self, key: str, data: Any, **opts: Any) -> None:
        self._check()
        await self.inner.put(key, data, **opts)

    async def get(self, key: str, **opts: Any) -> bytes:
        self._check()
        return await self.inner.get(key, **opts)

    async def get_stream(self, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        async for block in self.inner.get_stream(key, chunk_size=chunk_size):
            self._check()
            yield block

    async def delete(self, key: str, **opts: Any) -> None:
        self._check()
        await self.inner.delete(key, **opts)

    async def exists(self, key: str) -> bool:
        self._check()
        return await self.inner.exists(key)

    async def stat(self, key: str) -> Any:
        self._check()
        return await self.inner.stat(key)

    async def list_keys(
        self, prefix: str = "", *, limit: int = 1000, cursor: str | None = None
    ) -> Any:
        self._check()
        return await self.inner.list_keys(prefix, limit=limit, cursor=cursor)


def test_composite_is_both_ports() -> None:
    c = CompositeSessionStore(InMemorySessionStore(), InMemoryArtifactStore())
    assert isinstance(c, SessionStore) and isinstance(c, ArtifactStore)


async def test_store_errors_pass_through_unchanged(tmp_path: Path) -> None:
    async with open_store("memory://", f"file://{tmp_path}") as c:
        for call, code in [
            (c.get_session("nope"), "session_not_found"),
            (c.get_run("nope"), "run_not_found"),
            (c.list_sessions(limit=0), "validation_error"),
            (c.get("nope"), "not_found"),
            (c.put("", b"x"), "validation_error"),
            (c.list_keys(cursor="junk"), "invalid_cursor"),
        ]:
            with pytest.raises(StoreError) as info:
                await call
            assert info.value.code == code
            assert info.value.__cause__ is None or not isinstance(info.value.__cause__, StoreError)

    # The very same exception object, not a re-wrapped copy.
    inner = Faulty(InMemoryArtifactStore())
    marker = StoreError("from the backend")
    inner.fault = marker
    c2 = CompositeSessionStore(InMemorySessionStore(), inner)
    with pytest.raises(StoreError) as info:
        await c2.get("k")
    assert info.value is marker


@pytest.mark.parametrize(
    "fault",
    [RuntimeError("backend bug"), KeyError("lost"), OSError(5, "I/O error"), ValueError("bad")],
    ids=["runtime", "key", "os", "value"],
)
async def test_artifact_crashes_become_storage_errors(tmp_path: Path, fault: Exception) -> None:
    faulty = Faulty(FileArtifactStore(tmp_path))
    async with CompositeSessionStore(InMemorySessionStore(), faulty) as c:
        await c.put("k", b"before")
        await c.save_session(Session(id="s1", agent_id="a"))
        faulty.fault = fault
        calls: dict[str, Any] = {
            "put": c.put("k", b"x"),
            "get": c.get("k"),
            "delete": c.delete("k"),
            "exists": c.exists("k"),
            "stat": c.stat("k"),
            "list_keys": c.list_keys(),
            "get_stream": _drain(c.get_stream("k")),
        }
        for operation, call in calls.items():
            with pytest.raises(StoreError) as info:
                await call
            err = info.value
            assert err.code == "storage_error"
            assert err.details["operation"] == operation and operation in err.message
            assert err.__cause__ is fault
        # The session side goes on, and so does the artifact side once the fault is gone.
        assert (await c.get_session("s1")).agent_id == "a"
        await c.append_event(Event(type=EventType.MESSAGE_SENT, session_id="s1"))
        assert await c.get_latest_sequence("s1") == 1
        faulty.fault = None
        assert await c.get("k") == b"before"


async def _drain(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([b async for b in stream])


async def test_closed_artifact_backend_is_a_storage_error(tmp_path: Path) -> None:
    artifacts = FileArtifactStore(tmp_path)
    async with CompositeSessionStore(InMemorySessionStore(), artifacts) as c:
        await c.put("k", b"v")
        await artifacts.close()
        with pytest.raises(StoreError) as info:
            await c.get("k")
        assert info.value.code == "storage_error" and "get" in info.value.message
        await c.save_session(Session(id="s", agent_id="a"))
        assert (await c.get_session("s")).id == "s"


async def test_long_poll_delays_nothing_else(tmp_path: Path) -> None:
    async with open_store("memory://", f"file://{tmp_path}") as c:
        poll = asyncio.create_task(c.get_events("s1", wait_timeout_ms=600_000))
        await asyncio.sleep(0)  # let the reader start waiting
        # Each of these completes while the reader is still waiting.
        await c.put("a", b"1")
        assert await c.get("a") == b"1"
        await c.save_session(Session(id="s2", agent_id="a"))
        assert (await c.get_session("s2")).id == "s2"
        await c.append_event(Event(type=EventType.MESSAGE_SENT, session_id="other"))
        assert (await c.list_keys()).keys == ["a"]
        assert not poll.done()
        await c.append_event(Event(type=EventType.MESSAGE_SENT, session_id="s1"))
        assert [e.sequence_number for e in await poll] == [1]


async def test_deleting_a_session_leaves_artifacts() -> None:
    async with open_store("memory://", "memory://") as c:
        await c.save_session(Session(id="s1", agent_id="a"))
        await c.put("sessions/s1/patch.diff", b"diff")
        await c.delete_session("s1")
        with pytest.raises(StoreError):
            await c.get_session("s1")
        assert await c.get("sessions/s1/patch.diff") == b"diff"


async def test_close_closes_owned_backends_only() -> None:
    sessions, artifacts = InMemorySessionStore(), InMemoryArtifactStore()
    async with CompositeSessionStore(sessions, artifacts, owns=False) as c:
        await c.put("k", b"v")
    assert await artifacts.get("k") == b"v"  # not owned: still open
    await sessions.save_session(Session(id="s", agent_id="a"))
    async with CompositeSessionStore(sessions, artifacts) as c:
        pass
    for call in (artifacts.get("k"), sessions.get_session("s")):
        with pytest.raises(StoreError) as info:
            await call
        assert info.value.code == "storage_error"


async def test_failing_artifact_close_still_closes_sessions() -> None:
    faulty = Faulty(InMemoryArtifactStore())
    sessions = InMemorySessionStore()
    c = CompositeSessionStore(sessions, faulty)
    faulty.fault = RuntimeError("close blew up")
    with pytest.raises(StoreError) as info:
        await c.close()
    assert info.value.code == "storage_error" and "close" in info.value.message
    with pytest.raises(StoreError):
        await sessions.get_session("x")


async def test_hard_delete_removes_the_sessions_artifacts() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 6, 1, tzinfo=UTC)
    async with open_store("memory://", "memory://") as store:
        for sid, deleted in (("old", now - timedelta(days=40)), ("new", None)):
            await store.save_session(Session(id=sid, agent_id="a", deleted_at=deleted))
            for name in ("a.txt", "dir/b.bin"):
                await store.put(store.session_artifact_key(sid, name), b"x")
        await store.put("elsewhere/old/c", b"kept")
        dry = await store.run_maintenance(RetentionPolicy(), dry_run=True, now=now)
        assert (dry.sessions_hard_deleted, dry.artifacts_deleted) == (1, 2)
        assert await store.exists("sessions/old/a.txt")
        report = await store.run_maintenance(RetentionPolicy(), now=now)
        assert (report.sessions_hard_deleted, report.artifacts_deleted) == (1, 2)
        assert (await store.list_keys("sessions/")).keys == [
            "sessions/new/a.txt",
            "sessions/new/dir/b.bin",
        ]
        assert await store.exists("elsewhere/old/c")
        assert await store.hard_delete_expired_sessions(RetentionPolicy(), now=now) == 0
