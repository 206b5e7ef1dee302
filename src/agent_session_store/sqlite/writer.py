"""The writer thread: the only write connection, and group commit.

Every write is a *request*: a function of a :class:`Tx`, queued by the event loop. The writer
thread drains every queued request and runs them in ONE ``BEGIN IMMEDIATE`` transaction, each
inside its own SAVEPOINT: one fsync serves many callers, yet a failing request rolls back only
itself. Some errors (disk full, I/O error, out of memory) make SQLite abort the whole
transaction instead: then only the request that met it fails, and the others run again.

``BEGIN IMMEDIATE`` takes SQLite's single write lock up front, so numbering read inside the
transaction cannot race another process; a busy database is retried, whole transaction at a
time, before anyone sees "database is locked".

Results go back to each caller's event loop with ``call_soon_threadsafe``, after the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from ..codec import decode_page
from ..errors import StorageError
from ..retry import Retry, RetryPolicy
from ..wakes import Wake, merge, wakes_of_rows
from .connection import SQLITE_READONLY, Database, is_busy, result_code
from .schema import LAST_CHANGE, LAST_SEQ, LAST_SEQ_AND_CHANGE

_MAX_GROUP = 256  # requests per group commit: bounds the latency of the first one
_DECODE_ASIDE = 64  # returned rows in a group above which decoding overlaps the commit


class Rows(list[tuple[Any, ...]]):
    """A write's stored rows, in ``EVENT_COLUMNS`` order: they become Events after the commit."""


class Tx:
    """State shared by the requests of one group-commit transaction.

    Last sequence numbers are cached for this transaction only (other processes write between
    transactions). A request's changes stay pending until it succeeds, so a request that rolls
    back to its savepoint leaves this state as it found it.
    """

    __slots__ = (
        "_active",
        "_change",
        "_seqs",
        "_woken",
        "active",
        "base",
        "conn",
        "seqs",
        "woken",
    )

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.seqs: dict[str, int] = {}
        #: each session's counter as this transaction first read it
        self.base: dict[str, int] = {}
        #: sessions that got events, with what they got: their readers are woken
        self.woken: dict[str, Wake | None] = {}
        #: session -> whether its updated_at moves to now at commit (C5); the last word wins
        self.active: dict[str, bool] = {}
        self._seqs: dict[str, int] = {}
        self._woken: dict[str, Wake | None] = {}
        self._active: dict[str, bool] = {}
        self._change: int | None = None

    @property
    def change(self) -> int:
        """This transaction's change number, which every counter it moves records."""
        if self._change is None:
            self._change = int(self.conn.execute(LAST_CHANGE).fetchone()[0]) + 1
        return self._change

    def last_seq(self, session_id: str) -> int:
        found = self._seqs.get(session_id)
        if found is None:
            found = self.seqs.get(session_id)
        if found is None:
            if self._change is None:  # the first counter read also reads the change number:
                row = self.conn.execute(LAST_SEQ_AND_CHANGE, (session_id,)).fetchone()
                self._change = int(row[1]) + 1  # one statement fewer per single append
                found = 0 if row[0] is None else row[0]
            else:
                row = self.conn.execute(LAST_SEQ, (session_id,)).fetchone()
                found = 0 if row is None else row[0]
            self.seqs[session_id] = found
            self.base.setdefault(session_id, found)
        return found

    def set_last(self, session_id: str, last: int) -> None:
        self._seqs[session_id] = last

    def stored(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """These numbered rows (``EVENT_COLUMNS`` order) were stored: wake their sessions'
        readers after the commit, telling them what came."""
        pending = self._woken
        for sid, wake in wakes_of_rows((r[1], r[2], r[3], r[4], r[10]) for r in rows).items():
            pending[sid] = merge(pending[sid], wake) if sid in pending else wake

    def touch(self, session_id: str, now: bool = True) -> None:
        """Move the session's updated_at to the commit time (or, ``now=False``, keep the
        value just saved)."""
        self._active[session_id] = now

    def keep(self) -> None:
        self.seqs.update(self._seqs)
        woken = self.woken
        for sid, wake in self._woken.items():
            woken[sid] = merge(woken[sid], wake) if sid in woken else wake
        self.active.update(self._active)
        self.discard()

    def discard(self) -> None:
        self._seqs.clear()
        self._woken.clear()
        self._active.clear()


class Request:
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


Outcome = tuple[Request, bool, Any]  # (request, succeeded, value or exception)


def decode_outcomes(outcomes: list[Outcome]) -> list[Outcome]:
    """Turn every successful write's rows into Events; a row that cannot be decoded fails
    only its own request."""
    out: list[Outcome] = []
    for req, ok, value in outcomes:
        if ok and type(value) is Rows:
            try:
                value = decode_page(value)
            except Exception as exc:
                ok, value = False, exc
        out.append((req, ok, value))
    return out


_STOP = object()


# Replacing a read-only write connection: candidates tried at once, one after another.
_REOPEN_RETRY = RetryPolicy(attempts=8, first_delay=0.0, max_delay=0.0)


class _Aborted(Exception):
    """SQLite rolled back the whole transaction while running ``group[index]``."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(index, error)
        self.index = index
        self.error = error


class Writer:
    """Owns the write connection and the thread that runs every write.

    ``open_conn`` runs first, on the writer thread, and returns the write connection.
    ``notify(wakes)`` runs on a caller's loop after a commit that stored events there (what
    each session got); ``committed(tx)`` runs on the writer thread after that commit, and
    ``committing(tx, True)`` just before it (``False``: it did not happen after all).
    ``finish(tx)`` runs last in every transaction, before COMMIT.
    """

    def __init__(
        self,
        db: Database,
        open_conn: Callable[[], sqlite3.Connection],
        notify: Callable[[dict[str, Wake | None]], None],
        committed: Callable[[Tx], None],
        finish: Callable[[Tx], None] | None = None,
        committing: Callable[[Tx, bool], None] | None = None,
    ) -> None:
        self.db = db
        self._open_conn = open_conn
        self._notify = notify
        self._committed = committed
        self._finish = finish
        self._committing = committing
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.conn: sqlite3.Connection | None = None
        self._reopen = False  # the connection failed as read-only: replace it
        self.accepting = False
        self.transactions = 0  # group commits done, for monitoring
        self.requests = 0  # write requests they carried
        self._thread: threading.Thread | None = None
        self._decoder: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------ lifecycle (event loop)

    async def start(self) -> None:
        """Start the thread and open the write connection on it; raises what opening raised."""
        self._thread = threading.Thread(
            target=self._main, name="agent-session-store-sqlite-writer", daemon=True
        )
        if self.db.synchronous == "full":  # see _transaction: only an fsync is worth it
            self._decoder = ThreadPoolExecutor(
                1, thread_name_prefix="agent-session-store-sqlite-decode"
            )
        self.accepting = True
        self._thread.start()
        await self.submit(self._set_up, in_tx=False)

    def _set_up(self, _: None) -> None:
        self.conn = self._open_conn()

    def stop(self) -> None:
        """Refuse new writes; the thread finishes what is queued, then ends."""
        self.accepting = False
        self.queue.put(_STOP)

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()
        if self._decoder is not None:
            self._decoder.shutdown(wait=True)

    def submit(self, work: Callable[[Any], Any], in_tx: bool = True) -> asyncio.Future[Any]:
        """Queue a write; the future gets its result after the commit."""
        if not self.accepting:
            raise StorageError(f"the sqlite store {self.db.path} is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.queue.put(Request(work, future, loop, in_tx))
        return future

    # ------------------------------------------------------------ the thread

    def _main(self) -> None:
        take = self.queue.get
        take_now = self.queue.get_nowait
        stop = False
        while not stop:
            item = take()
            if item is _STOP:
                break
            group: list[Request] = [item]
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
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _run(self, group: list[Request]) -> None:
        """Run a drained batch in order: consecutive transactional requests share a commit."""
        start = 0
        while start < len(group):
            if not group[start].in_tx:
                req = group[start]
                try:
                    outcome: Outcome = (req, True, req.work(None))
                except BaseException as exc:
                    outcome = (req, False, exc)
                self._deliver([outcome], {})
                start += 1
                continue
            end = start
            while end < len(group) and group[end].in_tx:
                end += 1
            self._group_commit(group[start:end])
            start = end

    def _group_commit(self, group: list[Request]) -> None:
        conn = self.conn
        if conn is not None and self._reopen:
            try:
                conn = self._writable_conn(conn)
            except BaseException as exc:
                self._deliver([(r, False, exc) for r in group], {})
                return
        if conn is None:  # set-up failed; nothing can be written
            err = StorageError(f"the sqlite store {self.db.path} is not open")
            self._deliver([(r, False, err) for r in group], {})
            return
        aborted: list[Outcome] = []
        while True:
            try:
                outcomes, tx = self.db.retry_busy(partial(self._transaction, conn, group))
                break
            except _Aborted as exc:
                # That request made SQLite abort the whole transaction: it alone fails, with
                # its own error, and the others run again without it.
                aborted.append((group[exc.index], False, exc.error))
                group = group[: exc.index] + group[exc.index + 1 :]
                if not group:
                    self._deliver(aborted, {})
                    return
            except BaseException as exc:
                self._drop_if_read_only([exc])
                self._deliver([*aborted, *((r, False, exc) for r in group)], {})
                return
        self._drop_if_read_only([v for _, ok, v in (*aborted, *outcomes) if not ok])
        self.transactions += 1
        self.requests += len(group)
        if tx.woken:
            self._committed(tx)
        self._deliver([*aborted, *outcomes], tx.woken)

    def _drop_if_read_only(self, errors: Iterable[Any]) -> None:
        """SQLite opens a file it may not write read-only, and that connection stays so
        after the file becomes writable again: on "readonly", the next write replaces it
        (``_writable_conn``), so the store recovers without being reopened."""
        if any(result_code(e) == SQLITE_READONLY for e in errors if isinstance(e, BaseException)):
            self._reopen = True

    def _writable_conn(self, old: sqlite3.Connection) -> sqlite3.Connection:
        """A new write connection that can write, or the "readonly" error if none can.

        SQLite keeps the descriptors of closed connections while others of the process hold
        locks, and hands them to new connections: a new one may get a read-only descriptor
        of the past. So each candidate is probed (``BEGIN IMMEDIATE`` fails on a read-only
        connection) and the failed ones stay open until a good one is found, so none of
        them is handed out again in the meantime. Eight candidates at most per write: while
        the file is really read-only, a failing write costs that many opens.
        """
        tried: list[sqlite3.Connection] = [old]
        retry = Retry(_REOPEN_RETRY)
        try:
            while True:
                fresh = self._open_conn()
                try:
                    fresh.execute("BEGIN IMMEDIATE")
                    fresh.execute("ROLLBACK")
                except sqlite3.OperationalError as exc:
                    tried.append(fresh)
                    if result_code(exc) != SQLITE_READONLY or not retry.pause_sync():
                        raise
                    continue
                self.conn = fresh
                self._reopen = False
                return fresh
        finally:
            for conn in tried if self.conn is not old else tried[1:]:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()

    def _transaction(
        self, conn: sqlite3.Connection, group: list[Request]
    ) -> tuple[list[Outcome], Tx]:
        """One attempt at the group's transaction; raises only if the whole group failed."""
        alone = len(group) == 1  # no savepoint needed: its failure is the transaction's
        outcomes: list[Outcome] = []
        tx = Tx(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            for index, req in enumerate(group):
                if not alone:
                    conn.execute("SAVEPOINT request")
                try:
                    value = req.work(tx)
                except Exception as exc:
                    if alone or is_busy(exc):
                        raise
                    if not conn.in_transaction:  # disk full, I/O error, out of memory
                        raise _Aborted(index, exc) from exc
                    conn.execute("ROLLBACK TO request")
                    conn.execute("RELEASE request")
                    tx.discard()
                    outcomes.append((req, False, exc))
                    continue
                if not alone:
                    conn.execute("RELEASE request")
                tx.keep()
                outcomes.append((req, True, value))
            if self._finish is not None:
                self._finish(tx)
            # Decoding the stored rows into Events is pure CPU; for a large group it runs on
            # the decoder thread while COMMIT waits for the fsync (which releases the GIL).
            # With synchronous=normal there is no fsync to wait for, and the two hand-offs
            # cost more than the overlap saves (batch of 100, measured on the loaded VM).
            rows = sum(len(v) for _, ok, v in outcomes if ok and type(v) is Rows)
            aside = None
            if rows >= _DECODE_ASIDE and self._decoder is not None:
                aside = self._decoder.submit(decode_outcomes, outcomes)
            if self._committing is not None and tx.woken:
                self._committing(tx, True)
            conn.execute("COMMIT")
        except BaseException:
            if self._committing is not None and tx.woken:
                self._committing(tx, False)  # before ROLLBACK: the write lock is still ours
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return (decode_outcomes(outcomes) if aside is None else aside.result()), tx

    def _deliver(self, outcomes: list[Outcome], touched: Mapping[str, Wake | None]) -> None:
        """Hand results to each caller's event loop: one wake-up per loop, not per caller."""
        by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].loop, []).append(outcome)
        sessions = dict(touched)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(self._resolve, items, sessions)
            sessions = {}

    def _resolve(self, outcomes: list[Outcome], sessions: dict[str, Wake | None]) -> None:
        for req, ok, value in outcomes:
            if not req.future.done():  # a cancelled caller
                if ok:
                    req.future.set_result(value)
                else:
                    req.future.set_exception(value)
        if sessions:
            self._notify(sessions)
