"""Contract v2 bars: newest-first reads, conditional appends, visible history, streamed copy.

Each bar compares two things measured in the same run, alternating, so a noisy machine
moves both sides alike:

* ``order="desc", limit=1000`` in a 100,000-event session against ``asc`` (within 1.5x);
* a conditional append against a plain one (at most 10 % dearer);
* ``get_visible_events(limit=50)`` after 1,000 rewinds against ``get_events(order="desc",
  limit=50)`` (at most 2x);
* ``copy`` of a SQLite session into PostgreSQL against asyncpg inserting the same rows in the
  same batches, and the copying process's peak RSS at 100k and 1M events (< 300 MB).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import tempfile
import time
import uuid
from typing import Any

from agent_session_store import Event, EventType, Session, open_session_store
from agent_session_store.base import SessionStoreBase

from .common import PG_DSN, REDIS_URL, Row, check_max, drop_backend_data, median

PG = PG_DSN
REDIS = REDIS_URL


def _urls(tmp: str, tag: str) -> dict[str, str]:
    return {
        "sqlite": f"sqlite:///{tmp}/{tag}.db?auto_migrate=true",
        "postgres": f"{PG}?schema={tag}&auto_migrate=true",
        "redis": f"{REDIS}?prefix={tag}",
    }


def _payload(i: int) -> dict[str, Any]:
    return {"role": "assistant", "content": f"message {i} " + "x" * 250}


async def _fill(store: SessionStoreBase, sid: str, count: int) -> None:
    for start in range(0, count, 2000):
        await store.append_events(
            [
                Event(type=EventType.MESSAGE_SENT, session_id=sid, data=_payload(i))
                for i in range(start, min(count, start + 2000))
            ]
        )


async def _alternate(rounds: int, a: Any, b: Any) -> tuple[float, float]:
    """Median seconds of ``a`` and of ``b``, run alternately."""
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(rounds):
        for work, out in ((a, ta), (b, tb)):
            start = time.perf_counter()
            await work()
            out.append(time.perf_counter() - start)
    return median(ta), median(tb)


async def _reads(name: str, store: SessionStoreBase, size: int, rounds: int) -> list[Row]:
    await _fill(store, "big", size)

    async def desc() -> None:
        assert len(await store.get_events("big", order="desc", limit=1000)) == 1000

    async def asc() -> None:
        assert len(await store.get_events("big", after=size - 1000, limit=1000)) == 1000

    t_desc, t_asc = await _alternate(rounds, desc, asc)
    row = Row(
        name,
        f"desc limit 1000 of {size:,} (vs asc)",
        t_desc * 1e3,
        "ms",
        t_asc * 1e3,
        higher_is_better=False,
    )
    row.bar = "desc <= 1.5 x asc"
    row.passed = t_desc <= 1.5 * t_asc
    return [row]


async def _conditional(name: str, store: SessionStoreBase, count: int) -> list[Row]:
    sid_plain, sid_cond = "plain", "cond"
    times_plain: list[float] = []
    times_cond: list[float] = []
    for i in range(count):
        start = time.perf_counter()
        await store.append_event(
            Event(type=EventType.MESSAGE_SENT, session_id=sid_plain, data=_payload(i))
        )
        times_plain.append(time.perf_counter() - start)
        start = time.perf_counter()
        await store.append_event(
            Event(type=EventType.MESSAGE_SENT, session_id=sid_cond, data=_payload(i)),
            expected_sequence=i,
        )
        times_cond.append(time.perf_counter() - start)
    plain, cond = median(times_plain), median(times_cond)
    row = Row(
        name, "conditional append (vs plain)", cond * 1e6, "µs", plain * 1e6, higher_is_better=False
    )
    row.bar = "<= 1.1 x plain"
    row.passed = cond <= 1.1 * plain
    return [row]


async def _visible(name: str, store: SessionStoreBase, rewinds: int, rounds: int) -> list[Row]:
    """Two sessions with ``rewinds`` pops each: one popped over its life, then talked on
    (the bar's case); one popped all along its tail (every third event hides one, the worst
    case: the walk reads what it hides), reported without a bar."""
    rows: list[Row] = []
    for sid, tail_pops in (("history", False), ("tail", True)):
        batch: list[Event] = []
        seq = 0
        for i in range(rewinds):
            for _ in range(2 if tail_pops else 1):
                batch.append(Event(type=EventType.MESSAGE_SENT, session_id=sid, data=_payload(i)))
                seq += 1
            batch.append(
                Event(type=EventType.HISTORY_REWOUND, session_id=sid, data={"to_sequence": seq - 1})
            )
            seq += 1
            if len(batch) >= 600:
                await store.append_events(batch)
                batch = []
        if not tail_pops:
            batch += [
                Event(type=EventType.MESSAGE_SENT, session_id=sid, data=_payload(i))
                for i in range(100)
            ]
        if batch:
            await store.append_events(batch)

        async def visible(sid: str = sid) -> None:
            assert len(await store.get_visible_events(sid, limit=50)) == 50

        async def desc(sid: str = sid) -> None:
            assert len(await store.get_events(sid, order="desc", limit=50)) == 50

        t_vis, t_desc = await _alternate(rounds, visible, desc)
        case = (
            f"visible limit 50 after {rewinds:,} pops along the tail (vs desc 50)"
            if tail_pops
            else f"visible limit 50 after {rewinds:,} rewinds (vs desc 50)"
        )
        row = Row(name, case, t_vis * 1e3, "ms", t_desc * 1e3, higher_is_better=False)
        if not tail_pops:
            row.bar = "<= 2 x desc"
            row.passed = t_vis <= 2 * t_desc
        rows.append(row)
    return rows


# ---------------------------------------------------------------- copy SQLite -> PostgreSQL


def _copy_child(src_url: str, dst_url: str, out: Any) -> None:
    """Runs in a fresh process so its peak RSS is the copy's own."""
    from agent_session_store.transfer import copy_session

    async def main() -> float:
        async with open_session_store(src_url) as src, open_session_store(dst_url) as dst:
            start = time.perf_counter()
            report = await copy_session(src, dst, "big", page_size=1000)
            elapsed = time.perf_counter() - start
            assert report.events_imported > 0
            return elapsed

    elapsed = asyncio.run(main())
    with open("/proc/self/status") as status:
        hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    out.put((elapsed, hwm / 1024))


async def _raw_insert(src_url: str, tag: str, count: int) -> float:
    """asyncpg inserting the same rows into a plain table, 1,000 per batch."""
    import sqlite3

    import asyncpg

    path = src_url.removeprefix("sqlite:///").split("?")[0]
    conn = await asyncpg.connect(PG)
    db = sqlite3.connect(path)
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{tag}_raw"')
        await conn.execute(
            f'CREATE TABLE "{tag}_raw".events (session_id text, seq bigint, id text UNIQUE,'
            " type text, run_id text, ts bigint, data jsonb, metadata jsonb, schema_version int,"
            " provider text, correlation_id text, PRIMARY KEY (session_id, seq))"
        )
        start = time.perf_counter()
        after = 0
        while True:
            rows = db.execute(
                "SELECT session_id, seq, id, type, run_id, timestamp_us, data, metadata,"
                " schema_version, provider, correlation_id FROM events WHERE session_id = ?"
                " AND seq > ? ORDER BY seq LIMIT 1000",
                ("big", after),
            ).fetchall()
            if not rows:
                break
            decoded = [(*r[:6], json.loads(r[6]), json.loads(r[7]), *r[8:]) for r in rows]
            async with conn.transaction():
                await conn.executemany(
                    f'INSERT INTO "{tag}_raw".events VALUES ($1,$2,$3,$4,$5,$6,$7::text::jsonb,'
                    "$8::text::jsonb,$9,$10,$11)",
                    [(*r[:6], json.dumps(r[6]), json.dumps(r[7]), *r[8:]) for r in decoded],
                )
            after = rows[-1][1]
        return time.perf_counter() - start
    finally:
        db.close()
        await conn.execute(f'DROP SCHEMA IF EXISTS "{tag}_raw" CASCADE')
        await conn.close()


async def _copy(tmp: str, count: int) -> list[Row]:
    tag = f"bh_{uuid.uuid4().hex[:8]}"
    src_url = _urls(tmp, tag)["sqlite"]
    dst_url = _urls(tmp, tag)["postgres"]
    async with open_session_store(src_url) as src:
        await src.save_session(Session(id="big", agent_id="bench"))
        await _fill(src, "big", count)
    try:
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        proc = ctx.Process(target=_copy_child, args=(src_url, dst_url, out))
        proc.start()
        elapsed, peak_mb = out.get(timeout=3600)
        proc.join()
        raw = await _raw_insert(src_url, tag, count)
    finally:
        await drop_backend_data("postgres", tag)
    speed = Row(
        "sqlite->postgres",
        f"copy {count:,} events (vs raw asyncpg batches)",
        count / elapsed,
        "events/s",
        count / raw,
    )
    speed.bar = ">= 0.5 x raw"
    speed.passed = speed.ratio is not None and speed.ratio >= 0.5
    rss = check_max(
        Row(
            "sqlite->postgres",
            f"copy {count:,} events: peak RSS",
            peak_mb,
            "MB",
            higher_is_better=False,
        ),
        300,
        "< 300 MB",
    )
    return [speed, rss]


async def run(quick: bool = False) -> list[Row]:
    size = 10_000 if quick else 100_000
    rewinds = 200 if quick else 1000
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("sqlite", "postgres", "redis"):
            tag = f"bh_{uuid.uuid4().hex[:8]}"
            try:
                async with open_session_store(_urls(tmp, tag)[name]) as store:
                    rows += await _reads(name, store, size, 15)
                    rows += await _conditional(name, store, 300 if quick else 1500)
                    rows += await _visible(name, store, rewinds, 30)
            finally:
                await drop_backend_data(name, tag)
        for count in (10_000,) if quick else (100_000, 1_000_000):
            rows += await _copy(tmp, count)
    return rows
