"""The reader pool: a few threads, each with its own read-only connection (WAL: readers never
wait for the writer). Nothing blocking runs on the event loop.

A read is handed over as one tuple on a ``SimpleQueue`` and answered with one
``call_soon_threadsafe`` that sets an asyncio future: ``run_in_executor`` costs a concurrent
future (with its condition variable), a chained asyncio future and their callbacks on top of
that, about a fifth of the CPU of a small read such as ``GET /api/sessions/{id}``
(bench/server.py, issue 11).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, TypeVar

from ..errors import StorageError
from .connection import Database

T = TypeVar("T")

_Job = tuple[Callable[[sqlite3.Connection], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


def _resolve(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """On the caller's loop: a read whose caller stopped waiting (cancelled) is dropped."""
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


def default_readers() -> int:
    """Reader threads for this machine: one per core the event loop leaves, 1 to 4.

    A reader gains nothing from a core it does not get: SQLite's C work runs without the
    GIL, but each read also takes the GIL three or four times, and more threads than cores
    only add wake-ups and GIL hand-offs. Measured on 2 cores (bench/server.py, 50 clients):
    a 100-event page, 1 reader 2,200-2,700 requests/s at 0.53-0.65 ms of CPU each, 4
    readers 1,600-1,800 at ~1 ms; ADK's four-read ``get_session`` and eight 1,000-event pages
    at once were no faster with 4. Tiny reads (a session record and its stats) went the
    other way, 2,700-3,800 against 4,200 requests/s. The price of fewer: a long read (a scan)
    delays the short ones queued behind it; ``readers=`` sets the count.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        cores = os.cpu_count() or 1
    return max(1, min(4, cores - 1))


class ReaderPool:
    def __init__(self, db: Database, size: int) -> None:
        self.db = db
        self.size = size
        self._jobs: SimpleQueue[_Job | None] = SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._accepting = False
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        self._jobs = SimpleQueue()
        self._threads = [
            threading.Thread(
                target=self._main,
                args=(self._jobs,),
                name=f"agent-session-store-sqlite-reader_{i}",
                daemon=True,
            )
            for i in range(self.size)
        ]
        for thread in self._threads:
            thread.start()
        self._accepting = True

    def stop(self) -> None:
        """Refuse new reads; those running or queued finish."""
        self._accepting = False

    def join(self) -> None:
        threads, self._threads = self._threads, []
        for _ in threads:
            self._jobs.put(None)  # after every queued read: those still run
        for thread in threads:
            thread.join()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on a reader thread with that thread's connection; busy is retried."""
        if not self._threads or not self._accepting:
            raise StorageError(f"the sqlite store {self.db.path} is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, loop, fut))
        return await fut

    def _main(self, jobs: SimpleQueue[_Job | None]) -> None:
        conn: list[sqlite3.Connection] = []  # this thread's, opened at its first read
        # Ends at the sentinel that join() queues, one per thread.
        for fn, loop, fut in iter(jobs.get, None):
            if fut.cancelled():
                continue  # the caller is gone before the read started
            result, error = self._run(conn, fn)
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for it
                loop.call_soon_threadsafe(_resolve, fut, result, error)

    def _run(
        self, conn: list[sqlite3.Connection], fn: Callable[[sqlite3.Connection], Any]
    ) -> tuple[Any, BaseException | None]:
        try:
            if not conn:
                conn.append(self.db.connect(query_only=True))
                with self._lock:
                    self._conns.append(conn[0])
            c = conn[0]
            return self.db.retry_busy(lambda: fn(c)), None
        except BaseException as exc:  # handed to the caller, as run_in_executor does
            return None, exc
