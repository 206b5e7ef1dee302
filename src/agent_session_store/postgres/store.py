"""PostgreSQL session store: many worker processes on many hosts against one database.

URL: ``postgresql://user:pass@host:5432/db?schema=agents&auto_migrate=true`` (``postgres://``
works too). Store options in the query string: ``schema`` (default ``agent_session_store``),
``auto_migrate``, ``min_size``/``max_size`` (pool), ``connect_timeout``/``command_timeout``
(seconds), ``max_event_bytes``, the driver's statement cache (``statement_cache_size``,
``max_cached_statement_lifetime``, ``max_cacheable_statement_size``), and how long-poll
readers hear of other processes' commits (``listen_url``, ``notify=listen|poll``,
``poll_interval``: docs/postgres.md, "Behind pgbouncer"); the driver's own (``sslmode``...)
pass through; anything else is a ``validation_error`` listing the valid ones.

How the guarantees of contract 3 are met (the SQL is in ``sql/functions.sql``):

* Every write is one server-side function call, so one round trip and one implicit
  transaction whatever the batch size (arrays, not one bind parameter per value).
* Every writing function locks the counter rows of the sessions it touches first (sorted),
  then sessions, runs, events: one global order, so no deadlock and no race that ends in a
  state no serial order gives. The counter numbers the new events and moves by exactly what
  was inserted; a rolled-back transaction rolls it back too, so a failure consumes nothing.
* Idempotency: a unique index on the event id; the ids found stored are key-share locked, so
  they are still there when the call answers. Into two different sessions at once,
  ``ON CONFLICT (id) DO NOTHING`` waits for the other transaction; if that one committed,
  the attempt is undone and re-numbered inside the same transaction.
* Conditional appends are checked in the function, under the counter lock.
* Long-poll: each append sends ``NOTIFY`` right after its commit, in a second transaction
  of the same call (a commit that NOTIFYs would hold a server-wide lock through its WAL
  flush), so it is delivered once the events are visible. Appends that overlap others of
  the store skip the NOTIFY and their wakes go out together (``announcer.py``). Payload: a
  JSON wake saying what the session got, so only readers it can satisfy re-query, plus the
  bare session id for
  older code. Each store keeps one dedicated listening connection; ``_watch_start`` returns
  only once ``LISTEN`` is active, and after a reconnect every waiter is woken to re-query,
  so no wake-up is lost. ``listen_url`` puts that connection on another address than the
  pool's (the server itself, when the pool goes through pgbouncer); ``notify=poll``
  replaces it by a poll of the watched sessions' counters every ``poll_interval``
  (``polling.py``).
* Failures: classified in ``faults.py``; the pool reconnects by itself once the server is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Self, TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit

import asyncpg
from asyncpg.exceptions import PostgresError

from .. import wakes
from ..base import EventQuery, NumberedRow, SessionStoreBase, heavy
from ..codec import (
    EncodedEvent,
    decode_event,
    decode_page,
    decode_run,
    decode_session,
    encode_session,
    loads_stored,
)
from ..errors import MigrationRequiredError, StorageError, StoreError, ValidationError, redact
from ..models import Event, Run, RunStatus, Session, SessionStatus, to_micros
from ..polling import SequencePoller
from ..query import (
    EventSearch,
    Position,
    RunFilter,
    RunGroup,
    RunSearch,
    SessionSearch,
    descending,
)
from ..retry import Retry, RetryPolicy, gave_up
from ..urls import bool_option, number_options, query_options
from . import faults
from .announcer import Announcer
from .schema import SCHEMA_VERSION, apply_migrations, channel_for, quote_ident

__all__ = ["DEFAULT_SCHEMA", "PostgresSessionStore"]

log = logging.getLogger("agent_session_store.postgres")

# A transaction the server aborted as a deadlock victim or for a serialization failure runs
# again, a few times within a couple of seconds: past that the contention is not passing and
# the caller hears so (retryable) instead of the call going on for ever.
TX_RETRY = RetryPolicy(attempts=5, timeout=2.0, first_delay=0.005, max_delay=0.1)
# A statement the driver refused to send on a connection the server had ended: once more.
NOT_SENT_RETRY = RetryPolicy(attempts=2, first_delay=0.0, max_delay=0.0)
# The listener's reconnect loop: ends when no reader waits (or the store closes).
LISTEN_RECONNECT = RetryPolicy(first_delay=0.05, max_delay=2.0)

T = TypeVar("T")

DEFAULT_SCHEMA = "agent_session_store"
_EVENT_COLUMNS = (
    "id, session_id, type, run_id, ts_us, data, metadata, schema_version, provider, "
    "correlation_id, seq"
)  # EncodedEvent's order, then the sequence number: what decode_event expects
_STORE_OPTIONS = (
    "schema",
    "auto_migrate",
    "min_size",
    "max_size",
    "connect_timeout",
    "command_timeout",
    "max_event_bytes",
    "statement_cache_size",
    "max_cached_statement_lifetime",
    "max_cacheable_statement_size",
    "listen_url",
    "notify",
    "poll_interval",
)
_NOTIFY_MODES = ("listen", "poll")
_MIN_POLL, _MAX_POLL = 0.01, 60.0  # seconds between polls (notify=poll)
# what asyncpg takes from a DSN's query string; anything else it would send to the server
_DRIVER_OPTIONS = (
    "application_name",
    "database",
    "dbname",
    "gsslib",
    "host",
    "krbsrvname",
    "passfile",
    "password",
    "port",
    "service",
    "ssl_max_protocol_version",
    "ssl_min_protocol_version",
    "sslcert",
    "sslcrl",
    "sslkey",
    "sslmode",
    "sslnegotiation",
    "sslpassword",
    "sslrootcert",
    "target_session_attrs",
    "user",
)
_DESCRIBE_MAX = 1000  # notify=poll: events per session a poll reads to say what came
_LONG_SESSION_ID = 200  # longer ids are sent as '#' + md5 (NOTIFY payloads are capped at 8000)


def _session(doc: str, updated_us: int | None) -> Session:
    """The stored session with the updated_at the store keeps (contract C5) in a column
    (NULL for sessions written by schema version 1: the doc's own value)."""
    return decode_session(doc, updated_us)


async def _no_reset(conn: asyncpg.Connection) -> None:
    """The store never changes session state on pooled connections, so skip the per-release
    reset query: it would be a second round trip on every single operation."""


# ---------------------------------------------------------------------------- the store


class PostgresSessionStore(SessionStoreBase):
    """Sessions, runs and events in one PostgreSQL schema, shared by any number of processes."""

    backend_name = "postgres"

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: asyncpg.Pool | None = None,
        schema: str = DEFAULT_SCHEMA,
        auto_migrate: bool = False,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 5.0,
        command_timeout: float = 60.0,
        statement_cache_size: int = 100,
        max_cached_statement_lifetime: float = 300.0,
        max_cacheable_statement_size: int = 15 * 1024,
        listen_dsn: str | None = None,
        notify: str = "listen",
        poll_interval: float = 0.5,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if (dsn is None) == (pool is None):
            raise ValidationError("PostgresSessionStore needs exactly one of dsn or pool")
        if type(schema) is not str or not schema or len(schema.encode()) > 63 or "\0" in schema:
            raise ValidationError(f"schema must be a PostgreSQL identifier, got {schema!r}")
        if not 1 <= min_size <= max_size:
            raise ValidationError("pool sizes need 1 <= min_size <= max_size")
        if connect_timeout <= 0 or command_timeout <= 0:
            raise ValidationError("timeouts must be positive")
        if statement_cache_size < 0 or max_cacheable_statement_size < 0:
            raise ValidationError("statement cache sizes must be 0 (off) or more")
        if max_cached_statement_lifetime < 0:
            raise ValidationError("max_cached_statement_lifetime must be 0 (forever) or more")
        if notify not in _NOTIFY_MODES:
            raise ValidationError(
                f"notify must be one of {', '.join(_NOTIFY_MODES)}, got {notify!r}",
                details={"field": "notify"},
            )
        if notify == "poll" and listen_dsn is not None:
            raise ValidationError(
                "notify=poll and listen_url exclude each other: a direct LISTEN connection "
                "makes polling unnecessary",
                details={"field": "notify"},
            )
        if not _MIN_POLL <= poll_interval <= _MAX_POLL:
            raise ValidationError(
                f"poll_interval must be between {_MIN_POLL:g} and {_MAX_POLL:g} seconds",
                details={"field": "poll_interval"},
            )
        self._dsn = dsn
        self._pool: asyncpg.Pool | None = pool
        self._owns_pool = pool is None
        self.schema = schema
        self.auto_migrate = auto_migrate
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._channel = channel_for(schema)
        named = dsn is not None and "application_name" in query_options(dsn)
        self._server_settings = {} if named else {"application_name": "agent-session-store"}
        # asyncpg's statement cache: named prepared statements, which a transaction pooler
        # cannot keep (statement_cache_size=0 behind pgbouncer, docs/postgres.md)
        self._cache_options: dict[str, Any] = {
            "statement_cache_size": statement_cache_size,
            "max_cached_statement_lifetime": max_cached_statement_lifetime,
            "max_cacheable_statement_size": max_cacheable_statement_size,
        }
        self._listen_dsn = listen_dsn
        self.notify_mode = notify
        self._poller = (
            SequencePoller(self._latest_sequences, self._notify, poll_interval, self._what_came)
            if notify == "poll"
            else None
        )
        s = quote_ident(schema)
        self._s = s
        # plain and conditional forms (p_expected defaults to NULL); the procedures commit,
        # then NOTIFY in a transaction of their own (see functions.sql)
        self._sql_append = f"CALL {s}.append_call({_ARRAY_ARGS})"
        self._sql_append_if = f"CALL {s}.append_call({_ARRAY_ARGS}, $11::bigint)"
        self._sql_flush = (
            f"CALL {s}.flush_call($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, {_ARRAY_ARGS_FROM_11})"
        )
        self._sql_flush_if = f"{self._sql_flush[:-1]}, $21::bigint)"
        # what the procedures run before their COMMIT, without the NOTIFY, the expected
        # sequence last (NULL: none): appends that overlap others of this store (the
        # announcer sends their wakes, many per call; announcer.py), and benchmarks and tests
        # inside a transaction of their own, where CALL cannot commit
        self._sql_append_quiet = (
            f"SELECT * FROM {s}.append_events({_ARRAY_ARGS}, $11::bigint, false)"
        )
        self._sql_flush_quiet = (
            f"SELECT * FROM {s}.flush($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
            f"{_ARRAY_ARGS_FROM_11}, $21::bigint, false)"
        )
        self._appending = 0  # appends and flushes of this store on the wire now
        self._announcer = Announcer(
            self._acquire,
            f"SELECT set_config('synchronous_commit', 'off', true), {s}.wake($1::text[], "
            "$2::bigint[], $3::text[], $4::text[], $5::bigint[])",
            functools.partial(self._wrap, operation="append"),
        )
        self._sql_import = (
            f"SELECT * FROM {s}.import_events($1, $2, $3, $4, $5, $6, $7::text[], $8::text[], "
            "$9::text[], $10::bigint[], $11::text[], $12::text[], $13::text[], $14::text[], "
            "$15::bigint[], $16::text[], $17::text[], $18::integer[], $19::text[], $20::text[], "
            "$21::bigint[], $22)"
        )
        # the dedicated LISTEN connection (see _watch_start)
        self._listen_conn: asyncpg.Connection | None = None
        self._listen_lock = asyncio.Lock()
        self._listen_lost = asyncio.Event()
        self._listen_task: asyncio.Task[None] | None = None
        self._from_pool_listener = pool is not None and listen_dsn is None
        self._warned_pooler = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        opts = query_options(url)
        parts = urlsplit(url)
        ours: dict[str, Any] = {}
        if "schema" in opts:
            ours["schema"] = opts.pop("schema")
        ours["auto_migrate"] = bool_option(opts, "auto_migrate", False)
        number_options(
            opts,
            ours,
            {
                "min_size": int,
                "max_size": int,
                "max_event_bytes": int,
                "connect_timeout": float,
                "command_timeout": float,
                "statement_cache_size": int,
                "max_cached_statement_lifetime": float,
                "max_cacheable_statement_size": int,
                "poll_interval": float,
            },
        )
        if "notify" in opts:
            ours["notify"] = opts.pop("notify")
        if "listen_url" in opts:
            ours["listen_dsn"] = _listen_dsn(opts.pop("listen_url"))
        unknown = sorted(set(opts) - set(_DRIVER_OPTIONS))
        if unknown:
            # asyncpg would send them to the server as settings, which refuses the connection
            raise ValidationError(
                f"unknown PostgreSQL URL option{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(map(repr, unknown))}; store options: {', '.join(_STORE_OPTIONS)}; "
                f"driver options: {', '.join(_DRIVER_OPTIONS)}",
                details={"field": unknown[0], "valid": [*_STORE_OPTIONS, *_DRIVER_OPTIONS]},
            )
        rest = urlencode(opts)  # what is left is for the driver (sslmode, ...)
        dsn = urlunsplit((parts.scheme, parts.netloc, parts.path, rest, ""))
        for key, value in ours.items():
            options.setdefault(key, value)
        return cls(dsn, **options)

    def __repr__(self) -> str:
        where = redact(self._dsn) if self._dsn else "<given pool>"
        return f"PostgresSessionStore({where!r}, schema={self.schema!r})"

    # ------------------------------------------------------------ errors

    def _wrap(self, exc: BaseException, operation: str) -> StoreError:
        if isinstance(exc, PostgresError) and exc.sqlstate in faults.MISSING_SQLSTATES:
            text = f"{type(exc).__name__}: {exc}"
            return self._migration_error(f"a table or function is missing ({text})")
        return faults.wrap(exc, operation, dsn=self._dsn, command_timeout=self._command_timeout)

    def _migration_error(self, why: str) -> MigrationRequiredError:
        where = redact(self._dsn) if self._dsn else "<your database URL>"
        return MigrationRequiredError(
            f"the PostgreSQL schema {self.schema!r} needs migrating: {why}. Run "
            f"`agent-session-store migrate '{where}'` (or `await store.migrate()`), or open the "
            "store with ?auto_migrate=true",
            details={"schema": self.schema, "needs_version": SCHEMA_VERSION},
        )

    # ------------------------------------------------------------ lifecycle

    async def _connect(self, dsn: str | None = None) -> asyncpg.Connection:
        """A connection outside the pool (migrations, LISTEN); ``dsn``: another server
        address than the pool's (``listen_url``), with the driver's default cache."""
        target = dsn or self._dsn
        assert target is not None
        conn: asyncpg.Connection = await asyncpg.connect(
            target,
            timeout=self._connect_timeout,
            command_timeout=self._command_timeout,
            server_settings=self._server_settings,
            **({} if dsn else self._cache_options),
        )
        return conn

    async def _open(self) -> None:
        if self.auto_migrate:
            await self.migrate()
        if self._pool is None:
            assert self._dsn is not None
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self._connect_timeout,
                command_timeout=self._command_timeout,
                max_inactive_connection_lifetime=300.0,
                reset=_no_reset,
                server_settings=self._server_settings,
                **self._cache_options,
            )
        try:
            version = await self._schema_version()
        except BaseException:
            await self._close()
            raise
        if version > SCHEMA_VERSION:
            # Migrations only add, so older code keeps working during a rolling upgrade.
            log.info(
                "schema %s is at version %s (this code: %s)", self.schema, version, SCHEMA_VERSION
            )

    async def _schema_version(self) -> int:
        try:
            version = await self._fetchval(f"SELECT max(version) FROM {self._s}.schema_migrations")
        except PostgresError as exc:
            if exc.sqlstate in ("42P01", "3F000"):
                raise self._migration_error("it has no tables yet") from exc
            raise
        if version is None or version < SCHEMA_VERSION:
            raise self._migration_error(
                f"it is at version {version or 0}, this code needs {SCHEMA_VERSION}"
            )
        return int(version)

    async def _close(self) -> None:
        with contextlib.suppress(Exception):  # the appends waiting on it are told
            await asyncio.wait_for(self._announcer.drain(), self._connect_timeout)
        if self._poller is not None:
            await self._poller.close()
        if self._listen_task is not None:
            self._listen_task.cancel()
            with contextlib.suppress(BaseException):
                await self._listen_task
        await self._drop_listener()
        if self._pool is not None and self._owns_pool:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), self._connect_timeout)
            except (TimeoutError, OSError, PostgresError, asyncpg.InterfaceError):
                pool.terminate()

    async def migrate(self) -> None:
        """Apply missing migrations; safe from many processes at once (an advisory lock)."""
        try:
            await self._migrate()
        except StoreError:
            raise
        except Exception as exc:
            raise self._wrap(exc, "migrate") from exc

    async def _migrate(self) -> None:
        if self._dsn is not None:
            conn = await self._connect()
            try:
                await apply_migrations(conn, self.schema)
            finally:
                await conn.close(timeout=self._connect_timeout)
        else:
            assert self._pool is not None
            async with self._pool.acquire(timeout=self._connect_timeout) as pooled:
                await apply_migrations(pooled, self.schema)

    async def drop_schema(self) -> None:
        """Remove the schema and everything in it (tests, teardown of a tenant)."""
        try:
            if self._dsn is not None:
                conn = await self._connect()
                try:
                    await conn.execute(f"DROP SCHEMA IF EXISTS {self._s} CASCADE")
                finally:
                    await conn.close(timeout=self._connect_timeout)
            else:
                await self._execute(f"DROP SCHEMA IF EXISTS {self._s} CASCADE")
        except StoreError:
            raise
        except Exception as exc:
            raise self._wrap(exc, "drop_schema") from exc

    # ------------------------------------------------------------ pool helpers

    def _acquire(self) -> Any:
        """A pooled connection. No acquire timeout: that would cost a task per call, and
        waiting here is bounded anyway, by the connect timeout for a new connection and the
        command timeout of whoever holds a busy one."""
        pool = self._pool
        if pool is None:
            raise StorageError("the postgres store is closed")
        return pool.acquire()

    async def _run(self, method: str, sql: str, args: tuple[Any, ...]) -> Any:
        """One statement on a pooled connection.

        A pooled connection the server ended while it sat idle (restart, termination) is
        only found out when used: the driver refuses to start the statement
        (``faults.NotSent``), so it runs once more on a fresh connection. Every statement of
        the store may run twice anyway (appends are idempotent by id, the rest are upserts,
        deletes and reads).
        """
        retry = Retry(NOT_SENT_RETRY)
        while True:
            done, result = False, None
            try:
                async with self._acquire() as conn:
                    with faults.statement(conn):
                        result = await getattr(conn, method)(sql, *args)
                        done = True
                return result
            except faults.NotSent:
                if not await retry.pause():
                    raise
            except Exception:
                if done:  # only releasing failed (a given pool's reset); the pool dropped it
                    return result
                raise

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        rows: list[Any] = await self._run("fetch", sql, args)
        return rows

    async def _fetchrow(self, sql: str, *args: Any) -> Any:
        return await self._run("fetchrow", sql, args)

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        return await self._run("fetchval", sql, args)

    async def _execute(self, sql: str, *args: Any) -> None:
        await self._run("execute", sql, args)

    async def _retrying(self, work: Callable[[], Awaitable[T]]) -> T:
        """Re-run a whole transaction that the server aborted as a deadlock victim: nothing
        of it was committed, so running it again is exactly what the caller asked for."""
        retry = Retry(TX_RETRY)
        while True:
            try:
                return await work()
            except PostgresError as exc:
                if exc.sqlstate not in faults.RETRYABLE_SQLSTATES:
                    raise
                if not await retry.pause():
                    why = "deadlock" if exc.sqlstate == "40P01" else "serialization failure"
                    raise gave_up(
                        "postgres",
                        "transaction",
                        retry,
                        f"the server kept aborting it ({why}, SQLSTATE {exc.sqlstate})",
                        sqlstate=exc.sqlstate,
                    ) from exc

    # ------------------------------------------------------------ sessions

    async def _save_session(self, session: Session, doc: str) -> None:
        await self._execute(
            f"INSERT INTO {self._s}.sessions (id, agent_id, status, created_us, doc, updated_us) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET "
            "agent_id = EXCLUDED.agent_id, status = EXCLUDED.status, "
            "created_us = EXCLUDED.created_us, doc = EXCLUDED.doc, "
            "updated_us = EXCLUDED.updated_us",
            session.id,
            session.agent_id,
            session.status.value,
            to_micros(session.created_at),
            doc,
            to_micros(session.updated_at),
        )

    async def _get_session(self, session_id: str) -> Session | None:
        row = await self._fetchrow(
            f"SELECT doc, updated_us FROM {self._s}.sessions WHERE id = $1", session_id
        )
        return None if row is None else _session(row[0], row[1])

    def list_sessions_sql(self, status: bool, agent_id: bool) -> str:
        """The query ``list_sessions`` runs ($1 limit, $2 offset, then the filters)."""
        where: list[str] = []
        if status:
            where.append(f"status = ${len(where) + 3}")
        if agent_id:
            where.append(f"agent_id = ${len(where) + 3}")
        cond = f" WHERE {' AND '.join(where)}" if where else ""
        return (
            f"SELECT doc, updated_us FROM {self._s}.sessions{cond} "
            "ORDER BY created_us, id LIMIT $1 OFFSET $2"
        )

    async def _list_sessions(
        self,
        status: SessionStatus | None,
        agent_id: str | None,
        limit: int | None,
        offset: int,
    ) -> list[Session]:
        args: list[Any] = [limit, offset]
        if status is not None:
            args.append(status.value)
        if agent_id is not None:
            args.append(agent_id)
        rows = await self._fetch(
            self.list_sessions_sql(status is not None, agent_id is not None), *args
        )
        return [_session(r[0], r[1]) for r in rows]

    async def _delete_session(self, session_id: str) -> None:
        async def work() -> None:
            await self._execute(f"SELECT {self._s}.delete_session($1)", session_id)

        await self._retrying(work)

    # ------------------------------------------------------------ runs

    async def _save_run(self, run: Run, doc: str) -> None:
        async def work() -> None:
            await self._execute(
                f"SELECT {self._s}.save_run($1, $2, $3, $4, $5)",
                run.id,
                run.session_id,
                run.status.value,
                to_micros(run.started_at),
                doc,
            )

        await self._retrying(work)

    async def _get_run(self, run_id: str) -> Run | None:
        doc = await self._fetchval(f"SELECT doc FROM {self._s}.runs WHERE id = $1", run_id)
        return None if doc is None else decode_run(doc)

    def list_runs_sql(self, status: bool) -> str:
        """The query ``list_runs`` runs ($1 session, $2 limit, $3 status)."""
        cond = " AND status = $3" if status else ""
        return (
            f"SELECT doc FROM {self._s}.runs WHERE session_id = $1{cond} "
            "ORDER BY started_us, id LIMIT $2"
        )

    def active_run_sql(self) -> str:
        return (
            f"SELECT doc FROM {self._s}.runs WHERE session_id = $1 AND status = 'running' "
            "ORDER BY started_us DESC, id DESC LIMIT 1"
        )

    async def _list_runs(
        self, session_id: str, status: RunStatus | None, limit: int | None
    ) -> list[Run]:
        args: list[Any] = [session_id, limit]
        if status is not None:
            args.append(status.value)
        rows = await self._fetch(self.list_runs_sql(status is not None), *args)
        return [decode_run(r[0]) for r in rows]

    async def _get_active_run(self, session_id: str) -> Run | None:
        doc = await self._fetchval(self.active_run_sql(), session_id)
        return None if doc is None else decode_run(doc)

    # ------------------------------------------------------------ events

    async def _stored(
        self, rows: list[EncodedEvent], result: Any, *, announce: bool = False
    ) -> list[Event]:
        """``_results``, in a thread when the rows are many or large (issue 13); the wakes
        are sent from the event loop. ``announce``: the write committed without NOTIFY,
        so its wake goes out through the announcer before the caller hears back."""
        gather = announce or bool(self._waiters)
        if heavy(rows):
            out, new = await asyncio.to_thread(_results, rows, result, gather)
        else:
            out, new = _results(rows, result, gather)
        if new:
            touched = wakes.wakes_of_rows(new)
            self._notify(touched, touched)  # this process's readers need not wait for NOTIFY
            if announce:
                await self._announcer.announce(new)
        return out

    async def _write(
        self,
        sid: str,
        rows: list[EncodedEvent],
        call: tuple[str, list[Any]],
        quiet: tuple[str, list[Any]],
    ) -> list[Event]:
        """One append or flush. Alone, it is one ``CALL`` that commits, then notifies.
        Beside another of this store's, it commits without NOTIFY and hands its wake to
        the announcer (announcer.py: NOTIFYing commits queue on one server-wide lock)."""
        crowded = self._appending > 0
        sql, args = quiet if crowded else call

        async def work() -> Any:
            if not crowded:
                return await self._fetchrow(sql, *args)
            answer = await self._fetch(sql, *args)
            return list(zip(*answer)) if answer else None

        with faults.sequence_conflicts(sid):
            self._appending += 1
            try:
                result = await self._retrying(work)
            finally:
                self._appending -= 1
            return await self._stored(rows, result, announce=crowded)

    def append_args(self, rows: list[EncodedEvent], expected: int | None = None) -> list[Any]:
        """The arguments of ``_sql_append`` (one array per column), or of ``_sql_append_if``
        (then ``expected``)."""
        columns: list[Any] = list(zip(*rows))
        return columns if expected is None else [*columns, expected]

    def flush_args(
        self,
        session: Session,
        session_doc: str,
        run: Run,
        run_doc: str,
        rows: list[EncodedEvent],
        expected: int | None = None,
    ) -> list[Any]:
        """The arguments of ``_sql_flush`` (the two records, the event columns), or of
        ``_sql_flush_if`` (then ``expected``)."""
        columns: list[Any] = list(zip(*rows)) if rows else [[] for _ in range(10)]
        return [
            session.id,
            session.agent_id,
            session.status.value,
            to_micros(session.created_at),
            session_doc,
            run.id,
            run.session_id,
            run.status.value,
            to_micros(run.started_at),
            run_doc,
            *columns,
            *([] if expected is None else [expected]),
        ]

    async def _append(self, rows: list[EncodedEvent], expected: int | None = None) -> list[Event]:
        sql = self._sql_append if expected is None else self._sql_append_if
        quiet = self._sql_append_quiet
        if heavy(rows):  # asyncpg would encode the arrays on the loop: send literals (issue 13)
            args = await asyncio.to_thread(_literal_args, rows, expected)
            sql, quiet = _as_literals(sql), _as_literals(quiet)
        else:
            args = self.append_args(rows, expected)
        # the quiet form always takes an expected sequence (NULL: none)
        quiet_args = [*args, None] if expected is None else args
        return await self._write(rows[0].session_id, rows, (sql, args), (quiet, quiet_args))

    async def _flush(
        self,
        session: Session,
        session_doc: str,
        run: Run,
        run_doc: str,
        rows: list[EncodedEvent],
        expected: int | None = None,
    ) -> list[Event]:
        args = self.flush_args(session, session_doc, run, run_doc, [], expected)
        sql = self._sql_flush if expected is None else self._sql_flush_if
        quiet = self._sql_flush_quiet
        if heavy(rows):  # as in ``_append``
            args[10:20] = await asyncio.to_thread(_literal_args, rows, None)
            sql, quiet = _as_literals(sql), _as_literals(quiet)
        elif rows:
            args[10:20] = list(zip(*rows))
        quiet_args = [*args, None] if expected is None else args
        return await self._write(session.id, rows, (sql, args), (quiet, quiet_args))

    def import_args(
        self,
        session_id: str,
        session_doc: str | None,
        runs: list[tuple[Run, str]],
        rows: list[NumberedRow],
        latest_sequence: int,
    ) -> list[Any]:
        """The arguments of ``import_events``, as ``_import`` sends them (tests reuse it)."""
        session = None if session_doc is None else decode_session(session_doc)
        columns: list[Any] = (
            [list(c) for c in zip(*(row for row, _ in rows))] if rows else [[]] * 10
        )
        return [
            session_id,
            None if session is None else session.agent_id,
            None if session is None else session.status.value,
            None if session is None else to_micros(session.created_at),
            None if session is None else to_micros(session.updated_at),
            session_doc,
            [run.id for run, _ in runs],
            [run.session_id for run, _ in runs],
            [run.status.value for run, _ in runs],
            [to_micros(run.started_at) for run, _ in runs],
            [doc for _, doc in runs],
            *(columns[i] for i in (0, 2, 3, 4, 5, 6, 7, 8, 9)),  # every column but session
            [seq for _, seq in rows],
            latest_sequence,
        ]

    async def _import(
        self,
        session_id: str,
        session_doc: str | None,
        runs: list[tuple[Run, str]],
        rows: list[NumberedRow],
        latest_sequence: int,
    ) -> tuple[int, int]:
        """One call of ``import_events``: checks, inserts, records and counter atomically."""
        args = self.import_args(session_id, session_doc, runs, rows, latest_sequence)

        async def work() -> Any:
            return await self._fetchrow(self._sql_import, *args)

        with faults.sequence_conflicts(session_id):
            imported, skipped = await self._retrying(work)
        if imported and self._waiters:
            self._notify(
                (session_id,),
                wakes.wakes_of_rows(
                    (session_id, r.type, r.run_id, r.timestamp_us, n) for r, n in rows
                ),
            )
        return int(imported), int(skipped)

    def events_sql(self, query: EventQuery) -> tuple[str, list[Any]]:
        """The query ``get_events`` runs: one text per filter combination, so each gets its
        own prepared statement and plan."""
        args: list[Any] = [query.session_id]
        where = ["session_id = $1"]
        for column, op, value in (
            ("run_id", "=", query.run_id),
            ("type", "=", query.type),
            ("ts_us", ">=", query.since_us),
            ("seq", ">", query.after),
            ("seq", "<", query.before),
        ):
            if value is not None:
                args.append(value)
                where.append(f"{column} {op} ${len(args)}")
        sql = f"SELECT {_EVENT_COLUMNS} FROM {self._s}.events WHERE {' AND '.join(where)} "
        sql += "ORDER BY seq DESC" if query.desc else "ORDER BY seq"
        if query.limit is not None:
            args.append(query.limit)
            sql += f" LIMIT ${len(args)}"
        return sql, args

    async def _get_events(self, query: EventQuery) -> list[Event]:
        sql, args = self.events_sql(query)
        rows = await self._fetch(sql, *args)
        if heavy(rows):  # a large page: decoded in a thread (issue 13)
            return await asyncio.to_thread(decode_page, rows)
        return decode_page(rows)

    def newest_payloads_sql(self) -> str:
        """``get_newest_payloads``' query: the primary key read backwards, two columns."""
        return (
            f"SELECT type, data FROM {self._s}.events WHERE session_id = $1"
            " ORDER BY seq DESC LIMIT $2"
        )

    async def _newest_payloads(self, session_id: str, limit: int) -> list[tuple[str, Any]]:
        """Two columns of the newest rows, one decoded per row: no Event built (a LangGraph
        ``get_tuple`` reads the newest few checkpoints to find the latest)."""
        rows = await self._fetch(self.newest_payloads_sql(), session_id, limit)
        if heavy(rows, (1,)):  # as in _get_events
            return await asyncio.to_thread(_decoded_payloads, rows)
        return _decoded_payloads(rows)

    async def _latest_sequence(self, session_id: str) -> int:
        last = await self._fetchval(
            f"SELECT last_seq FROM {self._s}.counters WHERE session_id = $1", session_id
        )
        return 0 if last is None else int(last)

    # ------------------------------------------------------------ queries (contract 7)
    # One SQL text per combination of filters, so each gets its own prepared statement and
    # plan; every filter and keyset bound is a parameter. The *_sql methods are what the
    # plan tests EXPLAIN.

    def search_sessions_sql(
        self, q: SessionSearch, after: Position | None, limit: int | None
    ) -> tuple[str, list[Any]]:
        """``limit`` None: the count query instead of the page."""
        args: list[Any] = []
        where = _session_where(q, args)
        if limit is None:
            return f"SELECT count(*) FROM {self._s}.sessions{_where(where)}", args
        col = "updated_us" if q.order_by.startswith("updated") else "created_us"
        desc = descending(q.order_by)
        way = " DESC" if desc else ""
        if q.statuses is not None and len(q.statuses) > 1:
            # ``status = ANY`` cannot come off (status, col, id) in order: the planner reads
            # every match and sorts it (with real row widths and a skew of statuses it does).
            # One branch per status, each an ordered index range, merged: a page costs limit x
            # statuses, however many sessions match.
            args = []
            branches = []
            for status in dict.fromkeys(q.statuses):
                where = _session_where(dataclasses.replace(q, statuses=(status,)), args)
                _keyset(where, args, f"({col}, id)", after, desc)
                branches.append(
                    f"(SELECT doc, updated_us, {col} AS k, id FROM {self._s}.sessions"
                    f"{_where(where)} ORDER BY {col}{way}, id{way} LIMIT $L)"
                )
            args.append(limit)
            page = f"${len(args)}"
            return (
                f"SELECT doc, updated_us FROM ({' UNION ALL '.join(branches)}) AS u "
                f"ORDER BY k{way}, id{way} LIMIT {page}".replace("$L", page),
                args,
            )
        _keyset(where, args, f"({col}, id)", after, desc)
        args.append(limit)
        return (
            f"SELECT doc, updated_us FROM {self._s}.sessions{_where(where)} "
            f"ORDER BY {col}{way}, id{way} LIMIT ${len(args)}",
            args,
        )

    async def _search_sessions(
        self, q: SessionSearch, after: Position | None, limit: int
    ) -> list[Session]:
        sql, args = self.search_sessions_sql(q, after, limit)
        return [_session(r[0], r[1]) for r in await self._fetch(sql, *args)]

    async def _count_sessions(self, q: SessionSearch) -> int:
        sql, args = self.search_sessions_sql(q, None, None)
        return int(await self._fetchval(sql, *args))

    def search_runs_sql(
        self, q: RunSearch, after: Position | None, limit: int
    ) -> tuple[str, list[Any]]:
        args: list[Any] = []
        where = _run_where(
            self._s,
            args,
            RunFilter(
                q.session_id, q.agent_id, q.provider, q.started_after_us, q.started_before_us
            ),
        )
        if q.statuses is not None:
            where.append(_any("status", q.statuses, args))
        if q.min_tokens is not None:
            args.append(q.min_tokens)
            where.append(f"total_tokens >= ${len(args)}")
        col = "total_tokens" if q.order_by == "token_usage_desc" else "started_us"
        desc = descending(q.order_by)
        _keyset(where, args, f"({col}, id)", after, desc)
        args.append(limit)
        way = " DESC" if desc else ""
        return (
            f"SELECT doc FROM {self._s}.runs{_where(where)} "
            f"ORDER BY {col}{way}, id{way} LIMIT ${len(args)}",
            args,
        )

    async def _search_runs(self, q: RunSearch, after: Position | None, limit: int) -> list[Run]:
        sql, args = self.search_runs_sql(q, after, limit)
        return [decode_run(r[0]) for r in await self._fetch(sql, *args)]

    def run_groups_sql(self, f: RunFilter) -> tuple[str, list[Any]]:
        args: list[Any] = []
        where = _run_where(self._s, args, f)
        return (
            "SELECT provider, model, status, count(*), coalesce(sum(input_tokens), 0), "
            "coalesce(sum(output_tokens), 0), coalesce(sum(total_tokens), 0), count(cost_usd), "
            "coalesce(sum(cost_usd), 0), "
            "coalesce(sum(input_tokens) FILTER (WHERE cost_usd IS NULL), 0), "
            "coalesce(sum(output_tokens) FILTER (WHERE cost_usd IS NULL), 0) "
            f"FROM {self._s}.runs{_where(where)} GROUP BY provider, model, status",
            args,
        )

    async def _run_groups(self, f: RunFilter) -> list[RunGroup]:
        sql, args = self.run_groups_sql(f)
        groups = [
            RunGroup(
                r[0],
                r[1],
                r[2],
                int(r[3]),
                int(r[4]),
                int(r[5]),
                int(r[6]),
                int(r[7]),
                float(r[8]),
                int(r[9]),
                int(r[10]),
            )
            for r in await self._fetch(sql, *args)
        ]
        groups.sort(key=lambda g: (g.provider or "", g.model or "", g.status))
        return groups

    async def _event_stats(self, session_id: str) -> tuple[int, int | None, int | None]:
        row = await self._fetchrow(
            f"SELECT count(*), min(ts_us), max(ts_us) FROM {self._s}.events WHERE session_id = $1",
            session_id,
        )
        return int(row[0]), row[1], row[2]

    def search_events_sql(
        self, q: EventSearch, after: Position | None, limit: int | None
    ) -> tuple[str, list[Any]]:
        """``limit`` None: the count query instead of the page."""
        args: list[Any] = []
        where: list[str] = []
        for column, values in (
            ("session_id", q.session_ids),
            ("run_id", q.run_ids),
            ("type", q.types),
            ("provider", q.providers),
        ):
            if values is not None:
                where.append(_any(column, values, args))
        _bounds(where, args, "ts_us", q.since_us, q.until_us)
        if q.correlation_id is not None:
            args.append(q.correlation_id)
            where.append(f"correlation_id = ${len(args)}")
        if limit is None:
            return f"SELECT count(*) FROM {self._s}.events{_where(where)}", args
        col = "seq" if q.order_by == "sequence_asc" else "ts_us"
        desc = descending(q.order_by)
        _keyset(where, args, f"({col}, id)", after, desc)
        args.append(limit)
        way = " DESC" if desc else ""
        return (
            f"SELECT {_EVENT_COLUMNS} FROM {self._s}.events{_where(where)} "
            f"ORDER BY {col}{way}, id{way} LIMIT ${len(args)}",
            args,
        )

    async def _search_events(
        self, q: EventSearch, after: Position | None, limit: int
    ) -> list[Event]:
        sql, args = self.search_events_sql(q, after, limit)
        rows = await self._fetch(sql, *args)
        if heavy(rows):
            return await asyncio.to_thread(decode_page, rows)
        return decode_page(rows)

    async def _count_events(self, q: EventSearch) -> int:
        sql, args = self.search_events_sql(q, None, None)
        return int(await self._fetchval(sql, *args))

    # ------------------------------------------------------------ retention (contract 8)

    _SOFT_BATCH = 1000

    async def _soft_delete(
        self,
        cutoff_us: int,
        exempt_statuses: tuple[str, ...],
        exempt_tags: tuple[str, ...],
        now: datetime,
        dry_run: bool,
    ) -> int:
        """Due sessions are read a batch at a time, their docs rewritten here with
        ``deleted_at`` (the encoder's exact text), and marked by ``soft_delete``, which
        checks the condition again under the lock and skips any changed since (xmin)."""
        due = (
            "deleted_us IS NULL AND updated_us < $1 AND status <> ALL($2::text[]) "
            "AND NOT (tags && $3::text[])"
        )
        cond = [cutoff_us, list(exempt_statuses), list(exempt_tags)]
        if dry_run:
            found = await self._fetchval(
                f"SELECT count(*) FROM {self._s}.sessions WHERE {due}", *cond
            )
            return int(found)
        select = (  # along sessions_updated, from the last batch's position on
            f"SELECT id, doc, updated_us, xmin::text FROM {self._s}.sessions "
            f"WHERE {due} AND (updated_us, id) > ($4, $5) ORDER BY updated_us, id "
            f"LIMIT {self._SOFT_BATCH}"
        )
        mark = f"SELECT {self._s}.soft_delete($1, $2, $3, $4, $5, $6)"
        marked, last = 0, (-(1 << 63), "")
        while True:
            rows = await self._fetch(select, *cond, *last)
            if not rows:
                return marked
            docs = [encode_session(_session(r[1], r[2]).replace(deleted_at=now)) for r in rows]
            ids, xmins = [r[0] for r in rows], [r[3] for r in rows]
            work = functools.partial(self._fetchval, mark, ids, docs, xmins, *cond)
            marked += int(await self._retrying(work))
            last = (rows[-1][2], rows[-1][0])

    async def _deleted_before(self, cutoff_us: int) -> list[str]:
        rows = await self._fetch(
            f"SELECT id FROM {self._s}.sessions WHERE deleted_us < $1 ORDER BY id", cutoff_us
        )
        return [r[0] for r in rows]

    async def _delete_expired(self, ids: list[str], cutoff_us: int) -> list[str]:
        """A batch per call of ``delete_sessions``: one round trip, one transaction."""

        async def work() -> list[Any]:
            return await self._fetch(
                f"SELECT id FROM {self._s}.delete_sessions($1, $2)", ids, cutoff_us
            )

        return [r[0] for r in await self._retrying(work)]

    async def _sessions_over(self, max_events: int) -> list[str]:
        rows = await self._fetch(
            f"SELECT s.id FROM {self._s}.sessions AS s JOIN (SELECT session_id FROM "
            f"{self._s}.events GROUP BY session_id HAVING count(*) > $1) AS e "
            "ON e.session_id = s.id ORDER BY s.id",
            max_events,
        )
        return [r[0] for r in rows]

    async def _prune(
        self,
        session_id: str,
        max_events: int,
        first_types: tuple[str, ...],
        protected: frozenset[str],
        dry_run: bool,
    ) -> int:
        async def work() -> Any:
            return await self._fetchval(
                f"SELECT {self._s}.prune_events($1, $2, $3, $4, $5)",
                session_id,
                max_events,
                list(first_types),
                sorted(protected),
                dry_run,
            )

        return int(await self._retrying(work))

    async def _health(self) -> list[str]:
        s = self._s
        orphans = await self._fetch(
            f"SELECT r.id, r.session_id FROM {s}.runs AS r WHERE NOT EXISTS "
            f"(SELECT 1 FROM {s}.sessions AS x WHERE x.id = r.session_id) ORDER BY r.id"
        )
        behind = await self._fetch(
            f"SELECT e.session_id, coalesce(max(c.last_seq), 0), max(e.seq) "
            f"FROM {s}.events AS e LEFT JOIN {s}.counters AS c ON c.session_id = e.session_id "
            "GROUP BY e.session_id HAVING max(e.seq) > coalesce(max(c.last_seq), 0) "
            "ORDER BY e.session_id"
        )
        return [
            f"run {r[0]!r} belongs to session {r[1]!r}, which has no record" for r in orphans
        ] + [f"session {r[0]!r}: counter {r[1]} is below event {r[2]}" for r in behind]

    # ------------------------------------------------------------ LISTEN / NOTIFY

    async def _watch_start(self, session_id: str) -> None:
        """Return only once LISTEN is active: the base class queries right after, so an
        append committed later is sure to be notified, and one committed earlier is seen.
        With ``notify=poll``: once the session's baseline number is read (polling.py)."""
        if self._poller is not None:
            await self._poller.watch(session_id)
            return
        conn = self._listen_conn
        if conn is not None and not conn.is_closed():
            return
        async with self._listen_lock:
            conn = self._listen_conn
            if conn is not None and not conn.is_closed():
                return
            await self._listen()
        if self._listen_task is None or self._listen_task.done():
            self._listen_task = asyncio.create_task(self._supervise_listener())

    async def _watch_stop(self, session_id: str) -> None:
        if self._poller is not None:
            self._poller.unwatch(session_id)

    async def _latest_sequences(self, session_ids: list[str]) -> dict[str, int]:
        """What ``notify=poll`` reads each interval: one index probe per watched session."""
        rows = await self._fetch(
            f"SELECT session_id, last_seq FROM {self._s}.counters "
            "WHERE session_id = ANY($1::text[])",
            session_ids,
        )
        return {r[0]: int(r[1]) for r in rows}

    async def _what_came(self, moved: dict[str, tuple[int, int]]) -> dict[str, wakes.Wake | None]:
        """``notify=poll``: the wakes of the events a poll found, read from the index on
        (session_id, seq) with the small columns only; a session that got more than
        ``_DESCRIBE_MAX`` events since the last poll wakes all its readers instead."""
        small = {sid: r for sid, r in moved.items() if r[1] - r[0] <= _DESCRIBE_MAX}
        found: dict[str, wakes.Wake | None] = dict.fromkeys(moved)
        if small:
            rows = await self._fetch(
                f"SELECT e.session_id, e.type, e.run_id, e.ts_us, e.seq FROM {self._s}.events AS e "
                "JOIN unnest($1::text[], $2::bigint[], $3::bigint[]) AS m(sid, lo, hi) "
                "ON e.session_id = m.sid AND e.seq > m.lo AND e.seq <= m.hi",
                list(small),
                [r[0] for r in small.values()],
                [r[1] for r in small.values()],
            )
            got = wakes.wakes_of_rows((r[0], r[1], r[2], int(r[3]), int(r[4])) for r in rows)
            found.update((sid, got.get(sid)) for sid in small)
        return found

    async def _listen(self) -> None:
        cache = self._cache_options["statement_cache_size"]
        if self._listen_dsn is None and cache == 0 and not self._warned_pooler:
            # the usual sign of a transaction pooler, through which LISTEN hears nothing
            self._warned_pooler = True
            log.warning(
                "postgres store with statement_cache_size=0 listens through its pool's "
                "address: behind pgbouncer (transaction pooling) long-poll readers then "
                "wake only at their timeout. Give ?listen_url= (a direct server address) "
                "or ?notify=poll (docs/postgres.md, Behind pgbouncer)"
            )
        if self._from_pool_listener:
            assert self._pool is not None
            conn: Any = await self._pool.acquire(timeout=self._connect_timeout)
        else:
            conn = await self._connect(self._listen_dsn)
        try:
            await conn.add_listener(self._channel, self._on_notification)
        except BaseException:
            await self._release_listener(conn)
            raise
        conn.add_termination_listener(self._on_listener_lost)
        self._listen_conn = conn
        self._listen_lost.clear()
        # While no connection was listening, wake-ups may have been lost: every waiter
        # re-queries now that LISTEN is active again.
        self._waiters.notify_all()

    def _on_notification(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        """Each commit sends, per session, the bare id (for code before schema 4; ignored
        here) and a JSON wake saying what came, which is always well formed: a payload that
        does not parse is a bare id that happens to start with '{'."""
        if not isinstance(payload, str) or not payload.startswith("{"):
            return
        said = wakes.session_of(payload)
        if said is None:
            return
        doc = wakes.loads(payload)
        self._notify((said,), {said: doc})
        if said.startswith("#") and len(said) == 33:
            digest = said[1:]
            long_ids = [
                sid
                for sid in self._waiters.sessions()
                if len(sid) > _LONG_SESSION_ID and hashlib.md5(sid.encode()).hexdigest() == digest
            ]
            self._notify(long_ids, dict.fromkeys(long_ids, doc))

    def _on_listener_lost(self, conn: Any) -> None:
        if conn is self._listen_conn:
            self._listen_conn = None
            self._listen_lost.set()

    async def _release_listener(self, conn: Any) -> None:
        with contextlib.suppress(Exception):
            if self._from_pool_listener and self._pool is not None:
                await self._pool.release(conn, timeout=self._connect_timeout)
            else:
                await conn.close(timeout=self._connect_timeout)

    async def _drop_listener(self) -> None:
        conn, self._listen_conn = self._listen_conn, None
        if conn is not None:
            conn.remove_termination_listener(self._on_listener_lost)
            with contextlib.suppress(Exception):
                await conn.remove_listener(self._channel, self._on_notification)
            await self._release_listener(conn)

    async def _supervise_listener(self) -> None:
        """Reconnect the listener when it drops while readers wait; ping it now and then so
        a silently dead connection (no FIN from a vanished host) is noticed too."""
        retry = Retry(LISTEN_RECONNECT)
        while not self._closed:
            if self._listen_conn is None:
                if not self._waiters:
                    return  # nobody waits; the next reader's _watch_start reconnects
                try:
                    async with self._listen_lock:
                        if self._listen_conn is None:
                            await self._listen()
                    retry.reset()
                except Exception as exc:
                    log.warning("postgres listener reconnect failed: %s", redact(str(exc)))
                    await retry.pause()  # no bound: the loop ends with its last waiter
                continue
            try:
                await asyncio.wait_for(self._listen_lost.wait(), 15.0)
            except TimeoutError:
                conn = self._listen_conn
                if conn is None or not self._waiters:
                    continue
                try:
                    await conn.execute("SELECT 1", timeout=self._connect_timeout)
                except Exception:
                    conn.terminate()  # fires _on_listener_lost


def _listen_dsn(url: str) -> str:
    """``?listen_url=``: a postgresql:// URL of the server itself (not the pooler), with only
    the driver's options (the store's belong to the main URL)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.netloc:
        raise ValidationError(
            "listen_url must be a postgresql:// URL of the server itself (percent-encoded "
            f"inside the store URL), got {redact(url)!r}",
            details={"field": "listen_url"},
        )
    unknown = sorted(set(query_options(url)) - set(_DRIVER_OPTIONS))
    if unknown:
        raise ValidationError(
            f"listen_url takes only driver options ({', '.join(_DRIVER_OPTIONS)}); got "
            f"{', '.join(map(repr, unknown))}",
            details={"field": "listen_url"},
        )
    return url


def _transposed(record: Any) -> list[Any]:
    """The rows of an append_call / flush_call answer (one array per column)."""
    if record is None or record[0] is None:
        return []
    return list(zip(*record))


def _where(conditions: list[str]) -> str:
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def _any(column: str, values: tuple[str, ...], args: list[Any]) -> str:
    """One value as ``=`` (an equality the planner can walk an index in order for), several
    as ``= ANY``."""
    if len(values) == 1:
        args.append(values[0])
        return f"{column} = ${len(args)}"
    args.append(list(values))
    return f"{column} = ANY(${len(args)}::text[])"


def _bounds(
    where: list[str], args: list[Any], column: str, low: int | None, high: int | None
) -> None:
    if low is not None:
        args.append(low)
        where.append(f"{column} >= ${len(args)}")
    if high is not None:
        args.append(high)
        where.append(f"{column} <= ${len(args)}")


def _keyset(
    where: list[str], args: list[Any], key: str, after: Position | None, desc: bool
) -> None:
    """Strictly after ``after`` in the ordering: a row comparison an index range serves."""
    if after is not None:
        args += [after[0], after[1]]
        where.append(f"{key} {'<' if desc else '>'} (${len(args) - 1}, ${len(args)})")


def _session_where(q: SessionSearch, args: list[Any]) -> list[str]:
    where = [] if q.include_deleted else ["deleted_us IS NULL"]
    if q.agent_id is not None:
        args.append(q.agent_id)
        where.append(f"agent_id = ${len(args)}")
    if q.statuses is not None:
        where.append(_any("status", q.statuses, args))
    if q.tags:
        args.append(list(q.tags))
        where.append(f"tags @> ${len(args)}::text[]")
    _bounds(where, args, "created_us", q.created_after_us, q.created_before_us)
    _bounds(where, args, "updated_us", q.updated_after_us, q.updated_before_us)
    return where


def _run_where(s: str, args: list[Any], f: RunFilter) -> list[str]:
    where: list[str] = []
    if f.session_id is not None:
        args.append(f.session_id)
        where.append(f"session_id = ${len(args)}")
    if f.agent_id is not None:  # through the run's session record
        args.append(f.agent_id)
        where.append(f"session_id IN (SELECT id FROM {s}.sessions WHERE agent_id = ${len(args)})")
    if f.provider is not None:
        args.append(f.provider)
        where.append(f"provider = ${len(args)}")
    _bounds(where, args, "started_us", f.since_us, f.until_us)
    return where


_ARRAY_ARGS = (
    "$1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], "
    "$8::integer[], $9::text[], $10::text[]"
)
_ARRAY_ARGS_FROM_11 = (
    "$11::text[], $12::text[], $13::text[], $14::text[], $15::bigint[], $16::text[], "
    "$17::text[], $18::integer[], $19::text[], $20::text[]"
)


def _results(
    rows: list[EncodedEvent], record: Any, gather: bool
) -> tuple[list[Event], list[tuple[str, str, str | None, int, int]]]:
    """Put the function's answer (one array per column) back in input order. Rows this call
    wrote carry only their number (their content is what we sent); rows stored before carry
    theirs. With ``gather``, also what came, for this process's waiting readers."""
    out: list[Event | None] = [None] * len(rows)
    where = {row.id: i for i, row in enumerate(rows)} if len(rows) > 1 else None
    new: list[tuple[str, str, str | None, int, int]] = []
    for r in _transposed(record):
        i = 0 if where is None else where[r[2]]
        if r[1]:
            row = rows[i]
            out[i] = decode_event(row, r[0])
            if gather:
                new.append((row.session_id, row.type, row.run_id, row.timestamp_us, r[0]))
        else:
            out[i] = decode_event(r[2:], r[0])
    if any(e is None for e in out):
        raise StorageError("postgres append: the server did not return every event")
    return out, new  # type: ignore[return-value]


_INT_COLUMNS = (4, 7)  # timestamp_us, schema_version: the bigint[] and integer[] columns


def _array_literal(values: tuple[Any, ...], numbers: bool) -> str:
    if numbers:
        return "{" + ",".join(map(str, values)) + "}"
    return (
        "{"
        + ",".join(
            "NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
            for v in values
        )
        + "}"
    )


def _literal_args(rows: list[EncodedEvent], expected: int | None) -> list[Any]:
    """The event columns as PostgreSQL array literals, one text each, built in a thread: the
    driver then sends ten strings instead of encoding 10 x n values on the event loop."""
    columns = [_array_literal(c, i in _INT_COLUMNS) for i, c in enumerate(zip(*rows))]
    return columns if expected is None else [*columns, expected]


def _as_literals(sql: str) -> str:
    """``sql`` with its event array parameters taken as text literals (``$n::text::text[]``)."""
    for kind in ("text", "bigint", "integer"):
        sql = re.sub(rf"(\$\d+)::{kind}\[\]", rf"\1::text::{kind}[]", sql)
    return sql


def _decoded_payloads(rows: list[Any]) -> list[tuple[str, Any]]:
    return [(r[0], loads_stored(r[1])) for r in rows]
