"""Our ADK session service against ADK's own storage, the same calls in the same run.

Theirs: ``DatabaseSessionService`` (SQLAlchemy; SQLite via aiosqlite, PostgreSQL via asyncpg)
and ``SqliteSessionService`` (aiosqlite). Ours: ``StoreSessionService`` on our SQLite and
PostgreSQL stores. Cases (issue 10's bars): ``append_event`` (events/s, one session, each event
with a small text and a state delta), ``get_session`` of a 3,000-event session with
``num_recent_events=50`` (ms), ``list_sessions`` of a user with 10,000 sessions (ms).

``python -m bench --only integrations_adk`` or ``python -m bench.integrations_adk [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions.base_session_service import BaseSessionService, GetSessionConfig
from google.genai import types

from agent_session_store.integrations.adk import StoreSessionService

from .common import PG_DSN, Row, check_ratio, rate

APP = "bench_app"
BARS = {"append_event": 3.0, "get_session recent 50 of 3000": 10.0, "list_sessions 10000": 10.0}

Factory = Callable[[], Any]  # an async context manager yielding a BaseSessionService


def _event(i: int, ts: float) -> Event:
    return Event(
        invocation_id=f"inv{i // 4}",
        author="model" if i % 2 else "user",
        timestamp=ts,
        content=types.Content(role="model", parts=[types.Part(text=f"message number {i}")]),
        actions=EventActions(state_delta={"turn": i}),
    )


async def _timed(work: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await work()
    return time.perf_counter() - start


async def _alternate(repeats: int, works: list[Callable[[], Awaitable[Any]]]) -> list[list[float]]:
    """Each work's timings (seconds), run in turns (the order rotating every round), so a
    change of machine load hits every side alike."""
    times: list[list[float]] = [[] for _ in works]
    for r in range(repeats):
        for k in range(len(works)):
            i = (k + r) % len(works)
            times[i].append(await _timed(works[i]))
    return times


async def _append(services: list[BaseSessionService], count: int) -> list[float]:
    """events/s of each service appending ``count`` events, in alternating chunks."""
    sessions = [await s.create_session(app_name=APP, user_id="appender") for s in services]
    ts = time.time()
    chunk = max(1, count // 10)

    def chunk_of(service: BaseSessionService, session: Any) -> Callable[[], Awaitable[None]]:
        done = [0]

        async def work() -> None:
            start = done[0]
            done[0] += chunk
            for i in range(start, start + chunk):
                await service.append_event(session, _event(i, ts + i * 1e-3))

        return work

    works = [chunk_of(s, sess) for s, sess in zip(services, sessions, strict=True)]
    times = await _alternate(count // chunk, works)
    return [rate(chunk * len(t), sum(t)) for t in times]


async def _get_recent(services: list[BaseSessionService], events: int, repeats: int) -> list[float]:
    """Best ms of each service's get_session(num_recent_events=50), reads alternating."""
    config = GetSessionConfig(num_recent_events=50)
    works = []
    ts = time.time()
    for service in services:
        session = await service.create_session(app_name=APP, user_id="reader")
        for i in range(events):
            await service.append_event(session, _event(i, ts + i * 1e-3))

        def read(service: BaseSessionService = service, sid: str = session.id) -> Any:
            async def work() -> None:
                got = await service.get_session(
                    app_name=APP, user_id="reader", session_id=sid, config=config
                )
                assert got is not None and len(got.events) == 50

            return work

        works.append(read())
        await works[-1]()  # warm
    return [1000 * min(t) for t in await _alternate(repeats, works)]


async def _list(services: list[BaseSessionService], sessions: int, repeats: int) -> list[float]:
    """Best ms of each service listing a user's ``sessions`` sessions, alternating."""
    works = []
    for service in services:
        for i in range(sessions):
            await service.create_session(
                app_name=APP, user_id="lister", session_id=f"s{i:05d}", state={"n": i}
            )
        await service.create_session(app_name=APP, user_id="someone_else")

        def listing(service: BaseSessionService = service) -> Any:
            async def work() -> None:
                got = await service.list_sessions(app_name=APP, user_id="lister")
                assert len(got.sessions) == sessions

            return work

        works.append(listing())
        await works[-1]()
    return [1000 * min(t) for t in await _alternate(repeats, works)]


# ---------------------------------------------------------------- the services


@asynccontextmanager
async def _tmpdir() -> AsyncIterator[str]:
    path = tempfile.mkdtemp(prefix="ass-bench-adk-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@asynccontextmanager
async def _pg_schema() -> AsyncIterator[str]:
    import asyncpg

    schema = f"ass_bench_adk_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        yield schema
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


@asynccontextmanager
async def ours_sqlite() -> AsyncIterator[BaseSessionService]:
    async with _tmpdir() as d, StoreSessionService(f"sqlite:///{d}/ours.db?auto_migrate=true") as s:
        yield s


@asynccontextmanager
async def ours_postgres() -> AsyncIterator[BaseSessionService]:
    async with (
        _pg_schema() as schema,
        StoreSessionService(f"{PG_DSN}?schema={schema}&auto_migrate=true") as s,
    ):
        yield s


@asynccontextmanager
async def database_sqlite() -> AsyncIterator[BaseSessionService]:
    from google.adk.sessions.database_session_service import DatabaseSessionService

    async with _tmpdir() as d:
        service = DatabaseSessionService(f"sqlite+aiosqlite:///{d}/theirs.db")
        try:
            yield service
        finally:
            await service.close()


@asynccontextmanager
async def sqlite_service() -> AsyncIterator[BaseSessionService]:
    from google.adk.sessions.sqlite_session_service import SqliteSessionService

    async with _tmpdir() as d:
        yield SqliteSessionService(f"{d}/theirs.db")


@asynccontextmanager
async def database_postgres() -> AsyncIterator[BaseSessionService]:
    from google.adk.sessions.database_session_service import DatabaseSessionService

    async with _pg_schema() as schema:
        service = DatabaseSessionService(
            PG_DSN.replace("postgresql://", "postgresql+asyncpg://", 1),
            connect_args={"server_settings": {"search_path": schema}},
        )
        try:
            yield service
        finally:
            await service.close()


#: backend -> (ours, [(their service's name, theirs), ...])
BACKENDS: dict[str, tuple[Factory, list[tuple[str, Factory]]]] = {
    "sqlite": (
        ours_sqlite,
        [("DatabaseSessionService", database_sqlite), ("SqliteSessionService", sqlite_service)],
    ),
    "postgres": (ours_postgres, [("DatabaseSessionService", database_postgres)]),
}


async def _measure(factories: list[Factory], case: str, quick: bool) -> list[float]:
    """The case on every service at once (ours first), measured in alternation."""
    async with AsyncExitStack() as stack:
        services = [await stack.enter_async_context(f()) for f in factories]
        if case == "append_event":
            return await _append(services, 200 if quick else 1000)
        if case.startswith("get_session"):
            return await _get_recent(services, 300 if quick else 3000, 5 if quick else 20)
        return await _list(services, 1000 if quick else 10000, 3 if quick else 5)


async def run(quick: bool, backends: list[str] | None = None) -> list[Row]:
    rows: list[Row] = []
    for backend in backends or list(BACKENDS):
        ours, theirs_list = BACKENDS[backend]
        for case, bar in BARS.items():
            mine, *raws = await _measure([ours] + [f for _, f in theirs_list], case, quick)
            for (theirs_name, _), raw in zip(theirs_list, raws, strict=True):
                label = case if not quick else f"{case} (quick sizes)"
                row = Row(
                    backend=backend,
                    case=f"ADK {label} vs {theirs_name}",
                    ours=mine,
                    raw=raw,
                    unit="events/s" if case == "append_event" else "ms",
                    higher_is_better=case == "append_event",
                    extra={"theirs": theirs_name},
                )
                rows.append(check_ratio(row, bar))
    return rows


def main() -> None:
    from .__main__ import table

    parser = argparse.ArgumentParser(prog="python -m bench.integrations_adk")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--backend", action="append", choices=list(BACKENDS))
    args = parser.parse_args()
    print(table(asyncio.run(run(quick=args.quick, backends=args.backend))))


if __name__ == "__main__":
    main()
