"""Fresh, empty stores of every backend by name, for tests that compare backends."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from agent_session_store import open_session_store
from agent_session_store.base import SessionStoreBase
from service_urls import PG_DSN, REDIS_URL
from test_redis import _drop_prefix

PG = PG_DSN
REDIS = REDIS_URL
BACKENDS = ["memory", "sqlite", "postgres", "redis", "redis-cluster"]


@pytest.fixture
async def open_backend(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[[str], Any]]:
    """Opens a fresh, empty store of the named backend; cleans server-side data after."""
    schemas: list[str] = []
    prefixes: list[tuple[str, str]] = []
    stores: list[SessionStoreBase] = []

    async def opener(name: str) -> SessionStoreBase:
        tag = f"ass_tr_{uuid.uuid4().hex[:10]}"
        if name == "redis-cluster":
            base = request.getfixturevalue("redis_cluster")
            prefixes.append((base, tag))
            url = f"{base}?prefix={tag}"
        else:
            url = {
                "memory": "memory://",
                "sqlite": f"sqlite:///{tmp_path}/{tag}.db?auto_migrate=true",
                "postgres": f"{PG}?schema={tag}&auto_migrate=true",
                "redis": f"{REDIS}?prefix={tag}",
            }[name]
        if name == "postgres":
            schemas.append(tag)
        elif name == "redis":
            prefixes.append((REDIS, tag))
        store: SessionStoreBase = open_session_store(url)
        await store.open()
        stores.append(store)
        return store

    yield opener
    for store in stores:
        await store.close()
    if schemas:
        conn = await asyncpg.connect(PG)
        try:
            for schema in schemas:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
    for base, prefix in prefixes:
        await _drop_prefix(base, prefix)
