"""SQLiteSessionStore: the operations, each handed to the writer or to the reader pool."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import unquote, urlsplit

from ..base import EventQuery, NumberedRow, SessionStoreBase
from ..codec import DEFAULT_MAX_EVENT_BYTES, EncodedEvent, decode_session
from ..errors import StorageError, StoreError, ValidationError
from ..models import Event, Run, RunStatus, Session, SessionStatus, iso, to_micros
from ..ports import EventPageJSON
from ..query import EventSearch, Position, RunFilter, RunGroup, RunSearch, SessionSearch
from ..urls import bool_option, number_options, query_options
from ..wakes import Wake
from . import queries, reads, schema, writes
from . import watcher as watchers
from .connection import Database
from .readers import ReaderPool, default_readers
from .writer import Tx, Writer


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
        readers: int | None = None,
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
        if readers is None:
            readers = default_readers()
        elif type(readers) is not int or readers < 1:
            raise ValidationError("readers must be a positive int")
        self.path = os.path.abspath(raw)
        self.auto_migrate = auto_migrate
        self.synchronous = sync
        self.busy_timeout = float(busy_timeout)
        self._db = Database(self.path, sync, self.busy_timeout)
        self._writer = Writer(
            self._db,
            partial(schema.open_checked, self._db, auto_migrate),
            self._wake,
            self._seen,
            writes.finish,
            self._committing,
        )
        self._readers = ReaderPool(self._db, readers)
        self._watcher: watchers.FileWatcher | None = None  # shared by this file's stores

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

    @property
    def transactions(self) -> int:
        """Group commits done, for monitoring."""
        return self._writer.transactions

    @property
    def requests(self) -> int:
        """Write requests those commits carried."""
        return self._writer.requests

    def _wrap(self, exc: BaseException, operation: str) -> StoreError:
        if isinstance(exc, sqlite3.Error | OSError):
            return self._db.error(exc, operation)
        return super()._wrap(exc, operation)

    # ------------------------------------------------------------ schema and lifecycle

    async def migrate(self) -> None:
        """Create or upgrade the schema (the explicit step; ``auto_migrate`` does it on open)."""
        try:
            await asyncio.to_thread(schema.migrate_file, self._db)
        except StoreError:
            raise
        except Exception as exc:
            raise self._wrap(exc, "migrate") from exc

    async def _open(self) -> None:
        self._watcher = watchers.acquire(self._db)
        self._readers.start()
        try:
            await self._writer.start()
        except BaseException:
            await self._shut_down()
            raise

    async def _close(self) -> None:
        await self._shut_down()

    async def _shut_down(self) -> None:
        self._readers.stop()
        watcher, self._watcher = self._watcher, None
        last = None if watcher is None else watchers.release(watcher, self)
        self._writer.stop()
        await asyncio.to_thread(self._join_threads, last)

    def _join_threads(self, watcher_thread: threading.Thread | None) -> None:
        self._writer.join()
        if watcher_thread is not None:
            watcher_thread.join()
        self._readers.join()

    # ------------------------------------------------------------ writes

    async def _save_session(self, session: Session, doc: str) -> None:
        await self._writer.submit(partial(writes.put_session, session=session, doc=doc))

    async def _save_run(self, run: Run, doc: str) -> None:
        await self._writer.submit(partial(writes.save_run, run=run, doc=doc))

    async def _delete_session(self, session_id: str) -> None:
        await self._writer.submit(partial(writes.delete_session, session_id=session_id))

    async def _append(self, rows: list[EncodedEvent], expected: int | None = None) -> list[Event]:
        work = partial(writes.append, rows=rows, expected=expected)
        stored: list[Event] = await self._writer.submit(work)
        return stored

    async def _flush(
        self,
        session: Session,
        session_doc: str,
        run: Run,
        run_doc: str,
        rows: list[EncodedEvent],
        expected: int | None = None,
    ) -> list[Event]:
        work = partial(
            writes.flush,
            session=session,
            session_doc=session_doc,
            run=run,
            run_doc=run_doc,
            rows=rows,
            expected=expected,
        )
        stored: list[Event] = await self._writer.submit(work)
        return stored

    async def _import(
        self,
        session_id: str,
        session_doc: str | None,
        runs: list[tuple[Run, str]],
        rows: list[NumberedRow],
        latest_sequence: int,
    ) -> tuple[int, int]:
        work = partial(
            writes.import_rows,
            session_id=session_id,
            session_doc=session_doc,
            session=None if session_doc is None else decode_session(session_doc),
            runs=runs,
            rows=rows,
            latest_sequence=latest_sequence,
        )
        counts: tuple[int, int] = await self._writer.submit(work)
        return counts

    # ------------------------------------------------------------ reads

    async def _get_session(self, session_id: str) -> Session | None:
        return await self._readers.read(partial(reads.get_session, session_id=session_id))

    async def _list_sessions(
        self,
        status: SessionStatus | None,
        agent_id: str | None,
        limit: int | None,
        offset: int,
    ) -> list[Session]:
        st = None if status is None else status.value
        return await self._readers.read(
            partial(reads.list_sessions, status=st, agent_id=agent_id, limit=limit, offset=offset)
        )

    async def _get_run(self, run_id: str) -> Run | None:
        return await self._readers.read(partial(reads.get_run, run_id=run_id))

    async def _list_runs(
        self, session_id: str, status: RunStatus | None, limit: int | None
    ) -> list[Run]:
        st = None if status is None else status.value
        return await self._readers.read(
            partial(reads.list_runs, session_id=session_id, status=st, limit=limit)
        )

    async def _get_active_run(self, session_id: str) -> Run | None:
        return await self._readers.read(partial(reads.get_active_run, session_id=session_id))

    async def _get_events(self, query: EventQuery) -> list[Event]:
        if self._closed:  # a long-poll reader released by close() asks once more
            return []
        got = await self._readers.read(partial(reads.fetch_events, query=query))
        # A bounded page comes packed and is decoded here: Python work on a reader thread
        # would contend for the GIL with this loop (reads.fetch_events).
        return reads.unpack_events(got, query.desc) if isinstance(got, str) else got

    async def _events_json(self, query: EventQuery) -> EventPageJSON | None:
        if self._closed:
            return None  # as _get_events: get_events answers
        got = await self._readers.read(partial(reads.fetch_events_json, query=query))
        if got is None or isinstance(got, EventPageJSON):
            return got
        return reads.page_json(got, query.desc)

    async def _newest_payloads(self, session_id: str, limit: int) -> list[tuple[str, Any]]:
        return await self._readers.read(
            partial(reads.newest_payloads, session_id=session_id, limit=limit)
        )

    async def _latest_sequence(self, session_id: str) -> int:
        return await self._readers.read(partial(schema.last_seq, session_id=session_id))

    # ------------------------------------------------------------ queries (contract 7)

    async def _search_sessions(
        self, q: SessionSearch, after: Position | None, limit: int
    ) -> list[Session]:
        return await self._readers.read(
            partial(queries.search_sessions, q=q, after=after, limit=limit)
        )

    async def _count_sessions(self, q: SessionSearch) -> int:
        return await self._readers.read(partial(queries.count_sessions, q=q))

    async def _search_runs(self, q: RunSearch, after: Position | None, limit: int) -> list[Run]:
        return await self._readers.read(partial(queries.search_runs, q=q, after=after, limit=limit))

    async def _run_groups(self, f: RunFilter) -> list[RunGroup]:
        return await self._readers.read(partial(queries.run_groups, f=f))

    async def _event_stats(self, session_id: str) -> tuple[int, int | None, int | None]:
        return await self._readers.read(partial(queries.event_stats, session_id=session_id))

    async def _session_stats_parts(
        self, session_id: str
    ) -> tuple[list[RunGroup], tuple[int, int | None, int | None], int] | None:
        """All of get_session_stats in one reader call: each hand-off to a reader thread
        costs 20-40 us of CPU, more than these indexed lookups (bench/server.py)."""
        return await self._readers.read(partial(queries.session_stats_parts, session_id=session_id))

    async def _search_events(
        self, q: EventSearch, after: Position | None, limit: int
    ) -> list[Event]:
        return await self._readers.read(
            partial(queries.search_events, q=q, after=after, limit=limit)
        )

    async def _count_events(self, q: EventSearch) -> int:
        return await self._readers.read(partial(queries.count_events, q=q))

    # ------------------------------------------------------------ retention (contract 8)

    async def _soft_delete(
        self,
        cutoff_us: int,
        exempt_statuses: tuple[str, ...],
        exempt_tags: tuple[str, ...],
        now: datetime,
        dry_run: bool,
    ) -> int:
        if dry_run:
            return await self._readers.read(
                partial(
                    queries.count_expired,
                    cutoff_us=cutoff_us,
                    exempt_statuses=exempt_statuses,
                    exempt_tags=exempt_tags,
                )
            )
        work = partial(
            writes.soft_delete,
            cutoff_us=cutoff_us,
            exempt_statuses=exempt_statuses,
            exempt_tags=exempt_tags,
            now_us=to_micros(now),
            now_iso=iso(now),
        )
        marked: int = await self._writer.submit(work)
        return marked

    async def _deleted_before(self, cutoff_us: int) -> list[str]:
        return await self._readers.read(partial(queries.deleted_before, cutoff_us=cutoff_us))

    async def _delete_expired(self, session_ids: list[str], cutoff_us: int) -> list[str]:
        """The batch's deletes queued together, so the writer commits them in one
        transaction (each still in its own savepoint)."""
        await asyncio.gather(*(self._delete_session(sid) for sid in session_ids))
        return session_ids

    async def _sessions_over(self, max_events: int) -> list[str]:
        return await self._readers.read(partial(queries.sessions_over, max_events=max_events))

    async def _prune(
        self,
        session_id: str,
        max_events: int,
        first_types: tuple[str, ...],
        protected: frozenset[str],
        dry_run: bool,
    ) -> int:
        if dry_run:
            victims = await self._readers.read(
                partial(
                    queries.prune_victims,
                    session_id=session_id,
                    max_events=max_events,
                    first_types=first_types,
                    protected=protected,
                )
            )
            return len(victims)
        work = partial(
            writes.prune,
            session_id=session_id,
            max_events=max_events,
            first_types=first_types,
            protected=protected,
        )
        pruned: int = await self._writer.submit(work)
        return pruned

    async def _health(self) -> list[str]:
        return await self._readers.read(queries.health)

    # ------------------------------------------------------------ long-poll across processes

    async def _watch_start(self, session_id: str) -> None:
        # The baseline is read before this returns, and the reader queries only after, so a
        # commit made elsewhere after the query always moves the counter past the baseline.
        # A reader that was starting when the store closed gets [] from its query, not an error.
        try:
            baseline = await self._readers.read(partial(schema.last_seq, session_id=session_id))
        except StorageError:
            if self._closed:
                return
            raise
        if self._watcher is None:  # closed meanwhile
            return
        self._watcher.watch(self, session_id, baseline, self._wake, asyncio.get_running_loop())

    async def _watch_stop(self, session_id: str) -> None:
        if self._watcher is not None:
            self._watcher.unwatch(self, session_id)

    def _wake(self, wakes: dict[str, Wake | None]) -> None:
        """Wake readers of these sessions with what each got (``None``: unknown)."""
        self._notify(wakes, wakes)

    def _committing(self, tx: Tx, going: bool) -> None:
        """Runs on the writer thread, holding the write lock, just before COMMIT (or, with
        ``going`` False, instead of it): the watcher may see the commit before ``_seen``
        runs, and should then still say what it brought."""
        watcher = self._watcher
        if watcher is not None:
            watcher.expect({sid: tx.seqs[sid] for sid in tx.woken}, tx.woken, tx.base, going)

    def _seen(self, tx: Tx) -> None:
        """Runs on the writer thread after each commit that stored events."""
        watcher = self._watcher
        if watcher is not None:
            watcher.seen(
                self, {sid: tx.seqs[sid] for sid in tx.woken}, tx.woken, tx.base, tx.change
            )
