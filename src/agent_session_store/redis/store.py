"""``RedisSessionStore``: options, connections, errors, reads and long-poll; the writes are in
``single.py`` (one server: one script call per write) and ``cluster.py`` (several steps).

Layout (docs/redis.md has the full table). Every key of one session shares one hash tag, so
one Lua script can change a whole session atomically, also in a cluster. Sequence numbers
are a counter in that script, events a hash ``seq -> row``, the run filter a lex-ordered
sorted set and the type filter packed arrays of numbers (binary search), so reads cost what
they return.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable, Sequence
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry as DriverRetry
from redis.backoff import NoBackoff
from redis.exceptions import TimeoutError as DriverTimeout

from ..base import DECODE_BUDGET, EventQuery, NumberedRow, SessionStoreBase, heavy
from ..codec import EncodedEvent, decode_run, decode_session
from ..errors import (
    StoreError,
    ValidationError,
    redact,
)
from ..models import Event, Run, RunStatus, Session, SessionStatus, from_micros, to_micros
from ..query import EventSearch, Position, RunFilter, RunGroup, RunSearch, SessionSearch
from ..retry import Retry
from ..urls import bool_option, number_options, query_options
from ..wakes import wakes_of_rows
from . import scripts
from .cluster import Cluster
from .faults import classify, while_moving
from .keys import EV, INDEX, RECORD, RUNS, SEQ, SPARSE, TYPES, ZONES, Keys
from .limits import READ_BUDGET, READ_RETRY
from .plan import WritePlan, WriteResult
from .queries import Queries
from .rows import NS, blob, members, unblob
from .single import SingleNode
from .subscriber import Subscriber

__all__ = ["RedisSessionStore"]

#: The highest sequence number: index members spell numbers with 12 digits.
MAX_SEQUENCE = 10**12 - 1

log = logging.getLogger("agent_session_store.redis")

_P = ParamSpec("_P")
_T = TypeVar("_T")


def _touched(session: Session, touched: str | None) -> Session:
    return session if touched is None else session.replace(updated_at=from_micros(int(touched)))


def _gated(
    fn: Callable[Concatenate[RedisSessionStore, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[RedisSessionStore, _P], Coroutine[Any, Any, _T]]:
    """Bound the operations in flight: redis-py refuses, rather than queues, past its pool."""

    async def gated(self: RedisSessionStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        async with self._gate:
            return await fn(self, *args, **kwargs)

    return gated


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
        self.keys = Keys(prefix)
        self._socket_timeout = float(socket_timeout)
        self._connect_timeout = float(connect_timeout)
        self.max_connections = max_connections
        self._gate = asyncio.Semaphore(max_connections)
        self._r: Any = None
        self._paths: Cluster | SingleNode = Cluster(self) if cluster else SingleNode(self)
        self._queries = Queries(self)
        self._subs: dict[str, Subscriber] = {}
        self._channel_sessions: dict[str, str] = {}
        self._scripts: dict[str, Any] = {}
        self._background: set[asyncio.Task[None]] = set()

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

    @property
    def client(self) -> Any:
        """The redis-py client (``Redis`` or ``RedisCluster``), once open."""
        return self._r

    def _wrap(self, exc: BaseException, operation: str) -> StoreError:
        return classify(exc, operation)  # faults.py: the one classification

    async def _open(self) -> None:
        common: dict[str, Any] = {
            "decode_responses": True,
            "socket_timeout": self._socket_timeout,
            "socket_connect_timeout": self._connect_timeout,
            "retry": DriverRetry(NoBackoff(), 1),
        }
        if self.cluster:
            # the gate bounds operations; one operation may use a connection on every node
            # reinitialize_steps=0: a MOVED answer re-points that one slot; redis-py's default
            # closes the whole client every 5th MOVED, breaking the calls of other tasks in
            # flight (seen as "Connection closed by server" during a slot migration)
            self._r = RedisCluster.from_url(
                self._url,
                max_connections=4 * self.max_connections,
                reinitialize_steps=0,
                **common,
            )
        else:
            # the gate already bounds operations, each using one connection at a time
            pool = redis.asyncio.ConnectionPool.from_url(
                self._url, max_connections=2 * self.max_connections, **common
            )
            pool.connection_class = _untasked(pool.connection_class)
            self._r = redis.asyncio.Redis(connection_pool=pool)
        try:
            await self._r.initialize() if self.cluster else await self._r.ping()
        except BaseException:
            await self._r.aclose()  # the next operation opens afresh
            raise
        for name in scripts.NAMES:
            self._scripts[name] = self._r.register_script(scripts.source(name))

    async def _close(self) -> None:
        for task in list(self._background):
            task.cancel()
        subs = list(self._subs.values())
        self._subs.clear()
        for sub in subs:
            await sub.close()
        if self._r is not None:
            await self._r.aclose()

    async def eval(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run one of the ``lua/`` scripts (EVALSHA, loading it on first use); again while
        its slot is being moved (faults.py: the server did not run it)."""
        script, k, a = self._scripts[name], list(keys), list(args)
        return await while_moving(lambda: script(keys=k, args=a))

    async def write(self, plan: WritePlan) -> WriteResult:
        """One call of the write script."""
        return WriteResult.parse(await self.eval("write", plan.keys, plan.args()))

    async def index(self, session: Session | str, doc: str, version: str) -> None:
        """One list_sessions index update at ``version`` (a tombstone, given a session id).

        The cluster's third write step; an update older than the indexed one is ignored.
        """
        ix = self.keys.list_index
        if isinstance(session, Session):
            await self.eval("index", ix, [session.id, version, doc, *members(session)])
        else:
            await self.eval("unindex", ix, [session, version])

    # ------------------------------------------------------------ the write step

    async def _store_rows(
        self,
        rows: list[EncodedEvent],
        session: tuple[Session, str] | None = None,
        run: tuple[Run, str] | None = None,
        expected: int | None = None,
        touch: Iterable[str] = (),
    ) -> list[Event]:
        # many or large rows: their blobs are built in a thread (issue 13)
        blobs = await asyncio.to_thread(_blobs, rows) if heavy(rows) else _blobs(rows)
        stored = await self._paths.store_rows(rows, blobs, session, run, expected, touch)
        if stored and self._waiters:
            # every returned event, also those stored before: a wake may say too much
            wakes = wakes_of_rows(
                (e.session_id, e.type.value, e.run_id, to_micros(e.timestamp), e.sequence_number)
                for e in stored
                if e.sequence_number is not None
            )
            self._notify(wakes, wakes)
        return stored

    # ------------------------------------------------------------ sessions

    @_gated
    async def _save_session(self, session: Session, doc: str) -> None:
        await self._store_rows([], session=(session, doc))

    @_gated
    async def _get_session(self, session_id: str) -> Session | None:
        doc, touched = await self._r.hmget(self.keys.session(session_id)[RECORD], "doc", "touched")
        return (
            None if doc is None else decode_session(doc, None if touched is None else int(touched))
        )

    async def _with_touched(self, sessions: list[Session]) -> list[Session]:
        """Activity since a session was saved moved its ``updated_at`` (C5): the write script
        keeps that in the session's own record, which the list index cannot hold."""
        if not sessions:
            return sessions
        pipe = self._r.pipeline(transaction=False)
        for s in sessions:
            pipe.hget(self.keys.session(s.id)[RECORD], "touched")
        return [_touched(s, t) for s, t in zip(sessions, await pipe.execute())]

    @_gated
    async def _list_sessions(
        self,
        status: SessionStatus | None,
        agent_id: str | None,
        limit: int | None,
        offset: int,
    ) -> list[Session]:
        all_, st, ag, sa, _, docs_key = self.keys.list_index
        if status is not None and agent_id is not None:
            key, prefix = sa, f"{status.value}{NS}{agent_id}{NS}"
        elif status is not None:
            key, prefix = st, f"{status.value}{NS}"
        elif agent_id is not None:
            key, prefix = ag, f"{agent_id}{NS}"
        else:
            key, prefix = all_, ""
        docs, touched = await self.eval(
            "list",
            [key, docs_key, self.keys.touched_index],
            [prefix, offset, -1 if limit is None else limit],
        )
        if self.cluster:  # appends cannot reach the index slot: read each session's record
            return await self._with_touched([decode_session(d) for d in docs if d is not None])
        return [decode_session(d, int(t) if t else None) for d, t in zip(docs, touched) if d]

    @_gated
    async def _delete_session(self, session_id: str) -> None:
        await self._paths.delete_session(session_id)

    # ------------------------------------------------------------ runs

    @_gated
    async def _save_run(self, run: Run, doc: str) -> None:
        await self._store_rows([], run=(run, doc), touch=[run.session_id])

    @_gated
    async def _get_run(self, run_id: str) -> Run | None:
        retry = Retry(READ_RETRY)  # a run moving between sessions is briefly in neither
        while True:
            sid = await self._paths.run_session(run_id)
            if sid is None:
                return None
            doc = await self._r.hget(self.keys.session(sid)[RUNS], run_id)
            if doc is not None:
                return decode_run(doc)
            if not await retry.pause():
                return None

    async def _runs(self, session_id: str) -> list[Run]:
        docs = await self._r.hvals(self.keys.session(session_id)[RUNS])
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
    async def _append(self, rows: list[EncodedEvent], expected: int | None = None) -> list[Event]:
        return await self._store_rows(rows, expected=expected)

    @_gated
    async def _flush(
        self,
        session: Session,
        session_doc: str,
        run: Run,
        run_doc: str,
        rows: list[EncodedEvent],
        expected: int | None = None,
    ) -> list[Event]:
        return await self._store_rows(
            rows,
            session=(session, session_doc),
            run=(run, run_doc),
            expected=expected,
            touch=[session.id],
        )

    @_gated
    async def _import(
        self,
        session_id: str,
        session_doc: str | None,
        runs: list[tuple[Run, str]],
        rows: list[NumberedRow],
        latest_sequence: int,
    ) -> tuple[int, int]:
        events = [r for r, _ in rows]
        seqs = [n for _, n in rows]
        if any(n > MAX_SEQUENCE for n in [*seqs, latest_sequence]):
            raise ValidationError(
                f"the Redis store numbers events up to {MAX_SEQUENCE}",
                details={"field": "sequence_number"},
            )
        blobs = [blob(r) for r in events]
        if isinstance(self._paths, Cluster):
            imported, skipped = await self._paths.import_rows(
                session_id, session_doc, runs, events, blobs, seqs, latest_sequence
            )
        else:
            imported, skipped = await self._paths.import_rows(
                session_id, session_doc, runs, blobs, seqs, latest_sequence
            )
        if imported and self._waiters:
            self._notify(
                [session_id],
                wakes_of_rows((session_id, r.type, r.run_id, r.timestamp_us, n) for r, n in rows),
            )
        return imported, skipped

    @_gated
    async def _get_events(self, q: EventQuery) -> list[Event]:
        """A plain page on a single node from the rows themselves (``_plain_page``); else, or
        past a gap, one read script call per READ_BUDGET candidates, so no call stalls the
        server; the next call continues where the last one stopped."""
        k = self.keys.session(q.session_id)
        keys = [k[SEQ], k[EV], k[INDEX], k[SPARSE], k[ZONES], k[TYPES]]
        after, before, limit = q.after or 0, q.before, q.limit
        found: list[Event] = []
        plain = q.run_id is None and q.type is None and q.since_us is None and not q.desc
        if plain and not self.cluster and limit is not None and limit <= READ_BUDGET:
            found, rest = await self._plain_page(k[SEQ], k[EV], after, before, limit)
            if rest is None:
                return found
            after = rest  # (the loop's limit counts what is found already)
        while True:
            out = await self.eval(
                "read",
                keys,
                [
                    after,
                    -1 if before is None else before,
                    -1 if limit is None else limit - len(found),
                    q.run_id or "",
                    q.type or "",
                    "" if q.since_us is None else q.since_us,
                    1 if q.desc else 0,
                    READ_BUDGET,
                ],
            )
            if (len(out) // 2) * _ROW_COST + sum(map(len, out[2::2])) > DECODE_BUDGET:
                found += await asyncio.to_thread(_unblobs, out)  # a large page (issue 13)
            else:
                found += _unblobs(out)
            if not out[0]:
                return found
            if q.desc:
                before = int(out[0])
            else:
                after = int(out[0])

    async def _plain_page(
        self, seq_key: str, ev_key: str, after: int, before: int | None, limit: int
    ) -> tuple[list[Event], int | None]:
        """Single node, oldest first, no filter: the counter and the rows of the numbers the
        page can hold in one MULTI (GET, HMGET: one round trip and no script, whose copying
        of a thousand rows cost the server five times the HMGET). Returns the events of the
        numbers present from ``after + 1`` on, and None when that is the answer (the page is
        full, or it reaches the counter), else the number to go on from with the read script
        (a gap below the counter: pruned or imported numbers).

        Past the first ``_FIRST_NUMBERS`` numbers, the rest is asked for in a second HMGET
        sized by the counter the first call read: naming numbers past the counter cost
        time (a 10-event session read with ``limit=1000`` took 1.34-1.40 ms, now 0.36-0.41,
        most of it packing the 990 missing numbers), and a long page pays one more round
        trip (+4 % on 1,000 events)."""
        hi = after + limit if before is None else min(after + limit, before - 1)
        if hi <= after:
            return [], None
        first = min(hi, after + _FIRST_NUMBERS)
        pipe = self._r.pipeline(transaction=True)
        pipe.get(seq_key)
        pipe.hmget(ev_key, list(range(after + 1, first + 1)))
        latest, texts = await pipe.execute()
        n = texts.index(None) if None in texts else len(texts)
        last = min(hi, int(latest or 0))
        if n == len(texts) and first < last:  # no gap so far, and the counter is further on
            texts += await self._r.hmget(ev_key, list(range(first + 1, last + 1)))
            n = texts.index(None) if None in texts else len(texts)
        page = texts[:n]
        if n * _ROW_COST + sum(map(len, page)) > DECODE_BUDGET:
            found = await asyncio.to_thread(_unblob_from, page, after + 1)  # (issue 13)
        else:
            found = _unblob_from(page, after + 1)
        done = after + n >= hi or after + n >= int(latest or 0)
        return found, None if done else after + n

    @_gated
    async def _latest_sequence(self, session_id: str) -> int:
        return int(await self._r.get(self.keys.session(session_id)[SEQ]) or 0)

    # ------------------------------------------------------------ query and retention (queries.py)

    @_gated
    async def _search_sessions(
        self, q: SessionSearch, after: Position | None, limit: int
    ) -> list[Session]:
        return await self._queries.search_sessions(q, after, limit)

    @_gated
    async def _count_sessions(self, q: SessionSearch) -> int:
        return await self._queries.count_sessions(q)

    @_gated
    async def _search_runs(self, q: RunSearch, after: Position | None, limit: int) -> list[Run]:
        return await self._queries.search_runs(q, after, limit)

    @_gated
    async def _run_groups(self, f: RunFilter) -> list[RunGroup]:
        return await self._queries.run_groups(f)

    @_gated
    async def _event_stats(self, session_id: str) -> tuple[int, int | None, int | None]:
        return await self._queries.event_stats(session_id)

    @_gated
    async def _search_events(
        self, q: EventSearch, after: Position | None, limit: int
    ) -> list[Event]:
        return await self._queries.search_events(q, after, limit)

    @_gated
    async def _count_events(self, q: EventSearch) -> int:
        return await self._queries.count_events(q)

    @_gated
    async def _soft_delete(
        self,
        cutoff_us: int,
        exempt_statuses: tuple[str, ...],
        exempt_tags: tuple[str, ...],
        now: datetime,
        dry_run: bool,
    ) -> int:
        return await self._queries.soft_delete(
            cutoff_us, exempt_statuses, exempt_tags, now, dry_run
        )

    @_gated
    async def _deleted_before(self, cutoff_us: int) -> list[str]:
        return await self._queries.deleted_before(cutoff_us)

    @_gated
    async def _sessions_over(self, max_events: int) -> list[str]:
        return await self._queries.sessions_over(max_events)

    @_gated
    async def _prune(
        self,
        session_id: str,
        max_events: int,
        first_types: tuple[str, ...],
        protected: frozenset[str],
        dry_run: bool,
    ) -> int:
        return await self._queries.prune(session_id, max_events, first_types, protected, dry_run)

    @_gated
    async def _health(self) -> list[str]:
        return await self._queries.health()

    # ------------------------------------------------------------ long-poll

    def _subscriber(self, channel: str) -> Subscriber:
        if self.cluster:
            node = self._r.get_node_from_key(channel)
            name, cls, kwargs = node.name, node.connection_class, dict(node.connection_kwargs)
        else:
            pool = self._r.connection_pool
            name, cls, kwargs = "", pool.connection_class, dict(pool.connection_kwargs)
        sub = self._subs.get(name)
        if sub is None:
            kwargs["socket_timeout"] = None  # a subscriber waits for messages indefinitely
            kwargs["retry"] = DriverRetry(NoBackoff(), 0)

            def make() -> Connection:
                conn: Connection = cls(**kwargs)
                return conn

            sub = self._subs[name] = Subscriber(
                self, make, self.cluster, self._socket_timeout + self._connect_timeout
            )
        return sub

    async def _watch_start(self, session_id: str) -> None:
        channel = self.keys.channel(session_id)
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
        channel = self.keys.channel(session_id)
        self._channel_sessions.pop(channel, None)
        try:
            await self._subscriber(channel).unsubscribe(channel)
        except Exception as exc:  # never fail a reader over its clean-up
            log.debug("redis unsubscribe failed: %s", exc)


_UNTASKED: dict[type[Any], type[Any]] = {}


def _untasked(cls: type[Any]) -> type[Any]:
    """``cls`` bounding its writes by ``asyncio.timeout``: redis-py's own bound, with a socket
    timeout set, is ``asyncio.wait_for``, which on Python 3.11 starts a task per command (an
    extra turn of the event loop on every call, issue 13). The same outcome on a stalled
    write: the connection is dropped and redis-py's ``TimeoutError`` raised."""
    made = _UNTASKED.get(cls)
    if made is not None:
        return made

    class Untasked(cls):  # type: ignore[misc]
        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            timeout: float | None = self.socket_timeout  # type: ignore[has-type]
            if not timeout:
                await super().send_packed_command(command, check_health)
                return
            bound = asyncio.timeout(timeout)
            self.socket_timeout = None  # (the parent: no wait_for; one task owns a connection)
            try:
                async with bound:
                    await super().send_packed_command(command, check_health)
            except TimeoutError:
                if not bound.expired():
                    raise
                raise DriverTimeout("Timeout writing to socket") from None
            finally:
                self.socket_timeout = timeout

    Untasked.__name__ = Untasked.__qualname__ = f"Untasked{cls.__name__}"
    made = _UNTASKED[cls] = Untasked
    return made


def _blobs(rows: list[EncodedEvent]) -> list[str]:
    return [blob(r) for r in rows]


_ROW_COST = 256  # as ``base.heavy`` counts
_FIRST_NUMBERS = 128  # _plain_page: the numbers asked for before the counter is known


def _unblob_from(texts: list[str], first: int) -> list[Event]:
    """The events of stored rows numbered ``first``, ``first + 1`` ..."""
    return [unblob(text, seq) for seq, text in enumerate(texts, first)]


def _unblobs(out: list[Any]) -> list[Event]:
    """The events of a read script's answer (a cursor, then number and blob pairs)."""
    rest = iter(out)
    next(rest)  # the cursor
    return [unblob(text, int(seq)) for seq, text in zip(rest, rest)]
