"""SQLite session store: the embedded default, one database file shared by any number of processes.

How it is built, top to bottom:

* **Schema** (``MIGRATIONS``): events are clustered by ``(session_id, seq)`` in a WITHOUT ROWID
  table, so a page of a session's log is one contiguous range read; ``id`` has its own unique
  index for idempotency. A ``seqs`` table holds each session's last sequence number. A ``meta``
  table records the schema version; an older or missing schema is refused unless migrated.
* **Writes** go to one *writer thread* that owns the only write connection. It drains every
  queued request and runs them in ONE ``BEGIN IMMEDIATE`` transaction, each inside its own
  SAVEPOINT (group commit): one fsync serves many callers, yet a failing request rolls back only
  itself. ``BEGIN IMMEDIATE`` takes SQLite's single write lock up front, so numbering read inside
  the transaction cannot race another process; a busy database is retried, whole transaction
  at a time, before anyone sees "database is locked".
* **Reads** run on a small pool of reader threads, one connection each. In WAL mode readers
  never wait for the writer and always see every committed write.
* **Long-poll**: the writer wakes this process's readers after each commit. For commits made by
  other processes (or other store objects), a watcher thread polls ``PRAGMA data_version``
  every couple of milliseconds while anyone waits, and wakes the sessions whose counter moved.

Nothing blocking runs on the event loop: results come back through ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

from .base import EventQuery, SessionStoreBase
from .codec import DEFAULT_MAX_EVENT_BYTES, EncodedEvent, decode_event, decode_run, decode_session
from .errors import MigrationRequiredError, StorageError, StoreError, ValidationError
from .models import Event, Run, RunStatus, Session, SessionStatus, to_micros
from .urls import bool_option, number_options, query_options

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SQLiteSessionStore"]

T = TypeVar("T")

# ---------------------------------------------------------------------------------- schema

#: (version, statements). Each step runs once, in order, inside one write transaction.
MIGRATIONS: list[tuple[int, tuple[str, ...]]] = [
    (
        1,
        (
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            " WITHOUT ROWID",
            # Clustered by (session_id, seq): a page of one session is a contiguous range.
            """CREATE TABLE IF NOT EXISTS events (
                session_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                id TEXT NOT NULL UNIQUE,
                type TEXT NOT NULL,
                run_id TEXT,
                timestamp_us INTEGER NOT NULL,
                data TEXT NOT NULL,
                metadata TEXT NOT NULL,
                schema_version INTEGER NOT NULL,
                provider TEXT,
                correlation_id TEXT,
                PRIMARY KEY (session_id, seq)
            ) WITHOUT ROWID""",
            # The run_id and type filters of get_events cost what they return (contract 3.9).
            "CREATE INDEX IF NOT EXISTS events_by_run ON events (session_id, run_id, seq)"
            " WHERE run_id IS NOT NULL",
            "CREATE INDEX IF NOT EXISTS events_by_type ON events (session_id, type, seq)",
            "CREATE TABLE IF NOT EXISTS seqs (session_id TEXT PRIMARY KEY,"
            " last_seq INTEGER NOT NULL) WITHOUT ROWID",
            """CREATE TABLE IF NOT EXISTS sessions (
                id TEXT PRIMARY KEY,
                agent_id TEXT NOT NULL,
                status TEXT NOT NULL,
                created_at_us INTEGER NOT NULL,
                doc TEXT NOT NULL
            )""",
            # One index per filter combination, each ending in the list order (contract 3.3).
            "CREATE INDEX IF NOT EXISTS sessions_by_created ON sessions (created_at_us, id)",
            "CREATE INDEX IF NOT EXISTS sessions_by_status ON sessions (status, created_at_us, id)",
            "CREATE INDEX IF NOT EXISTS sessions_by_agent"
            " ON sessions (agent_id, created_at_us, id)",
            "CREATE INDEX IF NOT EXISTS sessions_by_agent_status"
            " ON sessions (agent_id, status, created_at_us, id)",
            """CREATE TABLE IF NOT EXISTS runs (
                id TEXT PRIMARY KEY,
                session_id TEXT NOT NULL,
                status TEXT NOT NULL,
                started_at_us INTEGER NOT NULL,
                doc TEXT NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS runs_by_session ON runs (session_id, started_at_us, id)",
            "CREATE INDEX IF NOT EXISTS runs_by_session_status"
            " ON runs (session_id, status, started_at_us, id)",
        ),
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]

# Columns in EncodedEvent order, then seq: what codec.decode_event reads.
_EVENT_COLUMNS = (
    "id, session_id, type, run_id, timestamp_us, data, metadata, schema_version, provider,"
    " correlation_id, seq"
)
_INSERT_EVENT = f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_EVENT_OR_SKIP = _INSERT_EVENT + " ON CONFLICT (id) DO NOTHING"
_EVENT_BY_ID = f"SELECT {_EVENT_COLUMNS} FROM events WHERE id = ?"
_LAST_SEQ = "SELECT last_seq FROM seqs WHERE session_id = ?"
_SAVE_SEQ = (
    "INSERT INTO seqs (session_id, last_seq) VALUES (?, ?)"
    " ON CONFLICT (session_id) DO UPDATE SET last_seq = excluded.last_seq"
)
_SAVE_SESSION = (
    "INSERT INTO sessions (id, agent_id, status, created_at_us, doc) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET agent_id = excluded.agent_id, status = excluded.status,"
    " created_at_us = excluded.created_at_us, doc = excluded.doc"
)
_SAVE_RUN = (
    "INSERT INTO runs (id, session_id, status, started_at_us, doc) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET session_id = excluded.session_id,"
    " status = excluded.status, started_at_us = excluded.started_at_us, doc = excluded.doc"
)
_ACTIVE_RUN = (
    "SELECT doc FROM runs WHERE session_id = ? AND status = 'running'"
    " ORDER BY started_at_us DESC, id DESC LIMIT 1"
)

_MAX_GROUP = 256  # requests per group commit: bounds the latency of the first one
_IN_CHUNK = 500  # ids per "WHERE id IN (...)" lookup, well under SQLite's variable limit
_WATCH_INTERVAL = 0.002  # seconds between data_version polls while someone long-polls
_DECODE_ASIDE = 64  # returned rows in a group above which decoding overlaps the commit

# SQLite primary result codes (exc.sqlite_errorcode & 0xFF).
_SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 3, 5, 6, 8
_SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_CONSTRAINT = 11, 13, 14, 19
_SQLITE_NOTADB = 26


def _code(exc: BaseException) -> int:
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def _is_busy(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and _code(exc) in (
        _SQLITE_BUSY,
        _SQLITE_LOCKED,
    )


def events_sql(q: EventQuery) -> tuple[str, list[Any]]:
    """The get_events statement for a query; module-level so tests can EXPLAIN it.

    With a run or type filter the planner would rather walk the session's primary-key range
    (no second lookup per row), which costs what the session holds, not what is returned;
    INDEXED BY keeps it on the filter's index (contract 3.9).
    """
    where = ["session_id = ?", "seq > ?"]
    params: list[Any] = [q.session_id, q.after or 0]
    if q.before is not None:
        where.append("seq < ?")
        params.append(q.before)
    if q.run_id is not None:
        where.append("run_id = ?")
        params.append(q.run_id)
    if q.type is not None:
        where.append("type = ?")
        params.append(q.type)
    if q.since_us is not None:
        where.append("timestamp_us >= ?")
        params.append(q.since_us)
    params.append(-1 if q.limit is None else q.limit)
    index = ""
    if q.run_id is not None:
        index = " INDEXED BY events_by_run"  # a run is usually the narrower filter
    elif q.type is not None:
        index = " INDEXED BY events_by_type"
    where_sql = " AND ".join(where)
    sql = f"SELECT {_EVENT_COLUMNS} FROM events{index} WHERE {where_sql} ORDER BY seq LIMIT ?"
    return sql, params


def sessions_sql(
    status: str | None, agent_id: str | None, limit: int | None, offset: int
) -> tuple[str, list[Any]]:
    """The list_sessions statement; each filter combination has an index in list order."""
    where: list[str] = []
    params: list[Any] = []
    if status is not None:
        where.append("status = ?")
        params.append(status)
    if agent_id is not None:
        where.append("agent_id = ?")
        params.append(agent_id)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    params += [-1 if limit is None else limit, offset]
    return f"SELECT doc FROM sessions{clause} ORDER BY created_at_us, id LIMIT ? OFFSET ?", params


# ---------------------------------------------------------------------------------- the writer


class _Rows(list[tuple[Any, ...]]):
    """A write's stored rows, in ``_EVENT_COLUMNS`` order: the EncodedEvent, then its seq."""


_Outcome = tuple["_Request", bool, Any]  # (request, succeeded, value or exception)


def _decode_outcomes(outcomes: list[_Outcome]) -> list[_Outcome]:
    """Turn every successful write's rows into Events; a row that cannot be decoded fails
    only its own request."""
    out: list[_Outcome] = []
    for req, ok, value in outcomes:
        if ok and type(value) is _Rows:
            try:
                value = [decode_event(row, row[10]) for row in value]
            except Exception as exc:
                ok, value = False, exc
        out.append((req, ok, value))
    return out


class _Request:
    """One caller's write, waiting in the writer's queue."""

    __slots__ = ("future", "in_tx", "loop", "work")

    def __init__(
        self,
        work: Callable[[Any], Any],
        future: asyncio.Future[Any],
        loop: asyncio.AbstractEventLoop,
        in_tx: bool,
    ) -> None:
        self.work = work
        self.future = future
        self.loop = loop
        self.in_tx = in_tx  # False: runs alone, outside any transaction (set-up)


_STOP = object()


class _Tx:
    """State shared by the requests of one group-commit transaction.

    Last sequence numbers are cached for this transaction only (other processes write between
    transactions). A request's changes stay in ``pending`` until it succeeds, so a request that
    rolls back to its savepoint leaves the cache as it found it.
    """

    __slots__ = ("conn", "pending", "seqs", "touched", "touched_pending")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.seqs: dict[str, int] = {}
        self.pending: dict[str, int] = {}
        self.touched: set[str] = set()
        self.touched_pending: set[str] = set()

    def last_seq(self, session_id: str) -> int:
        found = self.pending.get(session_id)
        if found is None:
            found = self.seqs.get(session_id)
        if found is None:
            row = self.conn.execute(_LAST_SEQ, (session_id,)).fetchone()
            found = self.seqs[session_id] = 0 if row is None else row[0]
        return found

    def advance(self, session_id: str, last: int) -> None:
        self.pending[session_id] = last
        self.touched_pending.add(session_id)

    def reset(self, session_id: str) -> None:
        self.pending[session_id] = 0

    def keep(self) -> None:
        self.seqs.update(self.pending)
        self.touched |= self.touched_pending
        self.pending.clear()
        self.touched_pending.clear()

    def discard(self) -> None:
        self.pending.clear()
        self.touched_pending.clear()


class SQLiteSessionStore(SessionStoreBase):
    """A SessionStore in one SQLite file (WAL mode), safe for many tasks and many processes."""

    backend_name = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        auto_migrate: bool = False,
        synchronous: str = "full",
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        busy_timeout: float = 30.0,
        readers: int = 4,
    ) -> None:
        super().__init__(max_event_bytes=max_event_bytes)
        raw = os.fspath(path)
        if type(raw) is not str or not raw:
            raise ValidationError("the SQLite path must be a non-empty str")
        if raw == ":memory:" or raw.startswith("file:"):
            raise ValidationError(
                "SQLiteSessionStore needs a file path (several connections share it); "
                "use memory:// for a throwaway store"
            )
        if type(auto_migrate) is not bool:
            raise ValidationError("auto_migrate must be True or False")
        sync = synchronous.lower() if isinstance(synchronous, str) else synchronous
        if sync not in ("full", "normal"):
            raise ValidationError(f"synchronous must be 'full' or 'normal', got {synchronous!r}")
        if not isinstance(busy_timeout, int | float) or not busy_timeout > 0:
            raise ValidationError("busy_timeout must be a positive number of seconds")
        if type(readers) is not int or readers < 1:
            raise ValidationError("readers must be a positive int")
        self.path = os.path.abspath(raw)
        self.auto_migrate = auto_migrate
        self.synchronous = sync
        self.busy_timeout = float(busy_timeout)
        self._reader_count = readers
        # writer
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._accepting = False
        self.transactions = 0  # group commits done, for monitoring
        self.requests = 0  # write requests they carried
        # readers
        self._pool: ThreadPoolExecutor | None = None
        self._decoder: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        # watcher (long-poll across processes)
        self._watch_lock = threading.Lock()
        self._watched: dict[str, int] = {}  # session -> last sequence the waiters have seen
        self._watch_wake = threading.Event()
        self._watch_stop_flag = False
        self._watcher: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteSessionStore:
        """``sqlite:///relative.db`` or ``sqlite:////absolute.db`` (SQLAlchemy's convention).

        Options: ``auto_migrate``, ``synchronous`` (full|normal), ``max_event_bytes``,
        ``busy_timeout`` (seconds), ``readers``.
        """
        parts = urlsplit(url)
        if parts.netloc:
            raise ValidationError(
                f"sqlite URL {url!r} has a host part; use sqlite:///relative.db "
                "or sqlite:////absolute/path.db"
            )
        path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        if not path:
            raise ValidationError(f"sqlite URL {url!r} names no file")
        opts = query_options(url)
        if "auto_migrate" in opts:
            options.setdefault("auto_migrate", bool_option(opts, "auto_migrate"))
        if "synchronous" in opts:
            options.setdefault("synchronous", opts.pop("synchronous"))
        number_options(
            opts, options, {"max_event_bytes": int, "busy_timeout": float, "readers": int}
        )
        if opts:
            raise ValidationError(f"unknown sqlite:// option(s): {', '.join(sorted(opts))}")
        return cls(path, **options)

    def __repr__(self) -> str:
        return f"SQLiteSessionStore({self.path!r})"

    # ------------------------------------------------------------ connections and errors

    def _connect(self, create: bool = False) -> sqlite3.Connection:
        mode = "rwc" if create else "rw"
        conn = sqlite3.connect(
            f"file:{quote(self.path)}?mode={mode}",
            uri=True,
            timeout=self.busy_timeout,
            isolation_level=None,  # we issue BEGIN / COMMIT ourselves
            check_same_thread=False,  # closed by whichever thread shuts the store down
            cached_statements=256,
        )
        conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
        return conn

    def _wrap(self, exc: BaseException, operation: str) -> StoreError:
        """Name the file and say what to check; the sqlite3 exception stays as __cause__."""
        if not isinstance(exc, sqlite3.Error | OSError):
            return super()._wrap(exc, operation)
        code = _code(exc)
        where = f"SQLite database {self.path}"
        if _is_busy(exc):
            text = (
                f"{where} stayed locked by other writers for more than {self.busy_timeout:g}s "
                f"during {operation}"
            )
        elif code in (_SQLITE_NOTADB, _SQLITE_CORRUPT):
            text = f"{self.path} is not a SQLite database, or it is corrupt ({exc})"
        elif code in (_SQLITE_READONLY, _SQLITE_CANTOPEN, _SQLITE_PERM) or isinstance(
            exc, PermissionError
        ):
            text = (
                f"cannot open or write {where} ({exc}): the file and its directory must exist "
                "and be writable (WAL mode keeps -wal and -shm files beside the database)"
            )
        elif code == _SQLITE_FULL:
            text = f"{where} is full: the disk or the file system quota is exhausted ({exc})"
        elif isinstance(exc, sqlite3.IntegrityError) or code == _SQLITE_CONSTRAINT:
            text = f"{where}: a constraint failed during {operation} ({exc})"
        else:
            text = f"{where}: {operation} failed: {type(exc).__name__}: {exc}"
        details: dict[str, Any] = {"operation": operation, "path": self.path}
        name = getattr(exc, "sqlite_errorname", None)
        if name:
            details["sqlite_error"] = name
        return StorageError(text, details=details)

    def _retry_busy(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` again while SQLite reports busy, within the busy timeout.

        SQLite's own busy handler waits inside most calls; this covers the cases where it
        returns SQLITE_BUSY at once (a WAL being recovered, a lock upgrade that would deadlock).
        """
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.001
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    # ------------------------------------------------------------ schema versions

    def _read_version(self, conn: sqlite3.Connection) -> int | None:
        """The recorded schema version; None when the file has no schema at all."""
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            raise
        return None if row is None else int(row[0])

    def _migration_required(self, found: int | None) -> MigrationRequiredError:
        what = "has no schema" if found is None else f"has schema version {found}"
        return MigrationRequiredError(
            f"the SQLite database {self.path} {what}; this code needs version "
            f"{SCHEMA_VERSION}. Run `agent-session-store migrate sqlite:///{self.path}`, "
            "or open it with auto_migrate=True (URL option ?auto_migrate=true)",
            details={"path": self.path, "found": found, "needed": SCHEMA_VERSION},
        )

    def _too_new(self, found: int) -> StorageError:
        return StorageError(
            f"the SQLite database {self.path} has schema version {found}, newer than the "
            f"{SCHEMA_VERSION} this code knows: upgrade agent-session-store",
            details={"path": self.path, "found": found, "needed": SCHEMA_VERSION},
        )

    def _migrate_conn(self, conn: sqlite3.Connection) -> None:
        """Apply the missing steps in one write transaction: safe when processes race."""
        self._use_wal(conn)

        def attempt() -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                found = self._read_version(conn) or 0  # again, now that we hold the write lock
                if found > SCHEMA_VERSION:
                    raise self._too_new(found)
                for version, statements in MIGRATIONS:
                    if version > found:
                        for statement in statements:
                            conn.execute(statement)
                if found < SCHEMA_VERSION:
                    conn.execute(
                        "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
                        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        (str(SCHEMA_VERSION),),
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        self._retry_busy(attempt)

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        mode = self._retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
        if mode is None or str(mode[0]).lower() != "wal":
            raise StorageError(
                f"the SQLite database {self.path} cannot use WAL mode "
                f"(journal mode stays {mode[0] if mode else None!r}); "
                "WAL needs a local file system with shared-memory support",
                details={"path": self.path},
            )

    async def migrate(self) -> None:
        """Create or upgrade the schema (the explicit step; ``auto_migrate`` does it on open)."""
        try:
            await asyncio.to_thread(self._migrate_file)
        except StoreError:
            raise
        except Exception as exc:
            raise self._wrap(exc, "migrate") from exc

    def _migrate_file(self) -> None:
        conn = self._connect(create=True)
        try:
            self._migrate_conn(conn)
        finally:
            conn.close()

    # ------------------------------------------------------------ lifecycle

    async def _open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = queue.SimpleQueue()
        self._writer = threading.Thread(
            target=self._writer_main, name="agent-session-store-sqlite-writer", daemon=True
        )
        self._pool = ThreadPoolExecutor(
            self._reader_count, thread_name_prefix="agent-session-store-sqlite-reader"
        )
        self._decoder = ThreadPoolExecutor(
            1, thread_name_prefix="agent-session-store-sqlite-decode"
        )
        self._accepting = True
        self._watch_stop_flag = False
        self._writer.start()
        try:
            await self._submit(self._set_up, in_tx=False)
        except BaseException:
            await self._shut_down()
            raise

    def _set_up(self, _: _Tx | None) -> None:
        """Runs first on the writer thread: open the write connection and check the schema."""
        if not self.auto_migrate and not os.path.exists(self.path):
            raise self._migration_required(None)
        conn = self._conn = self._connect(create=self.auto_migrate)
        found = self._read_version(conn)
        if found is not None and found > SCHEMA_VERSION:
            raise self._too_new(found)
        if found is None or found < SCHEMA_VERSION:
            if not self.auto_migrate:
                raise self._migration_required(found)
            self._migrate_conn(conn)
        self._use_wal(conn)

    async def _close(self) -> None:
        await self._shut_down()

    async def _shut_down(self) -> None:
        self._accepting = False
        with self._watch_lock:
            self._watch_stop_flag = True
            self._watched.clear()
        self._watch_wake.set()
        self._queue.put(_STOP)
        await asyncio.to_thread(self._join_threads)

    def _join_threads(self) -> None:
        if self._writer is not None:
            self._writer.join()
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None
        for pool in (self._pool, self._decoder):
            if pool is not None:
                pool.shutdown(wait=True)
        for conn in self._reader_conns:
            conn.close()
        self._reader_conns.clear()

    # ------------------------------------------------------------ the writer thread

    def _submit(self, work: Callable[[Any], Any], in_tx: bool = True) -> asyncio.Future[Any]:
        """Queue a write for the writer thread; the future gets its result after the commit."""
        if not self._accepting:
            raise StorageError(f"the sqlite store {self.path} is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Request(work, future, loop, in_tx))
        return future

    def _writer_main(self) -> None:
        take = self._queue.get
        take_now = self._queue.get_nowait
        stop = False
        while not stop:
            item = take()
            if item is _STOP:
                break
            group: list[_Request] = [item]
            while len(group) < _MAX_GROUP:
                try:
                    item = take_now()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                group.append(item)
            self._run(group)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _run(self, group: list[_Request]) -> None:
        """Run a drained batch in order: consecutive transactional requests share a commit."""
        start = 0
        while start < len(group):
            if not group[start].in_tx:
                req = group[start]
                try:
                    outcome: _Outcome = (req, True, req.work(None))
                except BaseException as exc:
                    outcome = (req, False, exc)
                self._deliver([outcome], ())
                start += 1
                continue
            end = start
            while end < len(group) and group[end].in_tx:
                end += 1
            self._group_commit(group[start:end])
            start = end

    def _group_commit(self, group: list[_Request]) -> None:
        conn = self._conn
        if conn is None:  # set-up failed; nothing can be written
            err = StorageError(f"the sqlite store {self.path} is not open")
            self._deliver([(r, False, err) for r in group], ())
            return
        try:
            outcomes, tx = self._retry_busy(partial(self._transaction, conn, group))
        except BaseException as exc:
            self._deliver([(r, False, exc) for r in group], ())
            return
        self.transactions += 1
        self.requests += len(group)
        if tx.touched and self._watched:
            # Our own commits are announced directly; keep the watcher from announcing them again.
            with self._watch_lock:
                for sid in tx.touched:
                    if sid in self._watched:
                        self._watched[sid] = tx.seqs[sid]
        self._deliver(outcomes, tx.touched)

    def _transaction(
        self, conn: sqlite3.Connection, group: list[_Request]
    ) -> tuple[list[_Outcome], _Tx]:
        """One attempt at the group's transaction; raises only if the whole group failed."""
        alone = len(group) == 1  # no savepoint needed: its failure is the transaction's
        outcomes: list[_Outcome] = []
        tx = _Tx(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            for req in group:
                if not alone:
                    conn.execute("SAVEPOINT request")
                try:
                    value = req.work(tx)
                except Exception as exc:
                    if alone or _is_busy(exc):
                        raise
                    conn.execute("ROLLBACK TO request")
                    conn.execute("RELEASE request")
                    tx.discard()
                    outcomes.append((req, False, exc))
                    continue
                if not alone:
                    conn.execute("RELEASE request")
                tx.keep()
                outcomes.append((req, True, value))
            # Decoding the stored rows into Events is pure CPU; for a large group it runs on
            # the decoder thread while COMMIT waits for the disk (which releases the GIL).
            rows = sum(len(v) for _, ok, v in outcomes if ok and type(v) is _Rows)
            aside = None
            if rows >= _DECODE_ASIDE and self._decoder is not None:
                aside = self._decoder.submit(_decode_outcomes, outcomes)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return (_decode_outcomes(outcomes) if aside is None else aside.result()), tx

    def _deliver(self, outcomes: list[_Outcome], touched: Iterable[str]) -> None:
        """Hand results to each caller's event loop: one wake-up per loop, not per caller."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].loop, []).append(outcome)
        sessions = list(touched)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(self._resolve, items, sessions)
            sessions = []

    def _resolve(self, outcomes: list[_Outcome], sessions: list[str]) -> None:
        for req, ok, value in outcomes:
            if not req.future.done():  # a cancelled caller
                if ok:
                    req.future.set_result(value)
                else:
                    req.future.set_exception(value)
        if sessions and self._waiters:
            self._notify(sessions)

    # ------------------------------------------------------------ write work (writer thread)

    def _insert(self, tx: _Tx, rows: list[EncodedEvent]) -> _Rows:
        """Number and store rows (ids unique in the list); ids already stored keep their event.

        Returns the stored rows, numbered; they become Events once the group has committed.
        """
        conn = tx.conn
        if len(rows) == 1:
            row = rows[0]
            sid = row[1]
            seq = tx.last_seq(sid) + 1
            numbered = (*row, seq)
            if conn.execute(_INSERT_EVENT_OR_SKIP, numbered).rowcount:
                conn.execute(_SAVE_SEQ, (sid, seq))
                tx.advance(sid, seq)
                return _Rows((numbered,))
            return _Rows((conn.execute(_EVENT_BY_ID, (row[0],)).fetchone(),))
        # Optimistic: number every row and insert; if an id was already stored the count is
        # short, and we undo and redo with the stored ids set aside.
        conn.execute("SAVEPOINT batch")
        out, last = self._number(tx, rows)
        if conn.executemany(_INSERT_EVENT_OR_SKIP, out).rowcount == len(rows):
            conn.execute("RELEASE batch")
        else:
            conn.execute("ROLLBACK TO batch")
            conn.execute("RELEASE batch")
            stored = self._stored_rows(conn, [r[0] for r in rows])
            new, last = self._number(tx, [r for r in rows if r[0] not in stored])
            conn.executemany(_INSERT_EVENT, new)
            stored.update((r[0], r) for r in new)
            out = _Rows(stored[r[0]] for r in rows)
        conn.executemany(_SAVE_SEQ, last.items())
        for sid, seq in last.items():
            tx.advance(sid, seq)
        return out

    @staticmethod
    def _number(tx: _Tx, rows: list[EncodedEvent]) -> tuple[_Rows, dict[str, int]]:
        """Each session's rows get its next numbers in input order (contract 3.8.3)."""
        last: dict[str, int] = {}
        out = _Rows()
        for row in rows:
            sid = row[1]
            n = last.get(sid)
            n = (tx.last_seq(sid) if n is None else n) + 1
            last[sid] = n
            out.append((*row, n))
        return out, last

    @staticmethod
    def _stored_rows(conn: sqlite3.Connection, ids: list[str]) -> dict[str, tuple[Any, ...]]:
        found: dict[str, tuple[Any, ...]] = {}
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = ids[i : i + _IN_CHUNK]
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE id IN ({marks})"
            for r in conn.execute(sql, chunk):
                found[r[0]] = r
        return found

    @staticmethod
    def _put_session(conn: sqlite3.Connection, session: Session, doc: str) -> None:
        conn.execute(
            _SAVE_SESSION,
            (
                session.id,
                session.agent_id,
                session.status.value,
                to_micros(session.created_at),
                doc,
            ),
        )

    @staticmethod
    def _put_run(conn: sqlite3.Connection, run: Run, doc: str) -> None:
        conn.execute(
            _SAVE_RUN, (run.id, run.session_id, run.status.value, to_micros(run.started_at), doc)
        )

    def _flush_work(
        self,
        session: Session,
        session_doc: str,
        run: Run,
        run_doc: str,
        rows: list[EncodedEvent],
        tx: _Tx,
    ) -> _Rows:
        self._put_session(tx.conn, session, session_doc)
        self._put_run(tx.conn, run, run_doc)
        return self._insert(tx, rows) if rows else _Rows()

    @staticmethod
    def _delete_work(session_id: str, tx: _Tx) -> None:
        conn = tx.conn
        conn.execute("DELETE FROM events WHERE session_id = ?", (session_id,))
        conn.execute("DELETE FROM runs WHERE session_id = ?", (session_id,))
        conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
        conn.execute("DELETE FROM seqs WHERE session_id = ?", (session_id,))
        tx.reset(session_id)

    # ------------------------------------------------------------ write primitives

    async def _save_session(self, session: Session, doc: str) -> None:
        await self._submit(lambda tx: self._put_session(tx.conn, session, doc))

    async def _save_run(self, run: Run, doc: str) -> None:
        await self._submit(lambda tx: self._put_run(tx.conn, run, doc))

    async def _delete_session(self, session_id: str) -> None:
        await self._submit(partial(self._delete_work, session_id))

    async def _append(self, rows: list[EncodedEvent]) -> list[Event]:
        stored: list[Event] = await self._submit(partial(self._insert, rows=rows))
        return stored

    async def _flush(
        self, session: Session, session_doc: str, run: Run, run_doc: str, rows: list[EncodedEvent]
    ) -> list[Event]:
        stored: list[Event] = await self._submit(
            partial(self._flush_work, session, session_doc, run, run_doc, rows)
        )
        return stored

    # ------------------------------------------------------------ reads (reader threads)

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            self._reader_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._pool is None or not self._accepting:
            raise StorageError(f"the sqlite store {self.path} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._read_now, fn)

    def _read_now(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._reader()
        return self._retry_busy(lambda: fn(conn))

    async def _get_session(self, session_id: str) -> Session | None:
        def read(conn: sqlite3.Connection) -> Session | None:
            row = conn.execute("SELECT doc FROM sessions WHERE id = ?", (session_id,)).fetchone()
            return None if row is None else decode_session(row[0])

        return await self._read(read)

    async def _list_sessions(
        self,
        status: SessionStatus | None,
        agent_id: str | None,
        limit: int | None,
        offset: int,
    ) -> list[Session]:
        sql, params = sessions_sql(
            None if status is None else status.value, agent_id, limit, offset
        )
        return await self._read(
            lambda conn: [decode_session(r[0]) for r in conn.execute(sql, params)]
        )

    async def _get_run(self, run_id: str) -> Run | None:
        def read(conn: sqlite3.Connection) -> Run | None:
            row = conn.execute("SELECT doc FROM runs WHERE id = ?", (run_id,)).fetchone()
            return None if row is None else decode_run(row[0])

        return await self._read(read)

    async def _list_runs(
        self, session_id: str, status: RunStatus | None, limit: int | None
    ) -> list[Run]:
        sql = "SELECT doc FROM runs WHERE session_id = ?"
        params: list[Any] = [session_id]
        if status is not None:
            sql += " AND status = ?"
            params.append(status.value)
        sql += " ORDER BY started_at_us, id LIMIT ?"
        params.append(-1 if limit is None else limit)
        return await self._read(lambda conn: [decode_run(r[0]) for r in conn.execute(sql, params)])

    async def _get_active_run(self, session_id: str) -> Run | None:
        def read(conn: sqlite3.Connection) -> Run | None:
            row = conn.execute(_ACTIVE_RUN, (session_id,)).fetchone()
            return None if row is None else decode_run(row[0])

        return await self._read(read)

    async def _get_events(self, query: EventQuery) -> list[Event]:
        if self._closed:  # a long-poll reader released by close() asks once more
            return []
        sql, params = events_sql(query)
        return await self._read(
            lambda conn: [decode_event(r, r[10]) for r in conn.execute(sql, params)]
        )

    async def _latest_sequence(self, session_id: str) -> int:
        return await self._read(partial(_last_seq, session_id=session_id))

    # ------------------------------------------------------------ long-poll across processes

    async def _watch_start(self, session_id: str) -> None:
        # The baseline is read before this returns, and the reader queries only after, so a
        # commit made elsewhere after the query always moves the counter past the baseline.
        baseline = await self._read(partial(_last_seq, session_id=session_id))
        with self._watch_lock:
            if self._watch_stop_flag:
                return
            self._watched[session_id] = baseline
            if self._watcher is None:
                self._watcher = threading.Thread(
                    target=self._watch_main, name="agent-session-store-sqlite-watcher", daemon=True
                )
                self._watcher.start()
        self._watch_wake.set()

    async def _watch_stop(self, session_id: str) -> None:
        with self._watch_lock:
            self._watched.pop(session_id, None)

    def _watch_main(self) -> None:
        """Poll ``PRAGMA data_version`` (it changes when another connection commits) while
        sessions are watched; then compare only the watched sessions' counters."""
        loop = self._loop
        assert loop is not None
        conn: sqlite3.Connection | None = None
        last_version = None
        try:
            while True:
                self._watch_wake.clear()
                with self._watch_lock:
                    if self._watch_stop_flag:
                        return
                    sids = list(self._watched)
                if not sids:
                    last_version = None
                    self._watch_wake.wait()
                    continue
                try:
                    if conn is None:
                        conn = self._connect()
                        conn.execute("PRAGMA query_only = ON")
                    version = conn.execute("PRAGMA data_version").fetchone()[0]
                    changed = [] if version == last_version else self._moved(conn, sids)
                    last_version = version
                except sqlite3.Error:
                    # Wake everyone rather than risk a lost wake-up: each reader re-queries and
                    # waits again if nothing is there. Then start afresh on a new connection.
                    changed, last_version = sids, None
                    if conn is not None:
                        conn.close()
                        conn = None
                    time.sleep(0.05)
                if changed:
                    loop.call_soon_threadsafe(self._notify, changed)
                self._watch_wake.wait(_WATCH_INTERVAL)
        except RuntimeError:  # the event loop is closed: nobody is waiting any more
            pass
        finally:
            if conn is not None:
                conn.close()

    def _moved(self, conn: sqlite3.Connection, sids: list[str]) -> list[str]:
        current = dict.fromkeys(sids, 0)
        for i in range(0, len(sids), _IN_CHUNK):
            chunk = sids[i : i + _IN_CHUNK]
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT session_id, last_seq FROM seqs WHERE session_id IN ({marks})"
            current.update(conn.execute(sql, chunk).fetchall())
        changed = []
        with self._watch_lock:
            for sid, seq in current.items():
                seen = self._watched.get(sid)
                if seen is not None and seen != seq:
                    self._watched[sid] = seq
                    changed.append(sid)
        return changed


def _last_seq(conn: sqlite3.Connection, session_id: str) -> int:
    row = conn.execute(_LAST_SEQ, (session_id,)).fetchone()
    return 0 if row is None else int(row[0])
