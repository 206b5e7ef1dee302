"""Redis session store, single node or Redis Cluster (``redis://``, ``rediss://``,
``redis+cluster://``), on redis-py's asyncio client.

Layout (docs/redis.md has the full table). Every key of one session shares the hash tag
``{<escaped session id>}``, so one Lua script can change a whole session atomically, also in
a cluster. Sequence numbers are an INCR in that script, events a hash ``seq -> row``, the
run/type filters one lex-ordered sorted set, so reads cost what they return.

Three things are not per session: the event-id uniqueness rule (contract 3.8.4 spans
sessions), ``get_run`` by run id, and ``list_sessions``. On a single node they are ordinary
keys the same script also changes, so every write is one atomic step. In a cluster they live
in other slots: an append then first *claims* each event id with ``SET NX GET`` on a key of
its own slot (the claim holds the whole row, so whoever finds a claim can finish the write),
then stores the winning rows in one script per session. docs/redis.md says exactly which
guarantees that changes (only behaviour after a client dies mid-write).

Long-poll: the write script publishes on the session's channel (SPUBLISH, in the session's
slot, in a cluster); each store keeps one subscriber connection per server and confirms a
subscription before the base class queries, and wakes every reader after a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio
import redis.exceptions as rexc
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .base import EventQuery, SessionStoreBase
from .codec import EncodedEvent, decode_event, decode_run, decode_session
from .errors import (
    StorageConnectionFailedError,
    StorageError,
    StoreError,
    ValidationError,
    redact,
)
from .models import Event, Run, RunStatus, Session, SessionStatus, to_micros
from .urls import bool_option, number_options, query_options

__all__ = ["RedisSessionStore"]

log = logging.getLogger("agent_session_store.redis")

# ---------------------------------------------------------------- Lua

# Shared helpers. ``#!lua`` (no flags) makes Redis 7 refuse the script before it starts when
# the server is out of memory, instead of failing at the first write, half-way through.
_PRELUDE = r"""#!lua
local function fields(blob, n)
  local out, pos = {}, 1
  for i = 1, n do
    local z = string.find(blob, '\0', pos, true)
    if not z then out[i] = string.sub(blob, pos); return out end
    out[i] = string.sub(blob, pos, z - 1)
    pos = z + 1
  end
  return out
end
local function pad(n) return string.format('%012d', n) end
local function fmt(n) return string.format('%.0f', n) end
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
-- ix: KEYS indexes of all, st, ag, sa (lex sorted sets), meta and docs (hashes).
-- Returns false when a newer version is already indexed (a late, stale update).
local function index_put(ix, sid, v, doc, members, keep_tombstone)
  local all, st, ag, sa = KEYS[ix[1]], KEYS[ix[2]], KEYS[ix[3]], KEYS[ix[4]]
  local meta, docs = KEYS[ix[5]], KEYS[ix[6]]
  local old = redis.call('HGET', meta, sid)
  if old then
    old = cjson.decode(old)
    if tonumber(old[1]) >= v then return false end
    if old[2] then
      redis.call('ZREM', all, old[2]); redis.call('ZREM', st, old[3])
      redis.call('ZREM', ag, old[4]); redis.call('ZREM', sa, old[5])
    end
  end
  if doc then
    redis.call('ZADD', all, 0, members[1]); redis.call('ZADD', st, 0, members[2])
    redis.call('ZADD', ag, 0, members[3]); redis.call('ZADD', sa, 0, members[4])
    redis.call('HSET', meta, sid,
      cjson.encode({fmt(v), members[1], members[2], members[3], members[4]}))
    redis.call('HSET', docs, sid, doc)
  else
    if keep_tombstone then redis.call('HSET', meta, sid, cjson.encode({fmt(v)}))
    else redis.call('HDEL', meta, sid) end
    redis.call('HDEL', docs, sid)
  end
  return true
end
"""

# The one write script. ARGV[1] is a small JSON plan naming KEYS and ARGV positions; rows and
# documents travel as plain ARGV strings. Every check runs before the first write, so a
# refused call (BUSY, RETRY) has changed nothing and consumed no sequence number.
_WRITE = (
    _PRELUDE
    + r"""
local H = cjson.decode(ARGV[1])
local S, by_sid = {}, {}
for i, e in ipairs(H.S) do
  local k = e[2]
  local s = {sid = e[1], chan = e[3], seq = KEYS[k], ev = KEYS[k + 1], ids = KEYS[k + 2],
             x = KEYS[k + 3], s = KEYS[k + 4], runs = KEYS[k + 5], del = KEYS[k + 6]}
  if H.F then
    s.flag = redis.call('GET', s.del)
    if s.flag == 'busy' then return {'BUSY'} end
  end
  S[i] = s; by_sid[s.sid] = s
end
for _, x in ipairs(H.XH or {}) do
  if (redis.call('HGET', KEYS[x[1]], x[2]) or '') ~= x[3] then return {'RETRY'} end
end
local rows = H.E or {}
for _, r in ipairs(rows) do
  -- cluster: a row found in someone else's claim may not be stored again in a session that a
  -- delete has just emptied (the delete removed its claim); the caller claims afresh.
  if r[3] == 0 and S[r[1]].flag == 'done' then
    local id = fields(ARGV[r[2]], 1)[1]
    if redis.call('HEXISTS', S[r[1]].ids, id) == 0 then return {'RETRY'} end
  end
end
-- writes are gathered and sent in a few wide commands at the end (ids in one call are unique)
local out, claimed = {}, {}
for _, r in ipairs(rows) do
  local blob = ARGV[r[2]]
  local f = fields(blob, 4)
  local id, s, seq, stored = f[1], S[r[1]], nil, ''
  if H.C then
    -- single node: the global id index is in this same atomic step
    local owner = redis.call('HGET', KEYS[H.C], id)
    if owner then
      s = by_sid[owner]
      if s == nil then seq = 0; stored = owner end
    else
      claimed[#claimed + 1] = id
      claimed[#claimed + 1] = f[2]
    end
  end
  if seq == nil then
    local have = redis.call('HGET', s.ids, id)
    if have then
      seq = tonumber(have); stored = redis.call('HGET', s.ev, have)
    elseif s.sid ~= f[2] then
      seq = 0; stored = s.sid
    else
      if not s.last then
        s.last = tonumber(redis.call('GET', s.seq) or '0')
        s.evb, s.idb, s.xb = {}, {}, {}
      end
      seq = s.last + 1
      s.last = seq
      local p = pad(seq)
      local evb, idb, xb = s.evb, s.idb, s.xb
      evb[#evb + 1] = seq; evb[#evb + 1] = blob
      idb[#idb + 1] = id; idb[#idb + 1] = seq
      xb[#xb + 1] = 0; xb[#xb + 1] = 't' .. f[3] .. '\0' .. p
      if f[4] ~= '' then
        xb[#xb + 1] = 0; xb[#xb + 1] = 'r' .. string.sub(f[4], 2) .. '\0' .. p
      end
      s.new = true
    end
  end
  out[#out + 1] = seq
  out[#out + 1] = stored
end
local function wide(cmd, key, buf)
  for i = 1, #buf, 4000 do
    redis.call(cmd, key, unpack(buf, i, math.min(i + 3999, #buf)))
  end
end
if #claimed > 0 then wide('HSET', KEYS[H.C], claimed) end
for _, s in ipairs(S) do
  if s.new then
    redis.call('SET', s.seq, s.last)
    wide('HSET', s.ev, s.evb)
    wide('HSET', s.ids, s.idb)
    wide('ZADD', s.x, s.xb)
  end
end
local v = ''
if H.ss then
  local s, doc = S[H.ss[1]], ARGV[H.ss[2]]
  local nv = math.max(tonumber(redis.call('HGET', s.s, 'v') or '0') + 1, now_us())
  redis.call('HSET', s.s, 'doc', doc, 'v', fmt(nv))
  v = fmt(nv)
  if H.ix then
    index_put(H.ix, s.sid, nv, doc,
      {ARGV[H.ss[3]], ARGV[H.ss[3] + 1], ARGV[H.ss[3] + 2], ARGV[H.ss[3] + 3]}, false)
  end
end
for _, r in ipairs(H.rr or {}) do redis.call('HSET', S[r[1]].runs, r[2], ARGV[r[3]]) end
for _, r in ipairs(H.rd or {}) do redis.call('HDEL', S[r[1]].runs, r[2]) end
for _, p in ipairs(H.HP or {}) do redis.call('HSET', KEYS[p[1]], p[2], p[3]) end
if H.pub > 0 then
  local cmd = H.pub == 2 and 'SPUBLISH' or 'PUBLISH'
  for _, s in ipairs(S) do
    if s.new then redis.call(cmd, s.chan, '1') end
  end
end
return {'OK', out, v}
"""
)

# get_events: KEYS seq, ev, x; ARGV after, before (-1: none), limit (-1), run, type, since.
# Candidates come from the sequence range or from the run/type index, never from a scan of
# the session; only ``since`` (not indexed) is checked row by row.
_READ = (
    _PRELUDE
    + r"""
local after, before, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local run, typ, since = ARGV[4], ARGV[5], ARGV[6]
local latest = tonumber(redis.call('GET', KEYS[1]) or '0')
local lo, hi = after + 1, latest
if before >= 0 and before - 1 < hi then hi = before - 1 end
local out = {}
if hi < lo then return out end
local sincen = since ~= '' and tonumber(since) or nil
local function take(seq)
  local blob = redis.call('HGET', KEYS[2], seq)
  if not blob then return false end
  if sincen and tonumber(fields(blob, 5)[5]) < sincen then return false end
  out[#out + 1] = seq
  out[#out + 1] = blob
  return limit >= 0 and #out >= 2 * limit
end
if run ~= '' or typ ~= '' then
  local prefix = run ~= '' and ('r' .. run .. '\0') or ('t' .. typ .. '\0')
  local both = run ~= '' and typ ~= ''
  local lower, upper = '[' .. prefix .. pad(lo), '[' .. prefix .. pad(hi)
  local chunk = 256
  if limit >= 0 and not both and not sincen then chunk = limit end
  while true do
    local page = redis.call('ZRANGEBYLEX', KEYS[3], lower, upper, 'LIMIT', 0, chunk)
    for _, m in ipairs(page) do
      local seq = tonumber(string.sub(m, #prefix + 1))
      if not both or redis.call('ZSCORE', KEYS[3], 't' .. typ .. '\0' .. pad(seq)) then
        if take(seq) then return out end
      end
    end
    if #page < chunk then return out end
    lower = '(' .. page[#page]
  end
end
for seq = lo, hi do
  if take(seq) then return out end
end
return out
"""
)

# list_sessions: KEYS one index; ARGV lex range start prefix ('' = all), offset, limit (-1).
# Ranks come from ZLEXCOUNT (O(log n)), so skipped sessions cost nothing.
_LIST = r"""#!lua
local key, prefix, offset, limit = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local first, stop = 0, redis.call('ZCARD', key)
if prefix ~= '' then
  first = redis.call('ZLEXCOUNT', key, '-', '(' .. prefix)
  stop = first + redis.call('ZLEXCOUNT', key, '[' .. prefix, '(' .. prefix .. '\255')
end
local a = first + offset
local b = stop - 1
if limit >= 0 and a + limit - 1 < b then b = a + limit - 1 end
if b < a then return {} end
local members = redis.call('ZRANGE', key, a, b)
if #members == 0 then return {} end
local ids = {}
for i, m in ipairs(members) do
  local z = 0
  while true do
    local n = string.find(m, '\0', z + 1, true)
    if not n then break end
    z = n
  end
  ids[i] = string.sub(m, z + 1)
end
return redis.call('HMGET', KEYS[2], unpack(ids))
"""

# Single-node delete, one atomic step: KEYS 7 session keys, id index, run index, 6 index keys.
_DELETE = (
    _PRELUDE
    + r"""
local sid = ARGV[1]
for _, id in ipairs(redis.call('HKEYS', KEYS[3])) do
  if redis.call('HGET', KEYS[8], id) == sid then redis.call('HDEL', KEYS[8], id) end
end
for _, run in ipairs(redis.call('HKEYS', KEYS[6])) do
  if redis.call('HGET', KEYS[9], run) == sid then redis.call('HDEL', KEYS[9], run) end
end
index_put({10, 11, 12, 13, 14, 15}, sid, math.huge, nil, nil, false)
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
return 'OK'
"""
)

# Cluster delete, step 1 (session slot): fence the session, report what to clean elsewhere.
_DELETE_BEGIN = (
    _PRELUDE
    + r"""
if redis.call('GET', KEYS[7]) == 'busy' then return {'BUSY'} end
redis.call('SET', KEYS[7], 'busy', 'PX', ARGV[1])
local v = math.max(tonumber(redis.call('HGET', KEYS[5], 'v') or '0') + 1, now_us())
return {'OK', redis.call('HKEYS', KEYS[3]), redis.call('HKEYS', KEYS[6]), fmt(v)}
"""
)

# Cluster delete, step 3 (session slot): drop the data, leave a short-lived 'done' marker.
_DELETE_END = r"""#!lua
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
redis.call('SET', KEYS[7], 'done', 'PX', ARGV[1])
return 'OK'
"""

# Cluster: the list_sessions index step (index slot). ARGV sid, version, doc ('' = delete),
# four members.
_INDEX = (
    _PRELUDE
    + r"""
local doc = ARGV[3] ~= '' and ARGV[3] or nil
local members = doc and {ARGV[4], ARGV[5], ARGV[6], ARGV[7]} or nil
return index_put({1, 2, 3, 4, 5, 6}, ARGV[1], tonumber(ARGV[2]), doc, members, true) and 1 or 0
"""
)

# Cluster: remove a pointer only while it still names this session.
_CAD = r"""#!lua
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_R = TypeVar("_R")
_NS = "\0"
_CREATED_OFFSET = 10**18  # makes created_at µs non-negative and fixed-width (20 digits)
_BUSY_TTL_MS = 30_000
_DONE_TTL_MS = 10_000
_MAX_TRIES = 600


def _esc(text: str) -> str:
    """Hash-tag-safe form of an id: injective, and never contains a brace."""
    return text.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def _opt(value: str | None) -> str:
    return "" if value is None else "=" + value


def _unopt(value: str) -> str | None:
    return None if value == "" else value[1:]


def _blob(row: EncodedEvent) -> str:
    """An event row as one NUL-separated string: no stored text can contain a NUL."""
    return _NS.join(
        (
            row.id,
            row.session_id,
            row.type,
            _opt(row.run_id),
            str(row.timestamp_us),
            str(row.schema_version),
            _opt(row.provider),
            _opt(row.correlation_id),
            row.data,
            row.metadata,
        )
    )


def _unblob(blob: str, seq: int) -> Event:
    p = blob.split(_NS, 9)
    return decode_event(
        (
            p[0],
            p[1],
            p[2],
            _unopt(p[3]),
            int(p[4]),
            p[8],
            p[9],
            int(p[5]),
            _unopt(p[6]),
            _unopt(p[7]),
        ),
        seq,
    )


def _blob_session(blob: str) -> str:
    start = blob.index(_NS) + 1
    return blob[start : blob.index(_NS, start)]


def _members(session: Session) -> list[str]:
    """The four list_sessions index members: lex order is (created_at, id) in each filter."""
    tail = f"{to_micros(session.created_at) + _CREATED_OFFSET:020d}{_NS}{session.id}"
    status = session.status.value
    return [
        tail,
        f"{status}{_NS}{tail}",
        f"{session.agent_id}{_NS}{tail}",
        f"{status}{_NS}{session.agent_id}{_NS}{tail}",
    ]


async def _bounded(calls: list[Coroutine[Any, Any, _R]], limit: int) -> list[_R]:
    """Like gather, with at most ``limit`` running: a batch may name many sessions."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Coroutine[Any, Any, _R]) -> _R:
        async with gate:
            return await call

    return await asyncio.gather(*(one(c) for c in calls))


_P = ParamSpec("_P")
_T = TypeVar("_T")


def _gated(
    fn: Callable[Concatenate[RedisSessionStore, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[RedisSessionStore, _P], Coroutine[Any, Any, _T]]:
    """Bound the operations in flight: redis-py refuses, rather than queues, past its pool."""

    async def gated(self: RedisSessionStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        async with self._gate:
            return await fn(self, *args, **kwargs)

    return gated


class _Subscriber:
    """One connection holding this store's subscriptions on one server.

    A subscription counts only once the server confirmed it, because the base class queries
    right after ``_watch_start`` returns. When the connection breaks, every reader is woken
    (to re-query, or to see the error), and again once every channel is confirmed anew.
    """

    def __init__(self, store: RedisSessionStore, make: Any, sharded: bool, timeout: float):
        self._store = store
        self._make = make
        self._sub = "SSUBSCRIBE" if sharded else "SUBSCRIBE"
        self._unsub = "SUNSUBSCRIBE" if sharded else "UNSUBSCRIBE"
        self._timeout = timeout
        self._conn: Connection | None = None
        self._channels: set[str] = set()
        self._pending: dict[str, list[asyncio.Future[None]]] = {}
        self._resync: set[str] = set()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def _connect(self) -> Connection:
        """Connect and re-subscribe what is wanted; call with the lock held."""
        conn: Connection = self._make()
        await conn.connect()  # type: ignore[no-untyped-call]
        if self._channels:
            self._resync = set(self._channels)
            await conn.send_command(self._sub, *self._channels)
        self._conn = conn
        return conn

    async def subscribe(self, channel: str) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        async with self._lock:
            conn = self._conn
            if conn is None:
                conn = await self._connect()
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._run())
            self._channels.add(channel)
            self._pending.setdefault(channel, []).append(fut)
            try:
                await conn.send_command(self._sub, channel)
            except BaseException:
                self._drop(channel, fut)
                raise
        try:
            async with asyncio.timeout(self._timeout):
                await fut
        except BaseException:
            self._drop(channel, fut)
            raise

    def _drop(self, channel: str, fut: asyncio.Future[None]) -> None:
        waiting = self._pending.get(channel)
        if waiting and fut in waiting:
            waiting.remove(fut)
        self._channels.discard(channel)
        if not fut.done():
            fut.cancel()

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        conn = self._conn
        if conn is not None:
            # a failure here means a broken connection, which the reader task recovers from
            with contextlib.suppress(Exception):
                await conn.send_command(self._unsub, channel)

    async def _run(self) -> None:
        delay = 0.02
        while not self._closed:
            conn = self._conn
            if conn is None:
                if not self._channels:
                    return  # idle: the next subscribe connects again
                try:
                    async with self._lock:
                        conn = self._conn or await self._connect()
                    delay = 0.02
                except Exception:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.5)
                    continue
            try:
                while True:
                    msg = await conn.read_response(push_request=True)
                    self._dispatch(msg)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closed:
                    return
                if self._conn is conn:
                    self._conn = None
                for waiting in self._pending.values():
                    for fut in waiting:
                        if not fut.done():
                            fut.set_exception(exc)
                self._pending.clear()
                with contextlib.suppress(Exception):
                    await conn.disconnect()
                self._store._waiters.notify_all()

    def _dispatch(self, msg: Any) -> None:
        if not isinstance(msg, list) or len(msg) < 2:
            return
        kind = msg[0]
        channel = msg[1]
        if kind in ("message", "smessage"):
            sid = self._store._channel_sessions.get(channel)
            if sid is not None:
                self._store._notify((sid,))
        elif kind in ("subscribe", "ssubscribe"):
            waiting = self._pending.get(channel)
            if waiting:
                fut = waiting.pop(0)
                if not fut.done():
                    fut.set_result(None)
            if channel in self._resync:
                self._resync.discard(channel)
                if not self._resync:
                    self._store._waiters.notify_all()
        elif kind == "sunsubscribe" and channel in self._channels:
            # not asked for: the server gave the channel's slot to another master
            self._channels.discard(channel)
            self._store._follow_moved_channel(channel)

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._conn is not None:
            await self._conn.disconnect()
            self._conn = None


class RedisSessionStore(SessionStoreBase):
    """Sessions, runs and event logs in Redis; see the module docstring and docs/redis.md."""

    backend_name = "redis"

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "ass",
        cluster: bool = False,
        socket_timeout: float = 5.0,
        connect_timeout: float = 2.0,
        max_connections: int = 64,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if type(max_connections) is not int or max_connections < 1:
            raise ValidationError("max_connections must be a positive int")
        if type(prefix) is not str or not prefix or "{" in prefix or "}" in prefix:
            raise ValidationError(
                f"redis prefix must be a non-empty str without braces, got {prefix!r}"
            )
        for name, value in (
            ("socket_timeout", socket_timeout),
            ("connect_timeout", connect_timeout),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValidationError(f"{name} must be a positive number of seconds")
        self._url = url
        self.prefix = prefix
        self.cluster = cluster
        self._socket_timeout = float(socket_timeout)
        self._connect_timeout = float(connect_timeout)
        self.max_connections = max_connections
        self._gate = asyncio.Semaphore(max_connections)
        self._r: Any = None
        self._subs: dict[str, _Subscriber] = {}
        self._channel_sessions: dict[str, str] = {}
        self._scripts: dict[str, Any] = {}
        self._background: set[asyncio.Task[None]] = set()
        p = prefix
        self._ix = [f"{p}:{{%i}}:{n}" for n in ("all", "st", "ag", "sa", "meta", "docs")]
        self._eidx = f"{p}:{{%g}}:eid"
        self._ridx = f"{p}:{{%g}}:rid"

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisSessionStore:
        """``redis[s]://[user:pass@]host:port/db?prefix=..&socket_timeout=..&connect_timeout=..``;
        ``redis+cluster://host:port`` (or ``?cluster=true``) for Redis Cluster."""
        opts = query_options(url)
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        cluster = bool_option(opts, "cluster", scheme == "redis+cluster")
        if "prefix" in opts:
            options.setdefault("prefix", opts.pop("prefix"))
        number_options(
            opts,
            options,
            {
                "socket_timeout": float,
                "connect_timeout": float,
                "max_connections": int,
                "max_event_bytes": int,
            },
        )
        opts.pop("auto_migrate", None)  # nothing to migrate; accepted so URLs stay portable
        if opts:
            raise ValidationError(f"unknown redis:// option(s): {', '.join(sorted(opts))}")
        base = urlunsplit(
            ("redis" if scheme == "redis+cluster" else scheme, parts.netloc, parts.path, "", "")
        )
        return cls(base, cluster=cluster, **options)

    def __repr__(self) -> str:
        kind = "cluster" if self.cluster else "single node"
        return f"RedisSessionStore({redact(self._url)!r}, prefix={self.prefix!r}, {kind})"

    # ------------------------------------------------------------ plumbing

    def _wrap(self, exc: BaseException, operation: str) -> StoreError:
        text = f"redis {operation} failed: {type(exc).__name__}: {exc}"
        if isinstance(
            exc,
            rexc.ConnectionError
            | rexc.TimeoutError
            | rexc.ClusterDownError
            | rexc.RedisClusterException
            | rexc.TryAgainError
            | OSError
            | TimeoutError,
        ):
            return StorageConnectionFailedError(text, details={"operation": operation})
        return StorageError(text, details={"operation": operation})

    async def _open(self) -> None:
        common: dict[str, Any] = {
            "decode_responses": True,
            "socket_timeout": self._socket_timeout,
            "socket_connect_timeout": self._connect_timeout,
            "retry": Retry(NoBackoff(), 1),
        }
        if self.cluster:
            # the gate bounds operations; one operation may use a connection on every node
            self._r = RedisCluster.from_url(
                self._url, max_connections=4 * self.max_connections, **common
            )
        else:
            # the gate already bounds operations, each using one connection at a time
            pool = redis.asyncio.ConnectionPool.from_url(
                self._url, max_connections=2 * self.max_connections, **common
            )
            self._r = redis.asyncio.Redis(connection_pool=pool)
        try:
            await self._r.initialize() if self.cluster else await self._r.ping()
        except BaseException:
            await self._r.aclose()  # the next operation opens afresh
            raise
        for name, text in (
            ("write", _WRITE),
            ("read", _READ),
            ("list", _LIST),
            ("delete", _DELETE),
            ("delete_begin", _DELETE_BEGIN),
            ("delete_end", _DELETE_END),
            ("index", _INDEX),
            ("cad", _CAD),
        ):
            self._scripts[name] = self._r.register_script(text)

    async def _close(self) -> None:
        for task in list(self._background):
            task.cancel()
        subs = list(self._subs.values())
        self._subs.clear()
        for sub in subs:
            await sub.close()
        if self._r is not None:
            await self._r.aclose()

    async def _eval(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await self._scripts[name](keys=list(keys), args=list(args))

    def _tag(self, session_id: str) -> str:
        return f"{self.prefix}:{{{_esc(session_id)}}}"

    def _skeys(self, session_id: str) -> list[str]:
        """seq, ev, ids, x, s, runs, del: the order the Lua scripts expect."""
        t = self._tag(session_id)
        return [f"{t}:{n}" for n in ("seq", "ev", "ids", "x", "s", "runs", "del")]

    def _channel(self, session_id: str) -> str:
        return f"{self._tag(session_id)}:n"

    def _claim_key(self, event_id: str) -> str:
        return f"{self.prefix}:e:{{{_esc(event_id)}}}"

    def _run_key(self, run_id: str) -> str:
        return f"{self.prefix}:r:{{{_esc(run_id)}}}"

    async def _backoff(self, attempt: int, what: str) -> None:
        if attempt >= _MAX_TRIES:
            raise StorageError(f"redis {what}: the session stayed busy (a delete in progress)")
        await asyncio.sleep(min(0.001 * 2**attempt, 0.05))

    # ------------------------------------------------------------ the write step

    async def _write(
        self,
        rows: list[EncodedEvent],
        blobs: list[str],
        *,
        fresh: list[bool] | None = None,
        session: tuple[Session, str] | None = None,
        runs: Iterable[tuple[str, str, str]] = (),
        run_drops: Iterable[tuple[str, str]] = (),
        run_pointers: Iterable[tuple[str, str]] = (),
        expect: Iterable[tuple[str, str, str]] = (),
        extra_sessions: Iterable[str] = (),
    ) -> tuple[str, list[Any], str]:
        """One WRITE script call. ``rows`` name their target session (the row's own, or, in a
        cluster, the claim winner's); returns (status, [seq, stored, ...], session version)."""
        order: dict[str, int] = {}
        keys: list[str] = []
        sessions: list[list[Any]] = []

        def sess(sid: str) -> int:
            i = order.get(sid)
            if i is None:
                i = order[sid] = len(sessions) + 1
                sessions.append([sid, len(keys) + 1, self._channel(sid)])
                keys.extend(self._skeys(sid))
            return i

        argv: list[str] = []
        plan: dict[str, Any] = {"pub": 2 if self.cluster else 1}
        plan_rows = []
        for n, (row, blob) in enumerate(zip(rows, blobs)):
            argv.append(blob)
            plan_rows.append([sess(row.session_id), n + 2, 1 if fresh is None or fresh[n] else 0])
        for sid in extra_sessions:
            sess(sid)
        if plan_rows:
            plan["E"] = plan_rows
        if session is not None:
            s, doc = session
            argv.append(doc)
            doc_at = len(argv) + 1
            argv.extend(_members(s))
            plan["ss"] = [sess(s.id), doc_at, doc_at + 1]
        rr = []
        for sid, run_id, doc in runs:
            argv.append(doc)
            rr.append([sess(sid), run_id, len(argv) + 1])
        if rr:
            plan["rr"] = rr
        rd = [[sess(sid), run_id] for sid, run_id in run_drops]
        if rd:
            plan["rd"] = rd
        if self.cluster:
            plan["F"] = 1  # honour delete fences
        else:  # the global indexes join the same step, when this call needs them
            if plan_rows:
                keys.append(self._eidx)
                plan["C"] = len(keys)
            if session is not None:
                plan["ix"] = list(range(len(keys) + 1, len(keys) + 7))
                keys.extend(self._ix)
            pointers = list(run_pointers)
            expected = list(expect)
            if pointers or expected:
                keys.append(self._ridx)
                r = len(keys)
                plan["HP"] = [[r, run_id, sid] for run_id, sid in pointers]
                plan["XH"] = [[r, run_id, old] for _, run_id, old in expected]
        plan["S"] = sessions
        res = await self._eval("write", keys, [json.dumps(plan), *argv])
        return res[0], (res[1] if len(res) > 1 else []), (res[2] if len(res) > 2 else "")

    def _notify_rows(self, rows: list[EncodedEvent], results: list[Event]) -> None:
        if self._waiters:
            self._notify({e.session_id for e in results})

    async def _store_rows(
        self,
        rows: list[EncodedEvent],
        session: tuple[Session, str] | None = None,
        run: tuple[Run, str] | None = None,
    ) -> list[Event]:
        blobs = [_blob(r) for r in rows]
        if self.cluster:
            return await self._store_rows_cluster(rows, blobs, session, run)
        attempt = 0
        while True:
            runs: list[tuple[str, str, str]] = []
            drops: list[tuple[str, str]] = []
            pointers: list[tuple[str, str]] = []
            expect: list[tuple[str, str, str]] = []
            if run is not None:
                r, doc = run
                old = await self._r.hget(self._ridx, r.id) or ""
                runs.append((r.session_id, r.id, doc))
                pointers.append((r.id, r.session_id))
                expect.append(("", r.id, old))
                if old and old != r.session_id:
                    drops.append((old, r.id))
            status, out, _ = await self._write(
                rows,
                blobs,
                session=session,
                runs=runs,
                run_drops=drops,
                run_pointers=pointers,
                expect=expect,
            )
            if status != "OK":
                await self._backoff(attempt, "write")
                attempt += 1
                continue
            stored: list[Event] = []
            missing = False
            for i, row in enumerate(rows):
                seq, blob = int(out[2 * i]), out[2 * i + 1]
                if seq == 0:  # the id lives in a session not named in this call
                    found = await self._lookup(blob, row.id)
                    if found is None:
                        missing = True  # deleted meanwhile: the id is free again
                        break
                    stored.append(found)
                elif blob == "":
                    stored.append(decode_event(row, seq))
                else:
                    stored.append(_unblob(blob, seq))
            if missing:
                attempt += 1
                continue
            if stored:
                self._notify_rows(rows, stored)
            return stored

    async def _lookup(self, session_id: str, event_id: str) -> Event | None:
        k = self._skeys(session_id)
        seq = await self._r.hget(k[2], event_id)
        if seq is None:
            return None
        blob = await self._r.hget(k[1], seq)
        return None if blob is None else _unblob(blob, int(seq))

    async def _store_rows_cluster(
        self,
        rows: list[EncodedEvent],
        blobs: list[str],
        session: tuple[Session, str] | None,
        run: tuple[Run, str] | None,
    ) -> list[Event]:
        old_run_session = ""
        if run is not None:
            old_run_session = (
                await self._r.set(self._run_key(run[0].id), run[0].session_id, get=True) or ""
            )
        attempt = 0
        while True:
            # step 1: claim every id on its own slot; a claim holds the winning row
            winners: list[str] = list(blobs)
            fresh = [True] * len(rows)
            if rows:
                pipe = self._r.pipeline(transaction=False)
                for row, blob in zip(rows, blobs):
                    pipe.set(self._claim_key(row.id), blob, nx=True, get=True)
                for i, prior in enumerate(await pipe.execute()):
                    if prior is not None:
                        winners[i] = prior
                        fresh[i] = False
            # step 2: one atomic script per session (the flushed session's carries its records)
            groups: dict[str, list[int]] = {}
            for i, blob in enumerate(winners):
                groups.setdefault(_blob_session(blob), []).append(i)
            calls = []
            flush_sid = session[0].id if session is not None else None
            run_sid = run[0].session_id if run is not None else None
            extra = {s for s in (flush_sid, run_sid) if s is not None and s not in groups}
            for sid in [*groups, *sorted(extra)]:
                idx = groups.get(sid, [])
                group_rows = [
                    rows[i]._replace(session_id=sid) if not fresh[i] else rows[i] for i in idx
                ]
                calls.append(
                    self._write(
                        group_rows,
                        [winners[i] for i in idx],
                        fresh=[fresh[i] for i in idx],
                        session=session if sid == flush_sid else None,
                        runs=[(sid, run[0].id, run[1])]
                        if run is not None and sid == run_sid
                        else (),
                        extra_sessions=[sid],
                    )
                )
            results = await _bounded(calls, 4)
            if any(status != "OK" for status, _, _ in results):
                await self._backoff(attempt, "write")
                attempt += 1
                continue
            stored: list[Event | None] = [None] * len(rows)
            version = ""
            for sid, (_, out, v) in zip([*groups, *sorted(extra)], results):
                if sid == flush_sid:
                    version = v
                for n, i in enumerate(groups.get(sid, [])):
                    seq, blob = int(out[2 * n]), out[2 * n + 1]
                    if fresh[i] and blob == "":
                        stored[i] = decode_event(rows[i], seq)
                    else:
                        stored[i] = _unblob(blob or winners[i], seq)
            if session is not None:
                await self._index(session[0], session[1], version)
            if run is not None and old_run_session and old_run_session != run[0].session_id:
                await self._write([], [], run_drops=[(old_run_session, run[0].id)])
            events = [e for e in stored if e is not None]
            if events:
                self._notify_rows(rows, events)
            return events

    async def _index(self, session: Session | str, doc: str, version: str) -> None:
        if isinstance(session, Session):
            await self._eval("index", self._ix, [session.id, version, doc, *_members(session)])
        else:
            await self._eval("index", self._ix, [session, version, "", "", "", "", ""])

    # ------------------------------------------------------------ sessions

    @_gated
    async def _save_session(self, session: Session, doc: str) -> None:
        await self._store_rows([], session=(session, doc))

    @_gated
    async def _get_session(self, session_id: str) -> Session | None:
        doc = await self._r.hget(self._skeys(session_id)[4], "doc")
        return None if doc is None else decode_session(doc)

    @_gated
    async def _list_sessions(
        self,
        status: SessionStatus | None,
        agent_id: str | None,
        limit: int | None,
        offset: int,
    ) -> list[Session]:
        all_, st, ag, sa = self._ix[:4]
        if status is not None and agent_id is not None:
            key, prefix = sa, f"{status.value}{_NS}{agent_id}{_NS}"
        elif status is not None:
            key, prefix = st, f"{status.value}{_NS}"
        elif agent_id is not None:
            key, prefix = ag, f"{agent_id}{_NS}"
        else:
            key, prefix = all_, ""
        docs = await self._eval(
            "list", [key, self._ix[5]], [prefix, offset, -1 if limit is None else limit]
        )
        return [decode_session(d) for d in docs if d is not None]

    @_gated
    async def _delete_session(self, session_id: str) -> None:
        k = self._skeys(session_id)
        if not self.cluster:
            await self._eval("delete", [*k, self._eidx, self._ridx, *self._ix], [session_id])
            return
        attempt = 0
        while True:
            res = await self._eval("delete_begin", k, [_BUSY_TTL_MS])
            if res[0] == "OK":
                break
            await self._backoff(attempt, "delete_session")
            attempt += 1
        _, ids, runs, version = res
        if ids:
            pipe = self._r.pipeline(transaction=False)
            for event_id in ids:
                pipe.delete(self._claim_key(event_id))
            await pipe.execute()
        for run_id in runs:
            await self._eval("cad", [self._run_key(run_id)], [session_id])
        await self._index(session_id, "", version)
        await self._eval("delete_end", k, [_DONE_TTL_MS])

    # ------------------------------------------------------------ runs

    @_gated
    async def _save_run(self, run: Run, doc: str) -> None:
        await self._store_rows([], run=(run, doc))

    @_gated
    async def _get_run(self, run_id: str) -> Run | None:
        for _ in range(3):  # a run that moves between sessions is briefly in neither
            if self.cluster:
                sid = await self._r.get(self._run_key(run_id))
            else:
                sid = await self._r.hget(self._ridx, run_id)
            if sid is None:
                return None
            doc = await self._r.hget(self._skeys(sid)[5], run_id)
            if doc is not None:
                return decode_run(doc)
        return None

    async def _runs(self, session_id: str) -> list[Run]:
        docs = await self._r.hvals(self._skeys(session_id)[5])
        runs = [decode_run(d) for d in docs]
        runs.sort(key=lambda r: (r.started_at, r.id))
        return runs

    @_gated
    async def _list_runs(
        self, session_id: str, status: RunStatus | None, limit: int | None
    ) -> list[Run]:
        runs = await self._runs(session_id)
        if status is not None:
            runs = [r for r in runs if r.status == status]
        return runs[:limit]

    @_gated
    async def _get_active_run(self, session_id: str) -> Run | None:
        running = [r for r in await self._runs(session_id) if r.status == RunStatus.RUNNING]
        return running[-1] if running else None

    # ------------------------------------------------------------ events

    @_gated
    async def _append(self, rows: list[EncodedEvent]) -> list[Event]:
        return await self._store_rows(rows)

    @_gated
    async def _flush(
        self, session: Session, session_doc: str, run: Run, run_doc: str, rows: list[EncodedEvent]
    ) -> list[Event]:
        return await self._store_rows(rows, session=(session, session_doc), run=(run, run_doc))

    @_gated
    async def _get_events(self, q: EventQuery) -> list[Event]:
        k = self._skeys(q.session_id)
        out = await self._eval(
            "read",
            [k[0], k[1], k[3]],
            [
                q.after or 0,
                -1 if q.before is None else q.before,
                -1 if q.limit is None else q.limit,
                q.run_id or "",
                q.type or "",
                "" if q.since_us is None else q.since_us,
            ],
        )
        return [_unblob(out[i + 1], int(out[i])) for i in range(0, len(out), 2)]

    @_gated
    async def _latest_sequence(self, session_id: str) -> int:
        return int(await self._r.get(self._skeys(session_id)[0]) or 0)

    # ------------------------------------------------------------ long-poll

    def _subscriber(self, channel: str) -> _Subscriber:
        if self.cluster:
            node = self._r.get_node_from_key(channel)
            name, cls, kwargs = node.name, node.connection_class, dict(node.connection_kwargs)
        else:
            pool = self._r.connection_pool
            name, cls, kwargs = "", pool.connection_class, dict(pool.connection_kwargs)
        sub = self._subs.get(name)
        if sub is None:
            kwargs["socket_timeout"] = None  # a subscriber waits for messages indefinitely
            kwargs["retry"] = Retry(NoBackoff(), 0)

            def make() -> Connection:
                conn: Connection = cls(**kwargs)
                return conn

            sub = self._subs[name] = _Subscriber(
                self, make, self.cluster, self._socket_timeout + self._connect_timeout
            )
        return sub

    async def _watch_start(self, session_id: str) -> None:
        channel = self._channel(session_id)
        self._channel_sessions[channel] = session_id
        try:
            await self._subscriber(channel).subscribe(channel)
        except BaseException:
            self._channel_sessions.pop(channel, None)
            raise

    def _follow_moved_channel(self, channel: str) -> None:
        task = asyncio.create_task(self._resubscribe_moved(channel))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _resubscribe_moved(self, channel: str) -> None:
        """Subscribe again on the slot's new master, then let every reader re-query."""
        try:
            if channel in self._channel_sessions and not self._closed:
                await self._r.nodes_manager.initialize()
                await self._subscriber(channel).subscribe(channel)
        except Exception as exc:
            log.warning("redis: re-subscribing %s after a slot move failed: %s", channel, exc)
        finally:
            self._waiters.notify_all()

    async def _watch_stop(self, session_id: str) -> None:
        channel = self._channel(session_id)
        self._channel_sessions.pop(channel, None)
        try:
            await self._subscriber(channel).unsubscribe(channel)
        except Exception as exc:  # never fail a reader over its clean-up
            log.debug("redis unsubscribe failed: %s", exc)
