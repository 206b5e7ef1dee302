"""Long-poll across processes: notice commits made by other connections to the file.

A store's writer wakes that store's readers after each of its own commits. For commits made by
other processes or other store objects, ONE watcher thread per database file per process polls
``PRAGMA data_version`` (it changes when any other connection commits) while anyone waits, and
only when it changed reads the counters moved since its last look (``seqs.change``), so a check
costs what changed, not what is watched.

The trade between latency and CPU: while the file changes, polls are 2 ms apart; after half a
second without a change they spread out to 50 ms: idle waiters, however many, cost 20 polls a
second (about 0.3 % of a CPU), and nothing at all when nobody waits. A new waiter brings the
2 ms pace back at once. Commits by another store object of this process wake its readers
directly, without waiting for a poll.

Each waiting store is woken on the event loop its waiter runs on, so a store keeps working when
the loop that opened it has ended (``asyncio.run`` called again); a closed loop is dropped.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..retry import Retry, RetryPolicy
from ..wakes import Wake
from .connection import Database
from .schema import LAST_CHANGE

_FAST = 0.002  # seconds between polls while the file changes
_SLOW = 0.05  # seconds between polls once it has been quiet for _QUIET seconds
_QUIET = 0.5
# After a failed poll (file unreadable, replaced): try a new connection, backing off to 1 s.
_REOPEN = RetryPolicy(first_delay=0.05, max_delay=1.0)
_IN_CHUNK = 500  # sessions per "WHERE session_id IN (...)" lookup

Notify = Callable[[dict[str, Wake | None]], None]
Due = dict[tuple[asyncio.AbstractEventLoop, Notify], dict[str, Wake | None]]

_CHANGED_SINCE = (
    "SELECT session_id, last_seq, change FROM seqs INDEXED BY seqs_by_change"
    " WHERE change > ? ORDER BY change"
)


def last_change_number(conn: sqlite3.Connection) -> int:
    return int(conn.execute(LAST_CHANGE).fetchone()[0])


@dataclass(slots=True)
class _Subscriber:
    """One store's interest in one session: wake it on ``loop`` past ``seen``.

    ``change`` is the change number that set ``seen`` (0: not known). The poll reads counters
    without the lock, and a commit of this process may move ``seen`` on (``FileWatcher.seen``)
    before the poll applies what it read; the change number tells the stale row from a newer
    one, so the poll neither moves ``seen`` back nor wakes everyone "unsure" for it."""

    loop: asyncio.AbstractEventLoop
    notify: Notify
    seen: int
    change: int = 0


class FileWatcher:
    """Watches one database file for every store of this process that opened it."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.users = 0  # open stores holding this watcher (guarded by the registry lock)
        self._lock = threading.Lock()
        # session -> owner (a store) -> subscriber
        self._sessions: dict[str, dict[object, _Subscriber]] = {}
        #: session -> (counter before, counter after, wake) of a commit of this process
        #: about to land, so a poll that sees it first can say what it brought
        self._expected: dict[str, tuple[int, int, Wake | None]] = {}
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ called by stores

    def watch(
        self,
        owner: object,
        session_id: str,
        baseline: int,
        notify: Notify,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """``owner``'s readers of the session have seen ``baseline``; wake them on ``loop``."""
        with self._lock:
            if self._stopping:
                return
            self._sessions.setdefault(session_id, {})[owner] = _Subscriber(loop, notify, baseline)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._main, name="agent-session-store-sqlite-watcher", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def unwatch(self, owner: object, session_id: str) -> None:
        with self._lock:
            subs = self._sessions.get(session_id)
            if subs is not None:
                subs.pop(owner, None)
                if not subs:
                    del self._sessions[session_id]

    def forget(self, owner: object) -> None:
        """The store closes: drop all its sessions."""
        with self._lock:
            for sid in list(self._sessions):
                subs = self._sessions[sid]
                subs.pop(owner, None)
                if not subs:
                    del self._sessions[sid]

    def expect(
        self,
        seqs: Mapping[str, int],
        wakes: Mapping[str, Wake | None],
        bases: Mapping[str, int],
        going: bool,
    ) -> None:
        """A commit of this process moves these counters from ``bases`` (called with the
        write lock held, so no other commit can land in between); ``going`` False: it
        did not commit, forget it."""
        if going and not self._sessions:
            return  # nobody waits: a watch starting now gets no wake-up it could use
        with self._lock:
            for sid, seq in seqs.items():
                base = bases.get(sid)
                if going and base is not None:
                    self._expected[sid] = (base, seq, wakes.get(sid))
                else:
                    self._expected.pop(sid, None)

    def _wake_for(self, sid: str, seen: int, seq: int) -> Wake | None:
        """What moved the counter from ``seen`` to ``seq``, if an expected commit did."""
        exp = self._expected.get(sid)
        return exp[2] if exp is not None and exp[0] == seen and exp[1] == seq else None

    def seen(
        self,
        owner: object,
        seqs: Mapping[str, int],
        wakes: Mapping[str, Wake | None],
        bases: Mapping[str, int],
        change: int,
    ) -> None:
        """``owner`` committed these counters (as change number ``change``) and wakes its own
        readers; the other stores of this process watching those sessions are woken now, not
        at the next poll. They are told what the commit stored (``wakes``) when they had seen
        everything before it (the counter it started from, ``bases``); otherwise other commits
        came between, unknown. A subscriber the poll already moved past ``change`` is left."""
        if not self._sessions and not self._expected:
            return
        due: Due = {}
        with self._lock:
            for sid in seqs:
                self._expected.pop(sid, None)
            if not self._sessions:
                return
            for sid, seq in seqs.items():
                for who, sub in self._sessions.get(sid, {}).items():
                    if change <= sub.change:
                        continue
                    sub.change = change
                    if sub.seen != seq:
                        wake = wakes.get(sid) if bases.get(sid) == sub.seen else None
                        sub.seen = seq
                        if who is not owner:
                            due.setdefault((sub.loop, sub.notify), {})[sid] = wake
        if due:
            self._deliver(due)

    def watched(self, owner: object) -> dict[str, int]:
        """The sessions ``owner`` watches and the counter its readers have seen (for tests)."""
        with self._lock:
            return {sid: subs[owner].seen for sid, subs in self._sessions.items() if owner in subs}

    def _stop(self) -> threading.Thread | None:
        with self._lock:
            self._stopping = True
            self._sessions.clear()
            thread, self._thread = self._thread, None
        self._wake.set()
        return thread

    # ------------------------------------------------------------ the thread

    def _main(self) -> None:
        conn: sqlite3.Connection | None = None
        last_version = None
        cursor: int | None = None  # the last change number looked at
        last_change = time.monotonic()
        retry = Retry(_REOPEN)
        try:
            while True:
                if self._wake.is_set():  # a new waiter: be quick again
                    self._wake.clear()
                    last_change = time.monotonic()
                with self._lock:
                    if self._stopping:
                        return
                    idle = not self._sessions
                if idle:
                    last_version = cursor = None
                    self._wake.wait()
                    continue
                try:
                    if conn is None:
                        conn = self.db.connect(query_only=True)
                    # The version is read BEFORE the watched sessions are: a session watched
                    # after this read is checked again when a later commit moves the version.
                    version = conn.execute("PRAGMA data_version").fetchone()[0]
                    if version != last_version:
                        last_change = time.monotonic()
                        if cursor is None:
                            # Starting: every watched counter once against what its waiters
                            # saw; from then on only the sessions changed since.
                            cursor = last_change_number(conn)
                            self._check(conn, self._watched_now())
                        else:
                            cursor = self._check_changes(conn, cursor)
                    last_version = version
                    retry.reset()
                except sqlite3.Error:
                    # Wake everyone rather than risk a lost wake-up: each reader re-queries and
                    # waits again if nothing is there. Then start afresh on a new connection.
                    self._wake_all()
                    last_version = cursor = None
                    if conn is not None:
                        conn.close()
                        conn = None
                    retry.pause_sync()  # no bound: the loop ends when the store closes
                quiet = time.monotonic() - last_change > _QUIET
                self._wake.wait(_SLOW if quiet else _FAST)
        finally:
            if conn is not None:
                conn.close()

    def _watched_now(self) -> list[str]:
        with self._lock:
            return list(self._sessions)

    def _check(self, conn: sqlite3.Connection, sids: list[str]) -> None:
        current: dict[str, tuple[str, int, int]] = {sid: (sid, 0, 0) for sid in sids}
        for i in range(0, len(sids), _IN_CHUNK):
            chunk = sids[i : i + _IN_CHUNK]
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT session_id, last_seq, change FROM seqs WHERE session_id IN ({marks})"
            current.update((row[0], row) for row in conn.execute(sql, chunk))
        self._apply(list(current.values()))

    def _check_changes(self, conn: sqlite3.Connection, cursor: int) -> int:
        """Compare the counters moved since change ``cursor``: costs what changed, however
        many sessions are watched. Returns the new cursor."""
        rows = conn.execute(_CHANGED_SINCE, (cursor,)).fetchall()
        if not rows:
            return cursor
        self._apply(rows)
        return int(rows[-1][2])

    def _apply(self, rows: list[tuple[str, int, int]]) -> None:
        """Wake the subscribers these (session, counter, change) rows move, in row order."""
        due: Due = {}
        with self._lock:
            for sid, seq, change in rows:
                for sub in self._sessions.get(sid, {}).values():
                    if change < sub.change or (change == sub.change and change):
                        continue  # read before a commit that ``seen`` has applied since
                    sub.change = change
                    if sub.seen != seq:
                        wake = self._wake_for(sid, sub.seen, seq)
                        sub.seen = seq
                        due.setdefault((sub.loop, sub.notify), {})[sid] = wake
        self._deliver(due)

    def _wake_all(self) -> None:
        due: Due = {}
        with self._lock:
            for sid, subs in self._sessions.items():
                for sub in subs.values():
                    due.setdefault((sub.loop, sub.notify), {})[sid] = None
        self._deliver(due)

    def _deliver(self, due: Due) -> None:
        for (loop, notify), sids in due.items():
            try:
                loop.call_soon_threadsafe(notify, sids)
            except RuntimeError:  # that loop is closed: its waiters are gone
                self._drop_loop(loop)

    def _drop_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            for sid in list(self._sessions):
                subs = self._sessions[sid]
                for owner in [o for o, s in subs.items() if s.loop is loop]:
                    del subs[owner]
                if not subs:
                    del self._sessions[sid]


# ---------------------------------------------------------------- one watcher per file

_registry_lock = threading.Lock()
_registry: dict[str, FileWatcher] = {}


def _forget_after_fork() -> None:
    """A forked child has none of its parent's threads: its stores start their own watchers."""
    global _registry_lock
    _registry_lock = threading.Lock()
    _registry.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def acquire(db: Database) -> FileWatcher:
    """The process's watcher of this file; every ``acquire`` needs one ``release``."""
    with _registry_lock:
        watcher = _registry.get(db.path)
        if watcher is None:
            watcher = _registry[db.path] = FileWatcher(db)
        watcher.users += 1
        return watcher


def release(watcher: FileWatcher, owner: object) -> threading.Thread | None:
    """Drop ``owner``'s sessions; the last user stops the thread (returned, to be joined)."""
    watcher.forget(owner)
    with _registry_lock:
        watcher.users -= 1
        if watcher.users > 0:
            return None
        if _registry.get(watcher.db.path) is watcher:
            del _registry[watcher.db.path]
    return watcher._stop()
