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
import time
import uuid
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from typing import Any

import asyncpg

from agent_session_store.base import EventQuery
from agent_session_store.codec import EncodedEvent
from agent_session_store.models import Event, EventType
from agent_session_store.postgres import PostgresSessionStore
from agent_session_store.query import SessionSearch, encode_cursor
from agent_session_store.retention import RetentionPolicy

from .common import PG_DSN, Row, check_max, check_ratio, median, percentile, rate

DSN = PG_DSN
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
        rows += await run_queries(store, raw, quick)
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
    quiet = _NoNotify(DSN, schema=store.schema, min_size=POOL, max_size=POOL)
    await quiet.open()
    try:

        async def silent() -> None:
            async def one(sid: str) -> None:
                for i in range(per_writer):
                    await quiet.append_event_with_sequence(_event("q" + sid, i))

            await asyncio.gather(*(one(s) for s in sessions))

        t_ours2, t_quiet = await _paired(ours, silent, rounds)
    finally:
        await quiet.close()
    # issue 13 (bar 0.9): a commit that NOTIFYs holds a server-wide lock; overlapping appends
    # commit quietly and share wake() calls (postgres/announcer.py)
    vs_quiet = Row(
        "postgres",
        f"{writers} concurrent appenders vs the same store without NOTIFY ('raw' column)",
        rate(total, t_ours2),
        "events/s",
        rate(total, t_quiet),
    )
    return [check_ratio(row, 0.8), check_ratio(vs_quiet, 0.9)]


class _NoNotify(PostgresSessionStore):
    """The store with its appends' NOTIFY left out: the same function, no second
    transaction (what the NOTIFY costs concurrent appenders)."""

    async def _append(self, rows: list[EncodedEvent], expected: int | None = None) -> list[Event]:
        assert expected is None
        answer = await self._fetch(self._sql_append_quiet, *self.append_args(rows), None)
        return await self._stored(rows, list(zip(*answer)))  # as append_call's arrays


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


# ---------------------------------------------------------------------------- queries (issue 9)

T0 = 1_750_000_000_000_000  # µs: "now" of the query data
DAY_US = 86_400_000_000


async def _sessions_data(conn: Any, s: str, n: int) -> None:
    """``n`` sessions with documents as wide as real ones; two agents and two statuses (the
    filtered one on two thirds or three quarters), tags on two thirds, 1 % soft-deleted:
    each filter below matches enough for page 1,000."""
    await conn.execute(
        f"""
        INSERT INTO {s}.sessions (id, agent_id, status, created_us, updated_us, doc)
        SELECT 'ses_' || lpad(g::text, 7, '0'), 'agent_' || least(g % 3, 1),
               (ARRAY['completed','active'])[least(g % 4, 1) + 1],
               {T0} - g::bigint * 1000000, {T0} - ((g * 7919) % $1)::bigint * 1000000,
               json_build_object(
                   'id', 'ses_' || g, 'agent_id', 'agent_' || (g % 2), 'status', 'active',
                   'metadata', json_build_object('note', repeat('m', 300)), 'context', '{{}}'::json,
                   'tags', CASE WHEN g % 3 <> 0 THEN '["t"]'::json ELSE '[]'::json END,
                   'created_at', '2025-01-01T00:00:00.000000Z',
                   'updated_at', '2025-01-01T00:00:00.000000Z',
                   'deleted_at', CASE WHEN g % 100 = 0 THEN '2025-02-01T00:00:00.000000Z' END
               )::text
        FROM generate_series(1, $1) AS g
        """,
        n,
    )
    await conn.execute(f"ANALYZE {s}.sessions")


async def _search_pages(store: PostgresSessionStore, raw: asyncpg.Pool, n: int) -> list[Row]:
    """search_sessions page 1 against page 1,000 (limit 50), default ordering and each
    single filter; page 1,000 starts at the cursor the 999th page returns."""
    s = f'"{store.schema}"'
    async with raw.acquire() as conn:
        await _sessions_data(conn, s, n)
    pages = 1000 if n >= 100_000 else max(2, n // 100)
    cases: list[tuple[str, dict[str, Any]]] = [
        ("default (updated_at_desc)", {}),
        ("created_at_asc", {"order_by": "created_at_asc"}),
        ("created_at_desc", {"order_by": "created_at_desc"}),
        ("agent_id", {"agent_id": "agent_1"}),
        ("status", {"status": "active"}),
        ("tags", {"tags": ["t"]}),
        ("created_after", {"created_after": EPOCH + timedelta(microseconds=T0 - n * 900_000)}),
        ("updated_after", {"updated_after": EPOCH + timedelta(microseconds=T0 - n * 900_000)}),
        ("include_deleted", {"include_deleted": True}),
    ]
    rows: list[Row] = []
    for label, kw in cases:
        # the position after item (pages - 1) * 50, from the store's own SQL with OFFSET
        q = SessionSearch(
            agent_id=kw.get("agent_id"),
            statuses=(kw["status"],) if "status" in kw else None,
            tags=tuple(kw.get("tags", ())),
            created_after_us=T0 - n * 900_000 if "created_after" in kw else None,
            updated_after_us=T0 - n * 900_000 if "updated_after" in kw else None,
            include_deleted=kw.get("include_deleted", False),
            order_by=kw.get("order_by", "updated_at_desc"),
        )
        sql, args = store.search_sessions_sql(q, None, 1)
        col = "updated_us" if q.order_by.startswith("updated") else "created_us"
        sql = sql.replace("SELECT doc, updated_us", f"SELECT {col}, id", 1)
        async with raw.acquire() as conn:
            last = await conn.fetchrow(f"{sql} OFFSET {(pages - 1) * 50 - 1}", *args)
        assert last is not None, (label, sql, args)
        cursor = encode_cursor("search_sessions", q.order_by, (int(last[0]), last[1]))
        reads = 10

        async def first(kw: dict[str, Any] = kw, reads: int = reads) -> None:
            for _ in range(reads):
                assert len((await store.search_sessions(limit=50, **kw)).items) == 50

        async def deep(kw: dict[str, Any] = kw, cursor: str = cursor, reads: int = reads) -> None:
            for _ in range(reads):
                page = await store.search_sessions(limit=50, cursor=cursor, **kw)
                assert len(page.items) == 50

        t_first, t_deep = await _paired(first, deep, 7)
        rows.append(
            check_max(
                Row(
                    "postgres",
                    f"search_sessions page {pages:,} vs page 1, {n:,} sessions, {label}",
                    t_deep / t_first,
                    "x",
                    higher_is_better=False,
                    extra={"ms_page_1": t_first / reads * 1e3, "ms_deep": t_deep / reads * 1e3},
                ),
                1.5,
                "<= 1.5 x",
            )
        )
    return rows


async def _runs_data(conn: Any, s: str, session_of: str, n: int, tag: str) -> None:
    """``n`` runs with real-width docs over three providers and five models, half costed."""
    await conn.execute(
        f"""
        INSERT INTO {s}.runs (id, session_id, status, started_us, doc)
        SELECT 'run_{tag}_' || g, {session_of},
               (ARRAY['completed','failed','running'])[g % 3 + 1], {T0} - g * 1000,
               json_build_object(
                   'id', 'run_{tag}_' || g,
                   'provider', (ARRAY['anthropic','openai','google'])[g % 3 + 1],
                   'provider_metadata', json_build_object('model', 'm' || (g % 5)),
                   'token_usage', json_build_object('input_tokens', g % 1000,
                                                    'output_tokens', g % 300),
                   'cost_usd', CASE WHEN g % 2 = 0 THEN 0.01 END,
                   'input', json_build_object('text', repeat('i', 300))
               )::text
        FROM generate_series(1, $1) AS g
        """,
        n,
    )


async def _aggregates(store: PostgresSessionStore, raw: asyncpg.Pool, quick: bool) -> list[Row]:
    """get_session_stats of a session with 100,000 events and 1,000 runs, and
    get_usage_summary over 100,000 runs, against the raw SQL aggregates."""
    s = f'"{store.schema}"'
    events, runs, all_runs = (10_000, 100, 10_000) if quick else (100_000, 1_000, 100_000)
    sid = "stats_session"
    async with raw.acquire() as conn:
        await conn.execute(
            f"INSERT INTO {s}.sessions (id, agent_id, status, created_us, updated_us, doc) "
            "VALUES ($1, 'a', 'active', 0, 0, $2)",
            sid,
            json.dumps(
                {
                    "id": sid,
                    "agent_id": "a",
                    "status": "active",
                    "created_at": "2025-01-01T00:00:00.000000Z",
                    "updated_at": "2025-01-01T00:00:00.000000Z",
                }
            ),
        )
        await conn.execute(
            f"""
            INSERT INTO {s}.events (session_id, seq, id, type, run_id, ts_us, data, metadata,
                                    schema_version)
            SELECT $1, g, 'st_' || g, 'message_streamed', 'run_st_' || (g % {runs} + 1),
                   {T0} + g, '{{"text":"' || repeat('x', 300) || '"}}', '{{}}', 1
            FROM generate_series(1, $2::bigint) AS g
            """,
            sid,
            events,
        )
        await conn.execute(f"INSERT INTO {s}.counters VALUES ($1, $2)", sid, events)
        await _runs_data(conn, s, f"'{sid}'", runs, "st")
        await _runs_data(conn, s, "'usage_' || (g % 1000)", all_runs - runs, "us")
        await conn.execute(f"ANALYZE {s}.events; ANALYZE {s}.runs")
    reads = 5

    async def ours_stats() -> None:
        for _ in range(reads):
            assert (await store.get_session_stats(sid)).event_count == events

    async def raw_stats() -> None:
        for _ in range(reads):
            async with raw.acquire() as conn:
                e = await conn.fetchrow(
                    f"SELECT count(*), min(ts_us), max(ts_us) FROM {s}.events "
                    "WHERE session_id = $1",
                    sid,
                )
                await conn.fetch(
                    f"SELECT provider, status, count(*), sum(input_tokens), sum(output_tokens), "
                    f"sum(total_tokens), sum(cost_usd) FROM {s}.runs WHERE session_id = $1 "
                    "GROUP BY provider, status",
                    sid,
                )
                assert e is not None and e[0] == events

    async def ours_usage() -> None:
        for _ in range(reads):
            assert (await store.get_usage_summary()).run_count == all_runs

    async def raw_usage() -> None:
        for _ in range(reads):
            async with raw.acquire() as conn:
                got = await conn.fetch(
                    f"SELECT provider, count(*), sum(input_tokens), sum(output_tokens), "
                    f"sum(total_tokens) FROM {s}.runs GROUP BY provider"
                )
            assert sum(r[1] for r in got) == all_runs

    t_ours, t_raw = await _paired(ours_stats, raw_stats, 7)
    stats = Row(
        "postgres",
        f"get_session_stats, {events:,} events and {runs:,} runs",
        reads / t_ours,
        "calls/s",
        reads / t_raw,
        extra={"ms": t_ours / reads * 1e3, "raw_ms": t_raw / reads * 1e3},
    )
    t_ours, t_raw = await _paired(ours_usage, raw_usage, 7)
    usage = Row(
        "postgres",
        f"get_usage_summary over {all_runs:,} runs",
        reads / t_ours,
        "calls/s",
        reads / t_raw,
        extra={"ms": t_ours / reads * 1e3, "raw_ms": t_raw / reads * 1e3},
    )
    return [check_ratio(stats, 0.5), check_ratio(usage, 0.5)]


async def _maintenance_data(conn: Any, s: str, n: int) -> None:
    """``n`` sessions; 5 % completed and idle 100 days (soft-deleted now), 5 % soft-deleted
    40 days ago (hard-deleted now, with a run and three events each); the rest fresh."""
    await conn.execute(
        f"""
        INSERT INTO {s}.sessions (id, agent_id, status, created_us, updated_us, doc)
        SELECT 'ses_' || lpad(g::text, 7, '0'), 'a',
               CASE WHEN g % 20 = 0 THEN 'completed' ELSE 'active' END,
               {T0} - 200 * {DAY_US},
               CASE WHEN g % 20 IN (0, 1) THEN {T0} - 100 * {DAY_US} ELSE {T0} END,
               json_build_object(
                   'id', 'ses_' || lpad(g::text, 7, '0'), 'agent_id', 'a',
                   'status', CASE WHEN g % 20 = 0 THEN 'completed' ELSE 'active' END,
                   'metadata', json_build_object('note', repeat('m', 300)), 'context', '{{}}'::json,
                   'tags', '[]'::json, 'parent_session_id', NULL,
                   'created_at', '2024-12-01T00:00:00.000000Z',
                   'updated_at', '2025-01-01T00:00:00.000000Z',
                   'deleted_at', CASE WHEN g % 20 = 1 THEN
                       to_char(to_timestamp(({T0} - 40 * {DAY_US}) / 1e6) AT TIME ZONE 'UTC',
                               'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') END
               )::text
        FROM generate_series(1, {n}) AS g;
        INSERT INTO {s}.runs (id, session_id, status, started_us, doc)
        SELECT 'run_' || id, id, 'completed', {T0}, json_build_object('id', 'run_' || id)::text
        FROM {s}.sessions WHERE deleted_us IS NOT NULL;
        INSERT INTO {s}.events (session_id, seq, id, type, ts_us, data, metadata, schema_version)
        SELECT x.id, k, x.id || '_' || k, 'message_sent', {T0}, '{{"text":"hello"}}', '{{}}', 1
        FROM {s}.sessions AS x, generate_series(1, 3) AS k WHERE x.deleted_us IS NOT NULL;
        INSERT INTO {s}.counters (session_id, last_seq)
        SELECT id, 3 FROM {s}.sessions WHERE deleted_us IS NOT NULL;
        ANALYZE {s}.sessions; ANALYZE {s}.runs; ANALYZE {s}.events; ANALYZE {s}.counters;
        """
    )


async def _maintenance(store: PostgresSessionStore, raw: asyncpg.Pool, n: int) -> list[Row]:
    """run_maintenance against raw SQL making the same changes in the same batches: one
    UPDATE for the soft deletes, then the ids, then per batch of 100 one DELETE per table.
    Destructive, so each side gets its own schema with the same data, once."""
    policy = RetentionPolicy()
    now = EPOCH + timedelta(microseconds=T0)
    other = PostgresSessionStore(DSN, schema=store.schema + "_raw", auto_migrate=True)
    await other.open()
    ours_s, raw_s = f'"{store.schema}_m"', f'"{store.schema}_raw"'
    mine = PostgresSessionStore(DSN, schema=store.schema + "_m", auto_migrate=True)
    await mine.open()
    try:
        async with raw.acquire() as conn:
            await _maintenance_data(conn, ours_s, n)
            await _maintenance_data(conn, raw_s, n)
        start = time.perf_counter()
        report = await mine.run_maintenance(policy, now=now)
        t_ours = time.perf_counter() - start
        assert report.sessions_soft_deleted == n // 20 and report.sessions_hard_deleted == n // 20
        start = time.perf_counter()
        async with raw.acquire() as conn:
            deleted_at = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            await conn.execute(
                f"UPDATE {raw_s}.sessions SET doc = jsonb_set(doc::jsonb, '{{deleted_at}}', "
                "to_jsonb($1::text))::text WHERE deleted_us IS NULL AND updated_us < $2 "
                "AND status <> ALL($3::text[])",
                deleted_at,
                T0 - 90 * DAY_US,
                list(policy.exempt_statuses),
            )
            ids = [
                r[0]
                for r in await conn.fetch(
                    f"SELECT id FROM {raw_s}.sessions WHERE deleted_us < $1 ORDER BY id",
                    T0 - 30 * DAY_US,
                )
            ]
            for i in range(0, len(ids), policy.batch_size):
                batch = ids[i : i + policy.batch_size]
                async with conn.transaction():
                    for table in ("sessions", "runs", "events", "counters"):
                        column = "id" if table == "sessions" else "session_id"
                        await conn.execute(
                            f"DELETE FROM {raw_s}.{table} WHERE {column} = ANY($1)", batch
                        )
        t_raw = time.perf_counter() - start
        assert len(ids) == n // 20
    finally:
        for s in (mine, other):
            await s.close()
            await s.drop_schema()
    return [
        check_ratio(
            Row(
                "postgres",
                f"run_maintenance, {n:,} sessions, 10 % expiring (half soft, half hard)",
                1 / t_ours,
                "runs/s",
                1 / t_raw,
                extra={"ms": t_ours * 1e3, "raw_ms": t_raw * 1e3},
            ),
            0.5,
        )
    ]


async def run_queries(store: PostgresSessionStore, raw: asyncpg.Pool, quick: bool) -> list[Row]:
    """Issue 9's bars for PostgreSQL (``python -c 'import bench.postgres as b; ...'`` runs
    them alone)."""
    n = 10_000 if quick else 100_000
    rows = await _search_pages(store, raw, n)
    rows += await _aggregates(store, raw, quick)
    rows += await _maintenance(store, raw, n)
    return rows


async def _queries_only(quick: bool) -> list[Row]:
    schema = f"bench_pgq_{uuid.uuid4().hex[:8]}"
    store = PostgresSessionStore(DSN, schema=schema, auto_migrate=True, min_size=4, max_size=4)
    await store.open()
    raw = await asyncpg.create_pool(DSN, min_size=4, max_size=4, reset=_no_reset)
    try:
        return await run_queries(store, raw, quick)
    finally:
        await raw.close()
        await store.close()
        await store.drop_schema()


if __name__ == "__main__":  # the query bars alone: python -m bench.postgres [--quick]
    import sys

    for found in asyncio.run(_queries_only("--quick" in sys.argv)):
        print(json.dumps(found.as_dict()))
