"""Shared by the ADK adapter tests (no tests here): real stores of every backend, each in its
own schema, key prefix or directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent_session_store import open_artifact_store, open_session_store
from service_urls import PG_DSN, REDIS_URL

REDIS = REDIS_URL
SESSION_BACKENDS = ["memory", "sqlite", "postgres", "redis"]
ARTIFACT_BACKENDS = ["memory", "file", "s3"]


def session_url(backend: str, tmp_path: Path, name: str) -> str:
    """A store URL whose data no other test sees."""
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'adk.db'}?auto_migrate=true"
    if backend == "postgres":
        return f"{PG_DSN}?schema={name}&auto_migrate=true"
    if backend == "redis":
        return f"{REDIS}?prefix={name}"
    raise AssertionError(backend)


async def drop_session_data(backend: str, name: str) -> None:
    if backend == "postgres":
        import asyncpg

        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close()
    elif backend == "redis":
        from redis.asyncio import Redis

        client = Redis.from_url(REDIS)
        try:
            keys = [k async for k in client.scan_iter(match=f"{name}:*", count=1000)]
            for start in range(0, len(keys), 500):
                await client.delete(*keys[start : start + 500])
        finally:
            await client.aclose()


@pytest.fixture(params=SESSION_BACKENDS)
async def session_store_url(
    request: pytest.FixtureRequest, tmp_path: Path, unique_name: str
) -> AsyncIterator[str]:
    backend: str = request.param
    yield session_url(backend, tmp_path, unique_name)
    await drop_session_data(backend, unique_name)


@pytest.fixture
async def session_store(session_store_url: str) -> AsyncIterator[Any]:
    store = open_session_store(session_store_url)
    async with store:
        yield store


def artifact_url(backend: str, tmp_path: Path, name: str, request: pytest.FixtureRequest) -> str:
    if backend == "memory":
        return "memory://"
    if backend == "file":
        return f"file://{tmp_path / 'artifacts'}"
    if backend == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        return str(endpoint.store_url(name))
    raise AssertionError(backend)


@pytest.fixture(params=ARTIFACT_BACKENDS)
def artifact_store_url(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> str:
    return artifact_url(request.param, tmp_path, unique_name, request)


@pytest.fixture
async def artifact_store(artifact_store_url: str) -> AsyncIterator[Any]:
    store = open_artifact_store(artifact_store_url)
    async with store:
        yield store
