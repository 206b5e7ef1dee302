"""Redis benchmark: our store against plain redis-py doing the same work in the same run.

"The same work" for writes is the smallest correct thing a hand-written client would send:
one EVALSHA of a short Lua script that checks the id index, INCRs the counter, stores the row,
indexes it and publishes (a numbered log needs the INCR and the store in one atomic step),
with the payload JSON-encoded in Python. Long-poll latency is measured across processes, from
just before the writer process sends its append to the moment the reader has its events.
Everything runs against the local single node (127.0.0.1:6379) under a fresh key prefix that
is removed afterwards.
"""

from __future__ import annotations

import asyncio
import gc
import json
import multiprocessing as mp
import time
import uuid
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from typing import Any

import redis.asyncio

from agent_session_store.codec import encode_event
from agent_session_store.models import Event, EventType, Session, SessionStatus, to_micros
from agent_session_store.query import encode_cursor
from agent_session_store.redis import RedisSessionStore
from agent_session_store.redis.rows import blob
from agent_session_store.retention import RetentionPolicy

from .common import REDIS_URL, Row, best_of, check_max, check_ratio, median, percentile, rate

URL = REDIS_URL
T0 = datetime(2026, 1, 1, tzinfo=UTC)

# What a hand-written client needs for one gapless, idempotent, indexed, announced append.
_RAW_APPEND = """
local out = {}
for i = 1, #ARGV, 3 do
  local id, blob, typ = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('HSETNX', KEYS[1], id, 's') == 1 then
    local seq = redis.call('INCR', KEYS[2])
    redis.call('HSET', KEYS[3], seq, blob)
    redis.call('HSET', KEYS[4], id, seq)
    redis.call('ZADD', KEYS[5], 0, 't' .. typ .. '\\0' .. string.format('%012d', seq))
    out[#out + 1] = seq
  end
end
redis.call('PUBLISH', KEYS[6], '1')
return out
"""


# The peer bench's raw redis-py peer (peerbench/peers.py, RawRedis): what issue 13's ratios are
# measured against. One script per call: id check, INCR, row, id, PUBLISH.
_PEER_APPEND = """
local out = {}
local pub = 0
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  local s = redis.call('HGET', KEYS[3], id)
  if s then
    out[#out + 1] = tonumber(s)
  else
    local n = redis.call('INCR', KEYS[1])
    redis.call('HSET', KEYS[2], n, ARGV[i + 1])
    redis.call('HSET', KEYS[3], id, n)
    out[#out + 1] = n
    pub = n
  end
end
if pub > 0 then redis.call('PUBLISH', ARGV[1], pub) end
return out
"""


def _event(sid: str, i: int) -> Event:
    return Event(type=EventType.MESSAGE_STREAMED, session_id=sid, data={"text": "hello", "i": i})


def _raw_args(events: list[Event]) -> list[Any]:
    args: list[Any] = []
    for e in events:
        blob = "\0".join(
            (
                e.id,
                e.session_id,
                e.type.value,
                str(e.timestamp.timestamp()),
                json.dumps(e.data, separators=(",", ":")),
                json.dumps(e.metadata, separators=(",", ":")),
            )
        )
        args += [e.id, blob, e.type.value]
    return args


def _raw_keys(prefix: str, sid: str) -> list[str]:
    t = f"{prefix}:raw:{{{sid}}}"
    return [f"{t}:eid", f"{t}:seq", f"{t}:ev", f"{t}:ids", f"{t}:x", f"{t}:n"]


async def _drop(client: Any, prefix: str) -> None:
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=5000)]
    for i in range(0, len(keys), 1000):
        await client.delete(*keys[i : i + 1000])


# ------------------------------------------------------------------ long-poll across processes


def _writer_process(url: str, sid: str, rounds: int, pipe: Connection, raw_channel: str) -> None:
    asyncio.run(_writer(url, sid, rounds, pipe, raw_channel))


async def _writer(url: str, sid: str, rounds: int, pipe: Connection, raw_channel: str) -> None:
    store = RedisSessionStore.from_url(url)
    async with store, redis.asyncio.Redis.from_url(URL) as raw:
        await store.get_latest_sequence(sid)
        await raw.ping()
        pipe.send("ready")
        while True:
            what = pipe.recv()
            if what == "stop":
                return
            t = time.perf_counter()
            if what == "ours":
                await store.append_event(_event(sid, 0))
            else:
                await raw.publish(raw_channel, "1")
            pipe.send((t, time.perf_counter()))


async def _wake_latency(
    prefix: str, rounds: int
) -> tuple[list[float], list[float], list[float], list[float]]:
    """Latency from the moment the writer's append returned (it is committed then: the writer's
    view, as in the core bench), and from the moment it was called; perf_counter is
    system-wide on Linux (CLOCK_MONOTONIC), so it compares across processes."""
    url = f"{URL}?prefix={prefix}"
    sid = "wake"
    raw_channel = f"{prefix}:raw:wake"
    ctx = mp.get_context("spawn")
    ours_end, theirs = ctx.Pipe()
    proc = ctx.Process(target=_writer_process, args=(url, sid, rounds, theirs, raw_channel))
    proc.start()
    ours: list[float] = []
    raws: list[float] = []
    ours_call: list[float] = []
    raws_call: list[float] = []
    loop = asyncio.get_running_loop()
    gc.collect()
    gc.disable()  # the same for both sides: a collection pause is not what is measured
    try:
        assert await loop.run_in_executor(None, ours_end.recv) == "ready"
        async with RedisSessionStore.from_url(url) as store:
            for i in range(rounds):
                reader = asyncio.create_task(store.get_events(sid, after=i, wait_timeout_ms=10_000))
                await asyncio.sleep(0.01)  # let the reader subscribe: we time a waiting reader
                ours_end.send("ours")
                got = await reader
                done = time.perf_counter()
                called, returned = await loop.run_in_executor(None, ours_end.recv)
                assert len(got) == 1
                ours.append((done - returned) * 1000)
                ours_call.append((done - called) * 1000)
        async with redis.asyncio.Redis.from_url(URL) as raw:
            pubsub = raw.pubsub()
            await pubsub.subscribe(raw_channel)
            await pubsub.get_message(timeout=1)  # the subscribe confirmation
            for _ in range(rounds):
                ours_end.send("raw")
                msg = None
                while msg is None:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=10)
                done = time.perf_counter()
                called, returned = await loop.run_in_executor(None, ours_end.recv)
                raws.append((done - returned) * 1000)
                raws_call.append((done - called) * 1000)
            await pubsub.aclose()
        ours_end.send("stop")
    finally:
        gc.enable()
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
    return ours, raws, ours_call, raws_call


# ------------------------------------------------------------------ contract v2 cases


async def _alternate(rounds: int, *works: Any) -> list[list[float]]:
    """Per-call times in ms of each work, run in turn, so load drifts hit them alike."""
    times: list[list[float]] = [[] for _ in works]
    for i in range(rounds):
        for j, work in enumerate(works):
            t = time.perf_counter()
            await work(i)
            times[j].append((time.perf_counter() - t) * 1000)
    return times


async def _v2_cases(store: RedisSessionStore, client: Any, size: int, rounds: int) -> list[Row]:
    """``order="desc", limit=1000`` in a ``size``-event session against plain redis-py
    fetching and decoding the same rows, and against ``asc``; a conditional append against
    a plain one."""
    sid = uuid.uuid4().hex
    for start in range(0, size, 1000):
        await store.append_events([_event(sid, i) for i in range(start, start + 1000)])
    k = store.keys.session(sid)

    async def desc(_: int) -> None:
        got = await store.get_events(sid, order="desc", limit=1000)
        assert len(got) == 1000 and got[0].sequence_number == size

    async def asc(_: int) -> None:
        assert len(await store.get_events(sid, limit=1000)) == 1000

    async def raw(_: int) -> None:
        latest = int(await client.get(k[0]))
        blobs = await client.hmget(k[1], list(range(latest, latest - 1000, -1)))
        decoded = []
        for b in blobs:
            f = b.split("\0")
            decoded.append((f[0], f[2], int(f[4]), json.loads(f[8]), json.loads(f[9])))
        assert len(decoded) == 1000

    t_desc, t_asc, t_raw = await _alternate(max(20, rounds // 5), desc, asc, raw)
    out = [
        Row(
            "redis",
            f"get_events(desc, limit=1000) in {size:,} vs raw fetch+decode (median)",
            median(t_desc),
            "ms",
            median(t_raw),
            higher_is_better=False,
            bar=">= 0.5 x raw",
            passed=median(t_raw) / median(t_desc) >= 0.5,
        ),
        Row(
            "redis",
            f"get_events(desc, limit=1000) in {size:,} vs asc (median)",
            median(t_desc),
            "ms",
            median(t_asc),
            higher_is_better=False,
            bar="desc <= 1.5 x asc",
            passed=median(t_desc) <= 1.5 * median(t_asc),
        ),
    ]

    cond_sid, plain_sid = uuid.uuid4().hex, uuid.uuid4().hex

    async def conditional(i: int) -> None:
        await store.append_event(_event(cond_sid, i), expected_sequence=i)

    async def plain(i: int) -> None:
        await store.append_event(_event(plain_sid, i))

    n = 5 * rounds
    t_cond, t_plain = await _alternate(n, conditional, plain)
    out.append(
        Row(
            "redis",
            "conditional append vs plain append (median)",
            median(t_cond),
            "ms",
            median(t_plain),
            higher_is_better=False,
            bar="<= 1.1 x plain",
            passed=median(t_cond) <= 1.1 * median(t_plain),
            extra={"p90": percentile(t_cond, 90), "plain_p90": percentile(t_plain, 90)},
        )
    )
    return out


# ------------------------------------------------------------------ the peer bench's shapes


def _peer_payload(i: int) -> dict[str, Any]:
    """~286 bytes, as the peer bench's ``payload()``."""
    return {"role": "assistant", "content": f"{i:08d}" + "x" * 242}


async def _peer_cases(store: RedisSessionStore, client: Any, prefix: str, size: int) -> list[Row]:
    """Issue 13's three ratios, each call of ours alternating with the peer bench's raw
    redis-py peer doing the same (``_PEER_APPEND``): one append, a batch of 100, and the
    latest 1,000 of a ``size``-event session (ours: ``get_events(after=latest - 1000)``,
    raw: ``HMGET`` of those numbers and ``json.loads`` per row). Medians of per-call times."""
    script = client.register_script(_PEER_APPEND)
    sid = uuid.uuid4().hex
    t = f"{prefix}:peer:{sid}"
    keys, channel = [f"{t}:seq", f"{t}:ev", f"{prefix}:peer:eid"], f"{t}:n"

    def row(i: int) -> tuple[str, dict[str, Any]]:
        return str(uuid.uuid4()), _peer_payload(i)

    def event(i: int) -> Event:
        return Event(type=EventType.MESSAGE_RECEIVED, session_id=sid, data=_peer_payload(i))

    async def raw_append(rows: list[tuple[str, dict[str, Any]]]) -> None:
        """As the peer's ``_append``: the row's JSON is built in the timed call."""
        args = [channel]
        for eid, data in rows:
            args.append(eid)
            args.append(json.dumps({"id": eid, "type": "message", "ts": time.time(), "data": data}))
        await script(keys=keys, args=args)

    async def timed(n: int, ours: Any, raw: Any) -> tuple[list[float], list[float]]:
        """Per-call µs; the arguments are built before the clock starts, as the peer bench."""
        t_ours: list[float] = []
        t_raw: list[float] = []
        for i in range(n):
            a, b = ours[1](i), raw[1](i)
            start = time.perf_counter()
            await ours[0](a)
            t_ours.append((time.perf_counter() - start) * 1e6)
            start = time.perf_counter()
            await raw[0](b)
            t_raw.append((time.perf_counter() - start) * 1e6)
        return t_ours, t_raw

    out: list[Row] = []
    shapes: list[tuple[str, int, Any, Any, float]] = [
        (
            "peer shape: one append (append_event_with_sequence)",
            2000,
            (store.append_event_with_sequence, event),
            (lambda r: raw_append([r]), row),
            0.8,
        ),
        (
            "peer shape: append_events batch of 100",
            100,
            (store.append_events, lambda i: [event(i) for _ in range(100)]),
            (raw_append, lambda i: [row(i) for _ in range(100)]),
            0.7,
        ),
    ]
    for label, n, ours, raw, bar in shapes:
        await timed(max(2, n // 10), ours, raw)  # warm-up
        gc.collect()
        t_ours, t_raw = await timed(n, ours, raw)
        out.append(
            check_ratio(
                Row(
                    "redis",
                    f"{label} vs the peer's raw script (median)",
                    median(t_ours),
                    "us",
                    median(t_raw),
                    higher_is_better=False,
                ),
                bar,
            )
        )
    have = await store.get_latest_sequence(sid)
    for start in range(have, size, 1000):
        n = min(1000, size - start)
        await store.append_events([event(i) for i in range(n)])
    while int(await client.get(keys[0]) or 0) < size:
        await raw_append([row(i) for i in range(1000)])
    latest, raw_latest = await store.get_latest_sequence(sid), int(await client.get(keys[0]))

    async def ours_read(_: int) -> None:
        assert len(await store.get_events(sid, after=latest - 1000, limit=1000)) == 1000

    async def raw_read(_: int) -> None:
        docs = await client.hmget(keys[1], list(range(raw_latest - 999, raw_latest + 1)))
        assert len([json.loads(d) for d in docs]) == 1000

    gc.collect()
    t_ours, t_raw = await timed(40, (ours_read, int), (raw_read, int))
    out.append(
        check_ratio(
            Row(
                "redis",
                f"peer shape: latest 1,000 of {size:,} vs HMGET + json.loads (median)",
                median(t_ours) / 1000,
                "ms",
                median(t_raw) / 1000,
                higher_is_better=False,
            ),
            round(1 / 1.3, 3),
        )
    )
    out[-1].bar = "ours <= 1.3 x raw's time"
    return out


# ------------------------------------------------------------------ the cases


async def _save_many(store: RedisSessionStore, sessions: list[Session]) -> None:
    for start in range(0, len(sessions), 1000):
        await asyncio.gather(*(store.save_session(s) for s in sessions[start : start + 1000]))


# Memory per event: what each key type of the layout costs (issue 13: <= 2x the encoded row).
MEMORY_BAR = 2.0


def _memory_event(sid: str, i: int) -> Event:
    """A ~300-byte payload, the type alternating between two values, a run per 100 events."""
    kind = EventType.MESSAGE_STREAMED if i % 2 else EventType.TOOL_CALL_STARTED
    return Event(
        type=kind, session_id=sid, run_id=f"run-{i // 100:06d}", data={"text": "x" * 280, "i": i}
    )


def _key_kind(prefix: str, key: str, sid_tag: str) -> str:
    """A key's name without its prefix and session tag: ``ev``, ``x``, ``{%g}:eid`` ..."""
    rest = key[len(prefix) + 1 :]
    return rest[len(sid_tag) + 1 :] if rest.startswith(sid_tag + ":") else rest


async def _memory_case(n: int) -> list[Row]:
    """``n`` events of one session under a fresh prefix; ``MEMORY USAGE`` (exact: SAMPLES 0)
    of every key the prefix holds, per event and per key type, against the encoded row
    (``rows.blob``). The prefix is fresh, so its global keys (``{%g}:eid``) hold only these
    events. ``used_memory``'s growth is reported too, but other clients of a shared server move
    it: the bar is on the keys' own usage."""
    prefix = f"bench_{uuid.uuid4().hex[:8]}"
    rows: list[Row] = []
    client: Any = redis.asyncio.Redis.from_url(URL, decode_responses=True)
    store = RedisSessionStore.from_url(f"{URL}?prefix={prefix}")
    sid = uuid.uuid4().hex
    try:
        async with store:
            await store.get_latest_sequence(sid)
            before = int((await client.info("memory"))["used_memory"])
            row_bytes = 0
            for start in range(0, n, 1000):
                batch = [_memory_event(sid, i) for i in range(start, min(n, start + 1000))]
                row_bytes += sum(len(blob(encode_event(e)).encode()) for e in batch)
                await store.append_events(batch)
            grown = int((await client.info("memory"))["used_memory"]) - before
            row = row_bytes / n
            tag = store.keys.tag(sid)[len(prefix) + 1 :]
            per_kind: dict[str, tuple[str, int]] = {}
            async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
                used = int(await client.memory_usage(key, samples=0) or 0)
                encoding = str(await client.object("encoding", key))
                per_kind[_key_kind(prefix, key, tag)] = (encoding, used)
            total = sum(used for _, used in per_kind.values())
            label = f"server memory per event, {n:,} events of {row:.0f} B rows"
            rows.append(
                check_max(
                    Row(
                        "redis",
                        f"{label}: MEMORY USAGE of the keys",
                        total / n,
                        "B/event",
                        extra={"row_bytes": row, "x_row": total / n / row},
                    ),
                    MEMORY_BAR * row,
                    f"<= {MEMORY_BAR} x row ({MEMORY_BAR * row:.0f} B)",
                )
            )
            rows.append(
                Row(
                    "redis",
                    f"{label}: used_memory growth (shared server: noisy)",
                    grown / n,
                    "B/event",
                    extra={"row_bytes": row, "x_row": grown / n / row},
                )
            )
            for kind, (encoding, used) in sorted(per_kind.items(), key=lambda kv: -kv[1][1]):
                rows.append(Row("redis", f"  memory of `{kind}` ({encoding})", used / n, "B/event"))
    finally:
        await _drop(client, prefix)
        await client.aclose()
    return rows


async def _query_cases(n: int) -> list[Row]:
    """Issue 9 on Redis: search_sessions page 1 vs page 1,000 (limit 50) and run_maintenance
    over ``n`` sessions of which 10 % expire. Redis scans (contract 7.8): no bar, figures."""
    prefix = f"bench_{uuid.uuid4().hex[:8]}"
    rows: list[Row] = []
    client: Any = redis.asyncio.Redis.from_url(URL, decode_responses=True)
    store = RedisSessionStore.from_url(f"{URL}?prefix={prefix}")
    now = T0 + timedelta(days=400)
    try:
        async with store:
            made = [
                Session(
                    id=f"s{i:07d}",
                    agent_id=f"agent{i % 10}",
                    status=SessionStatus.COMPLETED if i % 10 == 0 else SessionStatus.ACTIVE,
                    created_at=T0 + timedelta(seconds=i),
                    # every tenth session idle for 100 days: it expires
                    updated_at=T0 + timedelta(days=300 if i % 10 == 0 else 399, seconds=i),
                )
                for i in range(n)
            ]
            await _save_many(store, made)
            cases: list[tuple[str, dict[str, Any], Any]] = [
                ("default", {}, lambda s: True),
                ("agent_id", {"agent_id": "agent3"}, lambda s: s.agent_id == "agent3"),
                ("status", {"status": "active"}, lambda s: s.status == SessionStatus.ACTIVE),
            ]
            for label, kwargs, keep in cases:
                # page 1,000's cursor: the position after item 49,950 in the default order
                ordered = sorted(
                    (s for s in made if keep(s)),
                    key=lambda s: (to_micros(s.updated_at), s.id),
                    reverse=True,
                )
                deep = ordered[min(len(ordered), 999 * 50) - 1]
                cursor = encode_cursor(
                    "search_sessions", "updated_at_desc", (to_micros(deep.updated_at), deep.id)
                )
                timings: dict[str, float] = {}
                for name, at in (("1", None), ("1,000", cursor)):
                    t = time.perf_counter()
                    await store.search_sessions(limit=50, cursor=at, **kwargs)
                    timings[name] = (time.perf_counter() - t) * 1000
                    rows.append(
                        Row(
                            "redis",
                            f"search_sessions page {name} (limit 50) among {n:,} ({label})",
                            timings[name],
                            "ms",
                            higher_is_better=False,
                        )
                    )
            policy = RetentionPolicy(max_completed_session_age_days=30, hard_delete_after_days=1)
            t = time.perf_counter()
            report = await store.run_maintenance(policy, now=now)
            took = time.perf_counter() - t
            assert report.sessions_soft_deleted == n // 10, report
            assert report.sessions_hard_deleted == 0, report  # deleted just now: not yet due
            t = time.perf_counter()
            later = await store.run_maintenance(policy, now=now + timedelta(days=2))
            took_hard = time.perf_counter() - t
            assert (later.sessions_soft_deleted, later.sessions_hard_deleted) == (0, n // 10)
            rows.append(
                Row(
                    "redis",
                    f"run_maintenance soft delete over {n:,} sessions (10 % expire)",
                    took * 1000,
                    "ms",
                    higher_is_better=False,
                )
            )
            rows.append(
                Row(
                    "redis",
                    f"run_maintenance hard-deleting those {n // 10:,} (later)",
                    took_hard * 1000,
                    "ms",
                    higher_is_better=False,
                )
            )
    finally:
        await _drop(client, prefix)
        await client.aclose()
    return rows


async def run(quick: bool) -> list[Row]:
    prefix = f"bench_{uuid.uuid4().hex[:8]}"
    n_seq = 500 if quick else 5000
    batch = 1000
    n_batches = 5 if quick else 20
    n_sessions = 10_000 if quick else 100_000
    rounds = 50 if quick else 300
    rows: list[Row] = []
    client: Any = redis.asyncio.Redis.from_url(URL, decode_responses=True)
    raw_append = client.register_script(_RAW_APPEND)
    store = RedisSessionStore.from_url(f"{URL}?prefix={prefix}")
    try:
        async with store:
            # sequential appends, one round trip each
            async def ours_seq() -> None:
                sid = uuid.uuid4().hex
                for i in range(n_seq):
                    await store.append_event_with_sequence(_event(sid, i))

            async def raw_seq() -> None:
                sid = uuid.uuid4().hex
                keys = _raw_keys(prefix, sid)
                for i in range(n_seq):
                    await raw_append(keys=keys, args=_raw_args([_event(sid, i)]))

            t_ours = await best_of(3, ours_seq)
            t_raw = await best_of(3, raw_seq)
            rows.append(
                check_ratio(
                    Row(
                        "redis",
                        "sequential append",
                        rate(n_seq, t_ours),
                        "events/s",
                        rate(n_seq, t_raw),
                    ),
                    0.5,
                )
            )

            # batches of 1000
            async def ours_batch() -> None:
                sid = uuid.uuid4().hex
                for _ in range(n_batches):
                    await store.append_events([_event(sid, i) for i in range(batch)])

            async def raw_batch() -> None:
                sid = uuid.uuid4().hex
                keys = _raw_keys(prefix, sid)
                for _ in range(n_batches):
                    await raw_append(
                        keys=keys, args=_raw_args([_event(sid, i) for i in range(batch)])
                    )

            t_ours = await best_of(3, ours_batch)
            t_raw = await best_of(3, raw_batch)
            rows.append(
                check_ratio(
                    Row(
                        "redis",
                        f"append_events batch of {batch}",
                        rate(n_batches * batch, t_ours),
                        "events/s",
                        rate(n_batches * batch, t_raw),
                    ),
                    0.7,
                )
            )

            # get_events: a page of 100 out of a long log
            sid = uuid.uuid4().hex
            for _ in range(10):
                await store.append_events([_event(sid, i) for i in range(batch)])
            k = store.keys.session(sid)
            page_times: list[float] = []
            raw_times: list[float] = []
            for j in range(200):
                after = (j * 37) % 9800
                t = time.perf_counter()
                got = await store.get_events(sid, after=after, limit=100)
                page_times.append((time.perf_counter() - t) * 1000)
                assert len(got) == 100
                t = time.perf_counter()
                blobs = await client.hmget(k[1], list(range(after + 1, after + 101)))
                _ = [json.loads(b.split("\0")[8]) for b in blobs]
                raw_times.append((time.perf_counter() - t) * 1000)
            rows.append(
                Row(
                    "redis",
                    "get_events page of 100 in 10,000 (median)",
                    median(page_times),
                    "ms",
                    median(raw_times),
                    higher_is_better=False,
                )
            )

            rows += await _v2_cases(store, client, 10_000 if quick else 100_000, rounds)
            rows += await _peer_cases(store, client, prefix, 10_000 if quick else 100_000)

            # list_sessions among many sessions
            for start in range(0, n_sessions, 1000):
                await asyncio.gather(
                    *(
                        store.save_session(
                            Session(
                                id=f"s{i:07d}",
                                agent_id=f"agent{i % 10}",
                                status=SessionStatus.ACTIVE if i % 3 else SessionStatus.PENDING,
                                created_at=T0 + timedelta(seconds=i),
                            )
                        )
                        for i in range(start, min(start + 1000, n_sessions))
                    )
                )
            cases: list[tuple[str, dict[str, Any]]] = [
                ("list_sessions(limit=50)", {"limit": 50}),
                ("list_sessions(limit=50, offset=half)", {"limit": 50, "offset": n_sessions // 2}),
                (
                    "list_sessions(status, agent_id, limit=50)",
                    {"limit": 50, "status": "pending", "agent_id": "agent3"},
                ),
            ]
            for label, kwargs in cases:
                times: list[float] = []
                for _ in range(200):
                    t = time.perf_counter()
                    got_s = await store.list_sessions(**kwargs)
                    times.append((time.perf_counter() - t) * 1000)
                    assert len(got_s) == 50
                raw_l: list[float] = []
                off = int(kwargs.get("offset", 0))
                for _ in range(200):
                    t = time.perf_counter()
                    members = await client.zrange(store.keys.list_index[0], off, off + 49)
                    docs = await client.hmget(
                        store.keys.list_index[5], [m.rsplit("\0", 1)[1] for m in members]
                    )
                    _ = [json.loads(d) for d in docs]
                    raw_l.append((time.perf_counter() - t) * 1000)
                rows.append(
                    check_max(
                        Row(
                            "redis",
                            f"{label} among {n_sessions:,} (median)",
                            median(times),
                            "ms",
                            median(raw_l),
                            higher_is_better=False,
                            extra={"p99": percentile(times, 99), "raw_p99": percentile(raw_l, 99)},
                        ),
                        5.0,
                        "< 5 ms",
                    )
                )

        # long-poll wake-up across processes
        ours_lat, raw_lat, ours_call, raw_call = await _wake_latency(prefix, rounds)
        rows.append(
            check_max(
                Row(
                    "redis",
                    "long-poll wake latency across processes (p99)",
                    percentile(ours_lat, 99),
                    "ms",
                    percentile(raw_lat, 99),
                    higher_is_better=False,
                    extra={
                        "median": median(ours_lat),
                        "raw_median": median(raw_lat),
                        "from_call_p99": percentile(ours_call, 99),
                        "from_call_median": median(ours_call),
                        "raw_from_call_p99": percentile(raw_call, 99),
                    },
                ),
                5.0,
                "p99 <= 5 ms",
            )
        )
    finally:
        await _drop(client, prefix)
        await client.aclose()
    rows += await _memory_case(10_000 if quick else 100_000)
    rows += await _query_cases(10_000 if quick else 100_000)
    return rows
