"""The four backends the OpenAI Agents and LangGraph adapter tests run on, as URLs.

Each URL gets its own SQLite file, PostgreSQL schema or Redis key prefix, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from service_urls import PG_DSN, REDIS_URL

BACKENDS = ("memory", "sqlite", "postgres", "redis")


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
