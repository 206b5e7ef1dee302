"""A composite whose artifact side fails to open must not leak the session store it had
already opened (issue 12 item 7): no connection, no thread left behind."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from agent_session_store.errors import StoreError
from agent_session_store.urls import open_store
from service_urls import PG_DSN

BASE_DSN = PG_DSN


def _sockets() -> int:
    """Open socket descriptors of this process (database connections among them)."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if stat.S_ISSOCK(os.stat(f"/proc/self/fd/{name}").st_mode):
                count += 1
        except OSError:
            pass  # the listing's own descriptor, closed meanwhile
    return count


def _threads() -> set[int]:
    return {t.ident or 0 for t in threading.enumerate()}


async def _settled(before_threads: set[int], before_sockets: int) -> tuple[set[int], int]:
    """What is still open beyond the baseline once closing threads have had time to end
    (waits for the event, up to a deadline)."""
    deadline = time.monotonic() + 10
    while True:
        extra_threads = _threads() - before_threads
        extra_sockets = _sockets() - before_sockets
        if (not extra_threads and extra_sockets <= 0) or time.monotonic() > deadline:
            return extra_threads, extra_sockets
        await asyncio.sleep(0.02)


@pytest.fixture
def pg_url(unique_name: str) -> Iterator[str]:
    yield f"{BASE_DSN}?schema={unique_name}&auto_migrate=true"

    async def drop() -> None:
        conn = await asyncpg.connect(BASE_DSN)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{unique_name}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture(params=["sqlite", "postgresql"])
def session_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/sessions.db?auto_migrate=true"
    url: str = request.getfixturevalue("pg_url")
    return url


async def test_failed_artifact_open_closes_the_opened_session_store(
    session_url: str, tmp_path: Path
) -> None:
    missing = f"file://{tmp_path}/no/such/root?create=false"
    async with open_store(session_url, f"file://{tmp_path}/warm-up"):
        pass  # first-use imports, migrations and caches are not leaks
    before_threads, before_sockets = _threads(), _sockets()
    for _ in range(3):
        store = open_store(session_url, missing)
        with pytest.raises(StoreError) as info:
            async with store:
                pytest.fail("the artifact side cannot open")
        assert info.value.code == "storage_error"
    assert await _settled(before_threads, before_sockets) == (set(), 0)
    with pytest.raises(StoreError) as closed:
        await store.session_store.get_latest_sequence("s")  # closed, not merely idle
    assert closed.value.code == "storage_error"
