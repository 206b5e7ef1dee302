"""The four backends the OpenAI Agents and LangGraph adapter tests run on, as URLs.

Each URL gets its own SQLite file, PostgreSQL schema or Redis key prefix, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import functools
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent_session_store.errors import StoreError

BACKENDS = ("memory", "sqlite", "postgres", "redis")
PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"


def fresh_name() -> str:
    return f"olg_{uuid.uuid4().hex[:12]}"


def backend_url(kind: str, name: str, tmp: Path) -> str:
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp / (name + '.db')}?auto_migrate=true"
    if kind == "postgres":
        return f"{PG_DSN}?schema={name}&auto_migrate=true"
    if kind == "redis":
        return f"{REDIS_URL}?prefix={name}"
    raise ValueError(kind)


def drop(kind: str, name: str) -> None:
    """Remove what a backend URL made on its server (test clean-up only)."""
    if kind == "postgres":
        import asyncpg

        async def drop_schema() -> None:
            conn = await asyncpg.connect(PG_DSN)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
            finally:
                await conn.close()

        asyncio.run(drop_schema())
    elif kind == "redis":
        import redis.asyncio

        async def drop_prefix() -> None:
            async with redis.asyncio.Redis.from_url(REDIS_URL) as client:
                keys = [k async for k in client.scan_iter(match=f"{name}:*", count=1000)]
                for i in range(0, len(keys), 500):
                    await client.delete(*keys[i : i + 500])

        asyncio.run(drop_prefix())


@contextmanager
def backend(kind: str, tmp: Path) -> Iterator[str]:
    """A fresh URL of that backend kind, cleaned up on exit."""
    name = fresh_name()
    try:
        yield backend_url(kind, name, tmp)
    finally:
        drop(kind, name)


@functools.cache
def v2_missing(kind: str) -> str | None:
    """Why this backend cannot run the adapters yet (its v2 primitives are not merged), or None.

    The adapters need conditional append (contract 3.12); each backend's owner lands it on
    its own branch. The probe asks the backend itself, on a throw-away database.
    """
    from agent_session_store import Event, open_session_store
    from agent_session_store.models import to_event_type

    async def probe(url: str) -> str | None:
        async with open_session_store(url) as store:
            try:
                await store.append_events(
                    [Event(type=to_event_type("probe.v2"), session_id="probe")], expected_sequence=0
                )
            except StoreError as exc:
                return f"the {kind} backend has no conditional append yet ({exc.code})"
            return None

    name = fresh_name()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return asyncio.run(probe(backend_url(kind, name, Path(tmp))))
        finally:
            drop(kind, name)
