"""Long-poll across processes: notice commits made by other connections to the file.

The writer wakes this store's readers after each of its own commits. For commits made by other
processes (or other store objects), a watcher thread polls ``PRAGMA data_version`` (it changes
when another connection commits) every couple of milliseconds while anyone waits, and then
compares only the watched sessions' counters with what their waiters last saw.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable

from .connection import Database

_WATCH_INTERVAL = 0.002  # seconds between data_version polls while someone long-polls
_IN_CHUNK = 500  # sessions per "WHERE session_id IN (...)" lookup


class Watcher:
    """``notify(sessions)`` is called on ``loop`` for sessions whose counter moved."""

    def __init__(
        self,
        db: Database,
        loop: asyncio.AbstractEventLoop,
        notify: Callable[[list[str]], None],
    ) -> None:
        self.db = db
        self._loop = loop
        self._notify = notify
        self._lock = threading.Lock()
        self.watched: dict[str, int] = {}  # session -> last sequence its waiters have seen
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def watch(self, session_id: str, baseline: int) -> None:
        """Watch a session whose waiters have seen ``baseline``; starts the thread if needed."""
        with self._lock:
            if self._stopping:
                return
            self.watched[session_id] = baseline
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._main, name="agent-session-store-sqlite-watcher", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def unwatch(self, session_id: str) -> None:
        with self._lock:
            self.watched.pop(session_id, None)

    def seen(self, seqs: dict[str, int]) -> None:
        """This store committed these counters and wakes its readers itself: do not again."""
        if self.watched:
            with self._lock:
                for sid, seq in seqs.items():
                    if sid in self.watched:
                        self.watched[sid] = seq

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self.watched.clear()
        self._wake.set()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    # ------------------------------------------------------------ the thread

    def _main(self) -> None:
        conn: sqlite3.Connection | None = None
        last_version = None
        try:
            while True:
                self._wake.clear()
                with self._lock:
                    if self._stopping:
                        return
                    sids = list(self.watched)
                if not sids:
                    last_version = None
                    self._wake.wait()
                    continue
                try:
                    if conn is None:
                        conn = self.db.connect(query_only=True)
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
                    self._loop.call_soon_threadsafe(self._notify, changed)
                self._wake.wait(_WATCH_INTERVAL)
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
        with self._lock:
            for sid, seq in current.items():
                seen = self.watched.get(sid)
                if seen is not None and seen != seq:
                    self.watched[sid] = seq
                    changed.append(sid)
        return changed
