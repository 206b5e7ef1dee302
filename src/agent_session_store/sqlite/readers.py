"""The reader pool: a few threads, each with its own read-only connection (WAL: readers never
wait for the writer). Nothing blocking runs on the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from ..errors import StorageError
from .connection import Database

T = TypeVar("T")


class ReaderPool:
    def __init__(self, db: Database, size: int) -> None:
        self.db = db
        self.size = size
        self._pool: ThreadPoolExecutor | None = None
        self._accepting = False
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(
            self.size, thread_name_prefix="agent-session-store-sqlite-reader"
        )
        self._accepting = True

    def stop(self) -> None:
        """Refuse new reads; those running finish."""
        self._accepting = False

    def join(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for conn in self._conns:
            conn.close()
        self._conns.clear()

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on a reader thread with that thread's connection; busy is retried."""
        if self._pool is None or not self._accepting:
            raise StorageError(f"the sqlite store {self.db.path} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._read_now, fn)

    def _read_now(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.db.connect(query_only=True)
            self._conns.append(conn)
        return self.db.retry_busy(lambda: fn(conn))
