"""PostgreSQL store against plain asyncpg doing the same transactions in the same run.

"Raw" is what a careful hand-written client would do: the same ``append_events`` function
call (one round trip, same locks, same NOTIFY) on an asyncpg pool of the same size with the
per-release reset turned off, encoding payloads with ``json.dumps``; for reads the same
SELECT, decoded with ``json.loads`` into tuples. What the ratios measure is therefore the
store's own overhead: validation, encoding, building ``Event`` values, pool handling.

Needs the local server (``scripts/ensure-services.sh``); ``BENCH_POSTGRES_DSN`` overrides it.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from typing import Any

import asyncpg

from agent_session_store.base import EventQuery
from agent_session_store.models import Event, EventType
from agent_session_store.postgres import PostgresSessionStore

from .common import Row, check_max, check_ratio, median, percentile, rate

DSN = os.environ.get("BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
POOL = 16
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _event(session_id: str, i: int) -> Event:
    return Event(
        type=EventType.MESSAGE_STREAMED,
        session_id=session_id,
        data={"text": "some streamed tokens of an answer", "i": i, "tags": ["a", "b"]},
        metadata={"model": "m"},
    )


def _raw_columns(events: list[Event]) -> list[list[Any]]:
    """What a hand-written client sends for these events: the ten column arrays."""
    cols: list[list[Any]] = [[] for _ in range(10)]
    for e in events:
        values = (
            e.id,
            e.session_id,
            e.type.value,
            e.run_id,
            (e.timestamp - EPOCH) // timedelta(microseconds=1),
            json.dumps(e.data),
            json.dumps(e.metadata),
            e.schema_version,
            e.provider,
            e.correlation_id,
        )
        for col, value in zip(cols, values):
            col.append(value)
    return cols


def _raw_decode(rows: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (
            r[0],
            r[1],
            r[2],
            r[3],
            EPOCH + timedelta(microseconds=r[4]),
            json.loads(r[5]),
            json.loads(r[6]),
            r[7],
            r[8],
            r[9],
            r[10],
        )
        for r in rows
    ]


async def _no_reset(conn: asyncpg.Connection) -> None:
    pass


# ---------------------------------------------------------------------------- long-poll child


def _appender_child(dsn: str, schema: str, session_id: str, pipe: Connection) -> None:
    """Another process: append one event per "go", report when the append started."""

    async def main() -> None:
        store = PostgresSessionStore(dsn, schema=schema)
        async with store:
            await store.get_latest_sequence(session_id)
            pipe.send("ready")
            i = 0
            while pipe.recv() == "go":
                started = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
                await store.append_event(_event(session_id, i))
                pipe.send((started, time.perf_counter()))
                i += 1

    asyncio.run(main())


async def _wake_latencies(
    store: PostgresSessionStore, dsn: str, count: int
) -> tuple[list[float], list[float]]:
    """Per append: reader woke minus writer's append call start (includes the writer's own
    commit), and minus the writer's append returning (the event is committed by then)."""
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe()
    sid = f"lp_{uuid.uuid4().hex[:6]}"
    child = ctx.Process(target=_appender_child, args=(dsn, store.schema, sid, theirs))
    child.start()
    loop = asyncio.get_running_loop()
    try:
        assert await loop.run_in_executor(None, ours.recv) == "ready"
        from_start: list[float] = []
        from_commit: list[float] = []
        for i in range(count):
            reader = asyncio.create_task(store.get_events(sid, after=i, wait_timeout_ms=10_000))
            while sid not in store._waiters.sessions() or store._listen_conn is None:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.002)  # let the reader's first (empty) query finish
            ours.send("go")
            got = await reader
            woke = time.perf_counter()
            started, committed = await loop.run_in_executor(None, ours.recv)
            assert len(got) == 1, "the reader timed out"
            from_start.append(woke - started)
            from_commit.append(woke - committed)
        ours.send("stop")
        return from_start, from_commit
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()


# ---------------------------------------------------------------------------- the cases


async def run(quick: bool) -> list[Row]:
    schema = f"bench_pg_{uuid.uuid4().hex[:8]}"
    store = PostgresSessionStore(
        DSN, schema=schema, auto_migrate=True, min_size=POOL, max_size=POOL
    )
    await store.open()
    raw = await asyncpg.create_pool(DSN, min_size=POOL, max_size=POOL, reset=_no_reset)
    append_sql = store._sql_append
    rows: list[Row] = []
    try:
        rows += await _sequential(store, raw, append_sql, 12 if quick else 60)
        rows += await _batches(store, raw, append_sql, 6 if quick else 30)
        rows += await _concurrent(store, raw, append_sql, 6 if quick else 30)
        from_start, from_commit = await _wake_latencies(store, DSN, 100 if quick else 500)
        # The commit happens somewhere inside the writer's append call, so the true wake
        # latency lies between "woke - append returned" (the bar) and "woke - append called"
        # (which adds the writer's own fsync, reported alongside).
        rows.append(
            check_max(
                Row(
                    "postgres",
                    "long-poll wake from another process, p99 after the append returned",
                    percentile(from_commit, 99) * 1e3,
                    "ms",
                    higher_is_better=False,
                    extra={
                        "p50_ms": percentile(from_commit, 50) * 1e3,
                        "p99_from_append_call_ms": percentile(from_start, 99) * 1e3,
                        "p50_from_append_call_ms": percentile(from_start, 50) * 1e3,
                        "max_from_append_call_ms": max(from_start) * 1e3,
                        "n": len(from_start),
                    },
                ),
                10.0,
                "<= 10 ms",
            )
        )
        rows += await _pages(store, raw, 100_000 if quick else 1_000_000)
        rows += await _newest(store, raw, 20_000 if quick else 100_000)
        rows += await _conditional(store, 200 if quick else 1000)
    finally:
        await raw.close()
        await store.close()
        await store.drop_schema()
    return rows


async def _sequential(
    store: PostgresSessionStore, raw: asyncpg.Pool, sql: str, rounds: int
) -> list[Row]:
    per_round = 25
    sid_ours, sid_raw = uuid.uuid4().hex, uuid.uuid4().hex

    async def ours() -> None:
        for i in range(per_round):
            await store.append_event_with_sequence(_event(sid_ours, i))

    async def plain() -> None:
        for i in range(per_round):
            async with raw.acquire() as conn:
                await conn.fetch(sql, *_raw_columns([_event(sid_raw, i)]))

    t_ours, t_raw = await _paired(ours, plain, rounds)
    row = Row(
        "postgres",
        "sequential append_event",
        rate(per_round, t_ours),
        "events/s",
        rate(per_round, t_raw),
    )
    return [check_ratio(row, 0.6)]


async def _batches(
    store: PostgresSessionStore, raw: asyncpg.Pool, sql: str, rounds: int
) -> list[Row]:
    sid_ours, sid_raw = uuid.uuid4().hex, uuid.uuid4().hex
    counter = iter(range(10**9))

    async def ours() -> None:
        b = next(counter)
        await store.append_events([_event(sid_ours, b * 1000 + i) for i in range(1000)])

    async def plain() -> None:
        b = next(counter)
        cols = _raw_columns([_event(sid_raw, b * 1000 + i) for i in range(1000)])
        async with raw.acquire() as conn:
            await conn.fetch(sql, *cols)

    t_ours, t_raw = await _paired(ours, plain, rounds)
    row = Row(
        "postgres",
        "append_events, batches of 1000",
        rate(1000, t_ours),
        "events/s",
        rate(1000, t_raw),
    )
    return [check_ratio(row, 0.7)]


async def _concurrent(
    store: PostgresSessionStore, raw: asyncpg.Pool, sql: str, rounds: int
) -> list[Row]:
    writers, per_writer = 64, 5
    sessions = [f"c_{w}_{uuid.uuid4().hex}" for w in range(writers)]

    async def ours() -> None:
        async def one(sid: str) -> None:
            for i in range(per_writer):
                await store.append_event_with_sequence(_event(sid, i))

        await asyncio.gather(*(one(s) for s in sessions))

    async def plain() -> None:
        async def one(sid: str) -> None:
            for i in range(per_writer):
                async with raw.acquire() as conn:
                    await conn.fetch(sql, *_raw_columns([_event("r" + sid, i)]))

        await asyncio.gather(*(one(s) for s in sessions))

    t_ours, t_raw = await _paired(ours, plain, rounds)
    total = writers * per_writer
    row = Row(
        "postgres",
        f"{writers} concurrent appenders, {writers} sessions (pool {POOL})",
        rate(total, t_ours),
        "events/s",
        rate(total, t_raw),
    )
    return [check_ratio(row, 0.8)]


async def _pages(store: PostgresSessionStore, raw: asyncpg.Pool, big: int) -> list[Row]:
    """1000-event pages from the middle of a ``big``-event log and of a 10,000-event log."""
    s = f'"{store.schema}"'
    async with raw.acquire() as conn:
        for sid, n in (("big", big), ("small", 10_000)):
            await conn.execute(
                f"""
                INSERT INTO {s}.events (session_id, seq, id, type, run_id, ts_us, data,
                                        metadata, schema_version)
                SELECT $1, g, $1 || '_' || g, 'message_streamed', 'run_' || (g / 1000),
                       1700000000000000 + g,
                       '{{"text":"some streamed tokens of an answer","i":' || g
                       || ',"tags":["a","b"]}}',
                       '{{"model":"m"}}', 1
                FROM generate_series(1, $2::bigint) AS g
                """,
                sid,
                n,
            )
            await conn.execute(f"INSERT INTO {s}.counters VALUES ($1, $2)", sid, n)
        await conn.execute(f"ANALYZE {s}.events")
    reads = 10

    async def ours_page(sid: str, after: int) -> None:
        for _ in range(reads):
            page = await store.get_events(sid, after=after, limit=1000)
            assert len(page) == 1000

    big_sql, _ = store.events_sql(EventQuery("x", after=1, limit=1))

    async def raw_page() -> None:
        for _ in range(reads):
            async with raw.acquire() as conn:
                got = _raw_decode(await conn.fetch(big_sql, "big", big // 2, 1000))
            assert len(got) == 1000

    t_ours, t_raw = await _paired(lambda: ours_page("big", big // 2), raw_page, 9)
    t_big, t_small = await _paired(
        lambda: ours_page("big", big // 2), lambda: ours_page("small", 5000), 9
    )
    label = f"{big:,}"
    page = Row(
        "postgres",
        f"get_events 1000-event page, {label}-event session",
        reads / t_ours,
        "pages/s",
        reads / t_raw,
        extra={"ms_per_page": t_ours / reads * 1e3},
    )
    growth = Row(
        "postgres",
        f"page time, {label}-event vs 10,000-event session",
        t_big / t_small,
        "x",
        higher_is_better=False,
        extra={"ms_big": t_big / reads * 1e3, "ms_small": t_small / reads * 1e3},
    )
    return [check_ratio(page, 0.5), check_max(growth, 1.5, "<= 1.5 x")]


async def _paired(ours: Any, plain: Any, rounds: int) -> tuple[float, float]:
    """Median time of a short round of each, rounds interleaved and the first mover swapped
    every round, so the background load of a shared machine hits both sides alike."""
    t_ours: list[float] = []
    t_raw: list[float] = []
    for r in range(rounds):
        pair = ((ours, t_ours), (plain, t_raw))
        for work, into in pair if r % 2 == 0 else pair[::-1]:
            start = time.perf_counter()
            await work()
            into.append(time.perf_counter() - start)
    return median(t_ours), median(t_raw)


async def _newest(store: PostgresSessionStore, raw: asyncpg.Pool, size: int) -> list[Row]:
    """``order="desc", limit=1000`` (the newest 1000) of a ``size``-event session, against
    asyncpg running the same SELECT and decoding it, and against the same page read ``asc``."""
    s = f'"{store.schema}"'
    sid = "newest"
    async with raw.acquire() as conn:
        await conn.execute(
            f"""
            INSERT INTO {s}.events (session_id, seq, id, type, run_id, ts_us, data,
                                    metadata, schema_version)
            SELECT $1, g, $1 || '_' || g, 'message_streamed', 'run_' || (g / 1000),
                   1700000000000000 + g,
                   '{{"text":"some streamed tokens of an answer","i":' || g
                   || ',"tags":["a","b"]}}',
                   '{{"model":"m"}}', 1
            FROM generate_series(1, $2::bigint) AS g
            """,
            sid,
            size,
        )
        await conn.execute(f"INSERT INTO {s}.counters VALUES ($1, $2)", sid, size)
        await conn.execute(f"ANALYZE {s}.events")
    reads = 10
    desc_sql, _ = store.events_sql(EventQuery(sid, limit=1, desc=True))

    async def ours_desc() -> None:
        for _ in range(reads):
            assert len(await store.get_events(sid, order="desc", limit=1000)) == 1000

    async def ours_asc() -> None:
        for _ in range(reads):
            assert len(await store.get_events(sid, after=size - 1000, limit=1000)) == 1000

    async def raw_desc() -> None:
        for _ in range(reads):
            async with raw.acquire() as conn:
                assert len(_raw_decode(await conn.fetch(desc_sql, sid, 1000))) == 1000

    t_desc, t_raw = await _paired(ours_desc, raw_desc, 9)
    t_desc2, t_asc = await _paired(ours_desc, ours_asc, 9)
    vs_raw = Row(
        "postgres",
        f'get_events(order="desc", limit=1000), {size:,}-event session',
        reads / t_desc,
        "pages/s",
        reads / t_raw,
        extra={"ms_per_page": t_desc / reads * 1e3, "raw_ms_per_page": t_raw / reads * 1e3},
    )
    vs_asc = Row(
        "postgres",
        f"desc vs asc page time, {size:,}-event session",
        t_desc2 / t_asc,
        "x",
        higher_is_better=False,
        extra={"ms_desc": t_desc2 / reads * 1e3, "ms_asc": t_asc / reads * 1e3},
    )
    return [check_ratio(vs_raw, 0.5), check_max(vs_asc, 1.5, "<= 1.5 x")]


async def _conditional(store: PostgresSessionStore, count: int) -> list[Row]:
    """One event per call with ``expected_sequence`` against the same without, alternated."""
    sid_plain, sid_cond = uuid.uuid4().hex, uuid.uuid4().hex
    t_plain: list[float] = []
    t_cond: list[float] = []
    for i in range(count):
        plain, cond = _event(sid_plain, i), _event(sid_cond, i)
        for conditional in (False, True) if i % 2 == 0 else (True, False):
            start = time.perf_counter()
            if conditional:
                await store.append_event(cond, expected_sequence=i)
            else:
                await store.append_event(plain)
            (t_cond if conditional else t_plain).append(time.perf_counter() - start)
    row = Row(
        "postgres",
        "conditional append (expected_sequence) vs plain, p50",
        median(t_cond) * 1e6,
        "µs",
        median(t_plain) * 1e6,
        higher_is_better=False,
    )
    return [check_max(row, 1.1 * median(t_plain) * 1e6, "<= 1.1 x plain")]
