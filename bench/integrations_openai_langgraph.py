"""Our OpenAI Agents session and LangGraph checkpointer against the frameworks' own storage,
the same calls in the same run.

* OpenAI Agents: ``add_items`` (a two-item turn) and ``get_items(limit=50)`` on a session that
  already holds 100,000 items, ours on SQLite / PostgreSQL against ``SQLiteSession`` and
  ``SQLAlchemySession`` (SQLite via aiosqlite, PostgreSQL via asyncpg); bar >= 1x.
* ``pop_item`` from 4 processes at once draining one session: is every item popped exactly
  once (correct), and how fast; for ours and for theirs.
* LangGraph: ``aput`` + ``aget_tuple`` round trip on one thread, ours against
  ``AsyncSqliteSaver`` and ``AsyncPostgresSaver``; bar >= 1x.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from agent_session_store import open_session_store

from .common import PG_DSN, Row, check_ratio, median

PG = PG_DSN
PG_SA = PG.replace("postgresql://", "postgresql+asyncpg://")


def _items(n: int, start: int = 0) -> list[Any]:
    return [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"message number {i} " * 4}
        for i in range(start, start + n)
    ]


async def _drop_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def _drop_tables(*tables: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG)
    try:
        for t in tables:
            await conn.execute(f'DROP TABLE IF EXISTS "{t}" CASCADE')
    finally:
        await conn.close()


# ---------------------------------------------------------------- OpenAI sessions


def _theirs(kind: str, sid: str, tmp: str, tag: str) -> Any:
    if kind == "SQLiteSession":
        from agents.memory import SQLiteSession

        return SQLiteSession(sid, f"{tmp}/theirs-{tag}.db")
    from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession

    url = f"sqlite+aiosqlite:///{tmp}/sa-{tag}.db" if kind == "SQLAlchemy/sqlite" else PG_SA
    return SQLAlchemySession.from_url(
        sid,
        url=url,
        create_tables=True,
        sessions_table=f"s_{tag}",
        messages_table=f"m_{tag}",
    )


async def _close_theirs(session: Any) -> None:
    if hasattr(session, "engine"):
        await session.engine.dispose()
    elif hasattr(session, "close"):
        session.close()


async def _fill(session: Any, total: int) -> None:
    for start in range(0, total, 1000):
        await session.add_items(_items(min(1000, total - start), start))


async def _alternating_ms(
    repeats: int, ours: Callable[[int], Awaitable[Any]], theirs: Callable[[int], Awaitable[Any]]
) -> tuple[float, float]:
    """Median ms of each side, timed call by call in alternation (who goes first alternates
    too), so a change of machine load hits both sides alike."""
    mine: list[float] = []
    other: list[float] = []
    for i in range(repeats):
        for work, into in ((ours, mine), (theirs, other))[:: 1 if i % 2 else -1]:
            start = time.perf_counter()
            await work(i)
            into.append(time.perf_counter() - start)
    return median(mine) * 1000, median(other) * 1000


async def _compare(ours: Any, theirs: Any, total: int, repeats: int) -> dict[str, float]:
    """add_items and get_items(50) on two sessions already holding ``total`` items."""
    for session in (ours, theirs):
        assert len(await session.get_items(50)) == 50
    out: dict[str, float] = {}
    out["add_ours"], out["add_theirs"] = await _alternating_ms(
        repeats,
        lambda i: ours.add_items(_items(2, total + 2 * i)),
        lambda i: theirs.add_items(_items(2, total + 2 * i)),
    )
    out["get_ours"], out["get_theirs"] = await _alternating_ms(
        repeats, lambda i: ours.get_items(50), lambda i: theirs.get_items(50)
    )
    return out


def _their_synchronous(session: Any) -> str:
    """PRAGMA synchronous of the peer's SQLite connection (2 = FULL, 1 = NORMAL)."""
    if hasattr(session, "_locked_connection"):
        with session._locked_connection() as conn:
            return str(conn.execute("PRAGMA synchronous").fetchone()[0])
    return "sqlite default (aiosqlite: 2 = FULL)"


async def _openai_rows(quick: bool, tmp: str) -> list[Row]:
    from agent_session_store.integrations.openai_agents import OpenAIAgentsSession

    total = 5_000 if quick else 100_000
    repeats = 50 if quick else 200
    rows: list[Row] = []
    pairs = [
        ("sqlite", "SQLiteSession"),
        ("sqlite", "SQLAlchemy/sqlite"),
        ("postgres", "SQLAlchemy/postgres"),
    ]
    for ours_kind, theirs_kind in pairs:
        tag = f"oa{uuid.uuid4().hex[:8]}"
        url = (
            f"sqlite:///{tmp}/ours-{tag}.db?auto_migrate=true"
            if ours_kind == "sqlite"
            else f"{PG}?schema={tag}&auto_migrate=true"
        )
        theirs = _theirs(theirs_kind, "bench", tmp, tag)
        try:
            async with open_session_store(url) as store:
                ours = OpenAIAgentsSession("bench", store)
                await _fill(ours, total)
                await _fill(theirs, total)
                measured = await _compare(ours, theirs, total, repeats)
                sync = {}
                if ours_kind == "sqlite":
                    sync = {
                        "ours_synchronous": getattr(store, "synchronous", "?"),
                        "theirs_synchronous": _their_synchronous(theirs),
                    }
        finally:
            await _close_theirs(theirs)
            if ours_kind == "postgres":
                await _drop_schema(tag)
            if theirs_kind == "SQLAlchemy/postgres":
                await _drop_tables(f"m_{tag}", f"s_{tag}")
        for case, key in (
            (f"add_items (2 items) into {total:,}-item session", "add"),
            (f"get_items(limit=50) from {total:,}-item session", "get"),
        ):
            rows.append(
                check_ratio(
                    Row(
                        backend=f"openai {ours_kind} vs {theirs_kind}",
                        case=case,
                        ours=measured[f"{key}_ours"],
                        raw=measured[f"{key}_theirs"],
                        unit="ms (median)",
                        higher_is_better=False,
                        extra=sync,
                    ),
                    1.0,
                )
            )
    return rows


def _pop_child(kind: str, conf: str, sid: str, barrier: Any, out: Any) -> None:
    async def body() -> tuple[float, float, list[str]]:
        session: Any
        store: Any = None
        if kind.startswith("ours"):
            from agent_session_store.integrations.openai_agents import OpenAIAgentsSession

            store = open_session_store(conf)
            await store.__aenter__()
            session = OpenAIAgentsSession(sid, store)
        else:
            tmp, tag = conf.split("|")
            session = _theirs(kind, sid, tmp, tag)
        await session.get_items(1)
        barrier.wait(timeout=60)
        began = time.time()
        popped: list[str] = []
        try:
            while (item := await session.pop_item()) is not None:
                popped.append(item["content"])
        finally:
            if store is not None:
                await store.close()
            else:
                await _close_theirs(session)
        return began, time.time(), popped

    try:
        out.put(("ok", asyncio.run(body())))
    except BaseException as exc:
        out.put(("error", f"{type(exc).__name__}: {exc}"))


async def _pop_rows(quick: bool, tmp: str) -> list[Row]:
    from agent_session_store.integrations.openai_agents import OpenAIAgentsSession

    count = 200 if quick else 1000
    procs = 4
    rows: list[Row] = []
    for kind in ("ours/sqlite", "ours/postgres", "SQLiteSession", "SQLAlchemy/postgres"):
        tag = f"pop{uuid.uuid4().hex[:8]}"
        if kind.startswith("ours"):
            conf = (
                f"sqlite:///{tmp}/pop-{tag}.db?auto_migrate=true"
                if kind == "ours/sqlite"
                else f"{PG}?schema={tag}&auto_migrate=true"
            )
            async with open_session_store(conf) as store:
                await _fill(OpenAIAgentsSession("pop", store), count)
        else:
            conf = f"{tmp}|{tag}"
            seed = _theirs(kind, "pop", tmp, tag)
            await _fill(seed, count)
            await _close_theirs(seed)
        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(procs)
        out = ctx.Queue()
        children = [
            ctx.Process(target=_pop_child, args=(kind, conf, "pop", barrier, out))
            for _ in range(procs)
        ]
        for c in children:
            c.start()
        results = [out.get(timeout=600) for _ in children]
        for c in children:
            c.join(timeout=30)
        errors = [r[1] for r in results if r[0] != "ok"]
        done = [r[1] for r in results if r[0] == "ok"]
        # from the first pop to the last, measured in the children (spawn and imports excluded)
        elapsed = max(d[1] for d in done) - min(d[0] for d in done) if done else float("nan")
        popped = [x for d in done for x in d[2]]
        distinct = len(set(popped))
        correct = not errors and len(popped) == distinct == count
        rows.append(
            Row(
                backend=f"openai {kind}",
                case=f"pop_item x{procs} processes draining {count} items",
                ours=count / elapsed,
                unit="pops/s",
                bar="every item popped exactly once",
                passed=correct if kind.startswith("ours") else None,
                extra={
                    "popped": len(popped),
                    "distinct": distinct,
                    "duplicates": len(popped) - distinct,
                    "lost": count - distinct,
                    "errors": errors[:3],
                    "correct": correct,
                },
            )
        )
        if kind == "ours/postgres":
            await _drop_schema(tag)
        elif kind == "SQLAlchemy/postgres":
            await _drop_tables(f"m_{tag}", f"s_{tag}")
    return rows


# ---------------------------------------------------------------- LangGraph


def _round_trip(saver: Any) -> Callable[[int], Awaitable[None]]:
    """One ``aput`` of a new checkpoint (child of the previous one) + ``aget_tuple`` of the
    thread's latest, on a thread of its own."""
    from langgraph.checkpoint.conformance.test_utils import generate_checkpoint

    thread = f"t{uuid.uuid4().hex[:8]}"
    parent: list[str | None] = [None]

    async def once(i: int) -> None:
        conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ""}
        if parent[0] is not None:
            conf["checkpoint_id"] = parent[0]
        cp = generate_checkpoint(
            channel_values={"messages": [f"m{j}" for j in range(i % 20)], "step": i},
            channel_versions={"messages": i + 1, "step": i + 1},
        )
        stored = await saver.aput(
            {"configurable": conf}, cp, {"source": "loop", "step": i}, {"messages": i + 1}
        )
        parent[0] = stored["configurable"]["checkpoint_id"]
        tup = await saver.aget_tuple({"configurable": {"thread_id": thread}})
        assert tup is not None and tup.checkpoint["id"] == cp["id"]

    return once


async def _round_trips(ours: Any, theirs: Any, repeats: int) -> tuple[float, float]:
    mine, other = _round_trip(ours), _round_trip(theirs)
    for i in range(20):  # warm-up
        await mine(i)
        await other(i)
    return await _alternating_ms(repeats, lambda i: mine(20 + i), lambda i: other(20 + i))


async def _langgraph_rows(quick: bool, tmp: str) -> list[Row]:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    from agent_session_store.integrations.langgraph import StoreCheckpointSaver

    repeats = 100 if quick else 500
    rows: list[Row] = []
    tag = f"lg{uuid.uuid4().hex[:8]}"
    async with (
        open_session_store(f"sqlite:///{tmp}/lg-{tag}.db?auto_migrate=true") as store,
        AsyncSqliteSaver.from_conn_string(f"{tmp}/lgs-{tag}.db") as saver,
    ):
        await saver.setup()
        async with saver.conn.execute("PRAGMA synchronous") as cur:
            row = await cur.fetchone()
        their_sync = None if row is None else row[0]
        ours_sqlite, theirs_sqlite = await _round_trips(StoreCheckpointSaver(store), saver, repeats)
        sqlite_sync = {
            "ours_synchronous": getattr(store, "synchronous", "?"),
            "theirs_synchronous": their_sync,
        }
    try:
        import psycopg

        async with await psycopg.AsyncConnection.connect(PG, autocommit=True) as conn:
            await conn.execute(f'CREATE SCHEMA "{tag}t"')
        dsn = f"{PG}?options=-csearch_path%3D{tag}t"
        async with (
            open_session_store(f"{PG}?schema={tag}&auto_migrate=true") as store,
            AsyncPostgresSaver.from_conn_string(dsn) as saver,
        ):
            await saver.setup()
            ours_pg, theirs_pg = await _round_trips(StoreCheckpointSaver(store), saver, repeats)
    finally:
        await _drop_schema(tag)
        await _drop_schema(f"{tag}t")
    for backend, ours, theirs, name, extra in (
        ("sqlite", ours_sqlite, theirs_sqlite, "AsyncSqliteSaver", sqlite_sync),
        ("postgres", ours_pg, theirs_pg, "AsyncPostgresSaver", {}),
    ):
        rows.append(
            check_ratio(
                Row(
                    backend=f"langgraph {backend} vs {name}",
                    case="aput + aget_tuple round trip",
                    ours=ours,
                    raw=theirs,
                    unit="ms (median)",
                    higher_is_better=False,
                    extra=extra,
                ),
                1.0,
            )
        )
    return rows


async def run(quick: bool = False) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        rows = await _openai_rows(quick, tmp)
        rows += await _pop_rows(quick, tmp)
        rows += await _langgraph_rows(quick, tmp)
    return rows
