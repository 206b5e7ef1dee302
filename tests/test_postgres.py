"""The PostgreSQL backend: the shared contract, plus what only a real server can show.

Every test works in its own schema of the local ``test`` database and drops it afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from agent_session_store.postgres import PostgresSessionStore
from agent_session_store.testing import DurableSessionStoreContract

BASE_DSN = "postgresql://postgres@127.0.0.1:5432/test"


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
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()
