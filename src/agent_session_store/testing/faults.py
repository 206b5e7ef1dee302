"""Real backend failures in the middle of a write, for contract tests (no mocked backend).

``failing_midway(store, session_id, event_id)`` makes the backend itself fail while a write
is under way: a trigger that raises when ``event_id`` is inserted (SQLite, PostgreSQL: the
session and run rows are already written in that transaction), a key of the wrong type that
the write script meets after its event writes (Redis: ``WRONGTYPE`` on the session's runs
hash), and for the in-memory store a write that stops after the rows before ``event_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

from ..codec import EncodedEvent
from ..models import Event
from .waiting import inner

__all__ = ["failing_midway"]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@contextlib.asynccontextmanager
async def failing_midway(store: Any, session_id: str, event_id: str) -> AsyncIterator[None]:
    """While inside, a write storing ``event_id`` (or, on Redis, any write to the session
    with a run) fails in the backend after part of it was written."""
    base: Any = inner(store)
    name = base.backend_name
    if name == "memory":
        real = base._store_rows

        def stops_midway(rows: list[EncodedEvent]) -> list[Event]:
            cut = next((i for i, r in enumerate(rows) if r.id == event_id), None)
            if cut is None:
                return real(rows)  # type: ignore[no-any-return]
            real(rows[:cut])
            raise MemoryError("injected: out of memory in the middle of a write")

        base._store_rows = stops_midway
        try:
            yield
        finally:
            del base._store_rows
    elif name == "sqlite":
        ddl = (
            "CREATE TRIGGER ass_injected_fault BEFORE INSERT ON events "
            f"WHEN NEW.id = {_literal(event_id)} "
            "BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
        )
        await asyncio.to_thread(_sqlite_exec, base.path, ddl)
        try:
            yield
        finally:
            await asyncio.to_thread(
                _sqlite_exec, base.path, "DROP TRIGGER IF EXISTS ass_injected_fault"
            )
    elif name == "postgres":
        import asyncpg

        s = base._s
        conn = await asyncpg.connect(base._dsn)
        try:
            await conn.execute(
                f"CREATE FUNCTION {s}.ass_injected_fault() RETURNS trigger LANGUAGE plpgsql "
                "AS $f$ BEGIN RAISE EXCEPTION 'injected fault'; END $f$;"
                f"CREATE TRIGGER ass_injected_fault BEFORE INSERT ON {s}.events FOR EACH ROW "
                f"WHEN (NEW.id = {_literal(event_id)}) EXECUTE FUNCTION {s}.ass_injected_fault()"
            )
            try:
                yield
            finally:
                await conn.execute(
                    f"DROP TRIGGER IF EXISTS ass_injected_fault ON {s}.events;"
                    f"DROP FUNCTION IF EXISTS {s}.ass_injected_fault()"
                )
        finally:
            await conn.close()
    elif name == "redis":
        from ..redis.keys import RUNS

        key = base.keys.session(session_id)[RUNS]
        aside = key + ":aside"  # same hash tag: same slot
        client = base.client
        held = await client.exists(key)
        if held:
            await client.rename(key, aside)
        await client.set(key, "not a hash")
        try:
            yield
        finally:
            await client.delete(key)
            if held:
                await client.rename(aside, key)
    else:
        raise NotImplementedError(f"no injected fault for the {name} backend")


def _sqlite_exec(path: str, sql: str) -> None:
    conn = sqlite3.connect(path, timeout=30)
    try:
        conn.execute(sql)
        conn.commit()
    finally:
        conn.close()
