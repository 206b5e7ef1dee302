"""``python -m bench.postgres_drivers``: the measurement behind the PostgreSQL driver choice.

Runs the store's two hot paths with asyncpg and psycopg 3 (binary, prepared), one connection
each, rounds interleaved so background load hits both alike: the append transaction (one call
of the schema's ``append_events`` function, one event) and a 1000-event page fetched and
decoded into ``Event`` values. Prints median and best latency per operation. Needs
``psycopg[binary]`` installed.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from typing import Any

import asyncpg
import psycopg

from agent_session_store.base import EventQuery
from agent_session_store.codec import EncodedEvent, decode_event, encode_event
from agent_session_store.models import Event, EventType
from agent_session_store.postgres import PostgresSessionStore

from .common import PG_DSN

DSN = PG_DSN
ROUNDS = 6
APPENDS = 200  # per round and driver
PAGES = 40  # per round and driver
TYPES = ["text", "text", "text", "text", "bigint", "text", "text", "integer", "text", "text"]


def _rows(session_id: str, n: int) -> list[EncodedEvent]:
    return [
        encode_event(
            Event(
                type=EventType.MESSAGE_STREAMED,
                session_id=session_id,
                data={"text": "token " * 20, "i": i},
            )
        )
        for i in range(n)
    ]


async def main() -> None:
    schema = f"bench_drivers_{uuid.uuid4().hex[:8]}"
    store = PostgresSessionStore(DSN, schema=schema, auto_migrate=True)
    await store.open()
    append_sql = store._sql_append
    page_sql, _ = store.events_sql(EventQuery("page", after=2000, limit=1000))
    pg_append_sql = (
        f'SELECT * FROM "{schema}".append_events(' + ", ".join(f"%s::{t}[]" for t in TYPES) + ")"
    )
    pg_page_sql = page_sql.replace("$1", "%s").replace("$2", "%s").replace("$3", "%s")
    for i in range(5):
        await store.append_events(
            [
                Event(type=EventType.MESSAGE_STREAMED, session_id="page", data={"i": j})
                for j in range(i * 1000, i * 1000 + 1000)
            ]
        )
    apg = await asyncpg.connect(DSN)
    pg = await psycopg.AsyncConnection.connect(DSN, autocommit=True)
    cur = pg.cursor(binary=True)
    times: dict[str, list[float]] = {k: [] for k in ("apg_a", "pg_a", "apg_p", "pg_p")}
    cpu: dict[str, float] = dict.fromkeys(times, 0.0)
    rows_a = iter(_rows("a", ROUNDS * APPENDS))
    rows_p = iter(_rows("p", ROUNDS * APPENDS))

    async def apg_append() -> None:
        await apg.fetch(append_sql, *([v] for v in next(rows_a)))

    async def pg_append() -> None:
        await cur.execute(pg_append_sql, [[v] for v in next(rows_p)], prepare=True)
        await cur.fetchall()

    async def apg_page() -> None:
        got: list[Any] = await apg.fetch(page_sql, "page", 2000, 1000)
        [decode_event(r, r[10]) for r in got]

    async def pg_page() -> None:
        await cur.execute(pg_page_sql, ("page", 2000, 1000), prepare=True)
        [decode_event(r, r[10]) for r in await cur.fetchall()]

    async def timed(key: str, n: int, op: Any) -> None:
        cpu_start = time.process_time()
        for _ in range(n):
            start = time.perf_counter()
            await op()
            times[key].append(time.perf_counter() - start)
        cpu[key] += time.process_time() - cpu_start

    try:
        for _ in range(ROUNDS):
            await timed("apg_a", APPENDS, apg_append)
            await timed("pg_a", APPENDS, pg_append)
            await timed("apg_p", PAGES, apg_page)
            await timed("pg_p", PAGES, pg_page)
    finally:
        await apg.close()
        await pg.close()
        await store.close()
        await store.drop_schema()

    def fmt(key: str) -> str:
        v = times[key]
        per_op_cpu = cpu[key] / len(v) * 1e3
        return f"{statistics.median(v) * 1e3:.3f} ms, client CPU {per_op_cpu:.3f} ms"

    print("| driver | append transaction (median wall, client CPU) | 1000-event page + decode |")
    print("|---|---|---|")
    print(f"| asyncpg {asyncpg.__version__} | {fmt('apg_a')} | {fmt('apg_p')} |")
    print(f"| psycopg {psycopg.__version__} | {fmt('pg_a')} | {fmt('pg_p')} |")
    print(f"(python {sys.version.split()[0]})")


if __name__ == "__main__":
    asyncio.run(main())
